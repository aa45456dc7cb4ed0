/* Arm semihosting (QEMU's -semihosting): the host's files and the exit code, through
 * `bkpt 0xAB` with the operation in r0 and its argument block in r1. */
#ifndef SEMIHOSTING_H
#define SEMIHOSTING_H

#include <stddef.h>
#include <stdint.h>

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_FLEN = 0x0C,
    SYS_EXIT = 0x18,
};

/* SYS_OPEN modes: ISO C fopen modes by index ("w" on ":tt" is the host's stdout). */
enum { OPEN_READ_BINARY = 1, OPEN_WRITE = 4, OPEN_WRITE_BINARY = 5 };

/* SYS_EXIT reasons: a normal end, and a run-time error (QEMU exits 1). */
enum { EXIT_APPLICATION = 0x20026, EXIT_RUNTIME_ERROR = 0x20023 };

static inline int32_t semihost(int32_t op, const void *arg) {
    register int32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static inline int32_t sh_open(const char *name, size_t len, int32_t mode) {
    const uint32_t args[3] = {(uint32_t)(uintptr_t)name, (uint32_t)mode, (uint32_t)len};
    return semihost(SYS_OPEN, args);
}

static inline int32_t sh_close(int32_t fd) {
    const uint32_t args[1] = {(uint32_t)fd};
    return semihost(SYS_CLOSE, args);
}

/* Bytes not read (0: all were). */
static inline int32_t sh_read(int32_t fd, void *buf, size_t len) {
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, (uint32_t)len};
    return semihost(SYS_READ, args);
}

/* Bytes not written (0: all were). */
static inline int32_t sh_write(int32_t fd, const void *buf, size_t len) {
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, (uint32_t)len};
    return semihost(SYS_WRITE, args);
}

static inline int32_t sh_flen(int32_t fd) {
    const uint32_t args[1] = {(uint32_t)fd};
    return semihost(SYS_FLEN, args);
}

/* Prints `text` on the host's stdout (":tt" opened for writing). */
static inline void sh_puts(const char *text) {
    size_t len = 0;
    while (text[len]) len++;
    int32_t tt = sh_open(":tt", 3, OPEN_WRITE);
    sh_write(tt, text, len);
    sh_close(tt);
}

static inline void sh_exit(uint32_t reason) {
    /* On 32-bit Arm the reason is the argument itself, not a block. */
    semihost(SYS_EXIT, (const void *)(uintptr_t)reason);
    for (;;) {
    }
}

#endif
