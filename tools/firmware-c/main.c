/*
 * C firmware that classifies examples with an int8 model through infer-c's C API (fmlp.h):
 * the C counterpart of tools/firmware (Rust), with the same protocol, so that
 * `firmware-sim qemu --firmware c` builds, runs and checks it the same way.
 *
 * The model is `firmware_model` from firmware_model.c/.h, which `trainer export --c-header
 * --c-name firmware` writes (firmware-sim writes them for the model it is given). Over Arm
 * semihosting the firmware reads examples from inputs.bin in the host's working directory:
 * raw bytes (FIRMWARE_INPUTS per image) or, for a model with an input quantizer, the raw
 * values of FIRMWARE_INPUTS features as little-endian floats. It writes one record per
 * example to results.bin: the class (byte 0), three zero bytes, the int32 scores, and the
 * SysTick ticks the prediction took (the fmlp_predict call, checks included). At the end
 * it prints `firmware images=N calibration_instructions=I calibration_ticks=T
 * stack_bytes=S` and exits through semihosting.
 */
#include <stdint.h>
#include <string.h>

#include "firmware_model.h"
#include "fmlp.h"
#include "semihosting.h"

/* Examples read per semihosting call. */
#define CHUNK 4
#define INPUT_BYTES (FIRMWARE_HAS_INPUT_QUANTIZER ? 4 * FIRMWARE_INPUTS : FIRMWARE_INPUTS)
#define RECORD (8 + 4 * FIRMWARE_CLASSES)
#define CALIBRATION_LOOPS 1000000u
#define PAINT 0x5afec0deu

/* SysTick, on the core clock: under `qemu -icount shift=0` one tick per instruction-time. */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYST_MASK 0x00ffffffu

extern uint32_t _ebss, _estack;

static uint8_t inputs[CHUNK * INPUT_BYTES] __attribute__((aligned(4)));
static uint8_t records[CHUNK * RECORD] __attribute__((aligned(4)));
static uint8_t scratch[FIRMWARE_SCRATCH_BYTES] __attribute__((aligned(4)));

static void fail(const char *message) {
    sh_puts("firmware error: ");
    sh_puts(message);
    sh_puts("\n");
    sh_exit(EXIT_RUNTIME_ERROR);
}

/* Fills the RAM between the statics and this function's stack frame with PAINT. */
__attribute__((noinline)) static void paint_stack(void) {
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = &_ebss; (uintptr_t)(p + 1) <= sp - 64; p++) *p = PAINT;
}

/* Bytes of stack used: from the top of RAM down to the lowest word no longer PAINT. */
static uint32_t stack_high_water(void) {
    volatile uint32_t *p = &_ebss;
    while (p < &_estack && *p == PAINT) p++;
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

static char *decimal(char *out, uint32_t value) {
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    while (n) *out++ = digits[--n];
    return out;
}

int main(void) {
    paint_stack();
    fmlp_model model;
    int32_t opened = fmlp_open(&model, firmware_model, FIRMWARE_MODEL_BYTES);
    if (opened != FMLP_OK) fail(fmlp_status_name(opened));

    SYST_RVR = SYST_MASK;
    SYST_CVR = 0;
    SYST_CSR = 5; /* enabled, core clock */
    uint32_t t0 = SYST_CVR;
    uint32_t n = CALIBRATION_LOOPS;
    /* Two instructions an iteration, on every Cortex-M (unified syntax, as Armv6-M needs). */
    __asm__ volatile(".syntax unified\n1: subs %0, %0, #1\n bne 1b" : "+r"(n) : : "cc");
    uint32_t calibration_ticks = (t0 - SYST_CVR) & SYST_MASK;

    int32_t in = sh_open("inputs.bin", 10, OPEN_READ_BINARY);
    int32_t out = sh_open("results.bin", 11, OPEN_WRITE_BINARY);
    if (in < 0 || out < 0) fail("semihosting could not open inputs.bin or results.bin in the host's directory");
    int32_t len = sh_flen(in);
    if (len < 0 || len % INPUT_BYTES != 0) fail("inputs.bin is not a whole number of examples of the model's input size");
    uint32_t count = (uint32_t)len / INPUT_BYTES, done = 0;
    int32_t scores[FIRMWARE_CLASSES];
    while (done < count) {
        uint32_t chunk = count - done < CHUNK ? count - done : CHUNK;
        if (sh_read(in, inputs, chunk * INPUT_BYTES) != 0) fail("short read from inputs.bin");
        for (uint32_t i = 0; i < chunk; i++) {
            const uint8_t *input = inputs + i * INPUT_BYTES;
            uint8_t *record = records + i * RECORD;
            uint16_t cls;
            uint32_t start = SYST_CVR;
#if FIRMWARE_HAS_INPUT_QUANTIZER
            int32_t status = fmlp_predict_features(&model, (const float *)input, FIRMWARE_INPUTS, scratch,
                                                   FIRMWARE_SCRATCH_BYTES, scores, FIRMWARE_CLASSES, &cls);
#else
            int32_t status = fmlp_predict(&model, input, FIRMWARE_INPUTS, scratch, FIRMWARE_SCRATCH_BYTES, scores,
                                          FIRMWARE_CLASSES, &cls);
#endif
            uint32_t ticks = (start - SYST_CVR) & SYST_MASK;
            if (status != FMLP_OK) fail(fmlp_status_name(status));
            memset(record, 0, 4);
            record[0] = (uint8_t)cls;
            memcpy(record + 4, scores, sizeof scores);
            memcpy(record + RECORD - 4, &ticks, 4);
        }
        if (sh_write(out, records, chunk * RECORD) != 0) fail("short write to results.bin");
        done += chunk;
    }
    sh_close(in);
    sh_close(out);

    char line[160] = "firmware images=", *p = line + strlen(line);
    p = decimal(p, count);
    memcpy(p, " calibration_instructions=", 26), p += 26;
    p = decimal(p, 2 * CALIBRATION_LOOPS);
    memcpy(p, " calibration_ticks=", 19), p += 19;
    p = decimal(p, calibration_ticks);
    memcpy(p, " stack_bytes=", 13), p += 13;
    p = decimal(p, stack_high_water());
    *p++ = '\n';
    *p = 0;
    sh_puts(line);
    return 0;
}
