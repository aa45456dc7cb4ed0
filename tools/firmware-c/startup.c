/* The vector table and the reset handler: turn the FPU on (if any), copy .data, zero .bss,
 * run main. A fault ends the
 * run through semihosting with an error, so that a crash is a failed run, not a hang. */
#include <stdint.h>

#include "semihosting.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

void reset_handler(void) {
#if defined(__ARM_FP)
    /* A core with an FPU (the M4F) starts with it off: allow CP10 and CP11, full access. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n isb" ::: "memory");
#endif
    for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    sh_exit(main() == 0 ? EXIT_APPLICATION : EXIT_RUNTIME_ERROR);
}

static void fault_handler(void) {
    sh_puts("firmware error: fault\n");
    sh_exit(EXIT_RUNTIME_ERROR);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&_estack), reset_handler, fault_handler, fault_handler, fault_handler, fault_handler,
    fault_handler, 0, 0, 0, 0, fault_handler, fault_handler, 0, fault_handler, fault_handler,
};
