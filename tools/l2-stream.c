/*
 * How fast one core streams int8 weights through VPDPBUSD when they sit in L2: the bound
 * under infer-core's int8 kernel on the host (see README, "Benchmarks").
 *
 *   gcc -O2 -march=native tools/l2-stream.c -o /tmp/l2-stream && /tmp/l2-stream
 *
 * Needs AVX-512 VNNI. Reads a buffer of each size 512 bytes (eight 64-byte VPDPBUSD memory
 * operands, eight accumulators) at a time, 3000 times; prints the best pass in GB/s.
 * 16-24 KB stays in L1; 64-768 KB comes from L2 (1 MB per core on Zen 4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define DOT(k) "vpdpbusd " #k "*64(%1), %%zmm30, %%zmm" #k "\n"

int main(void) {
    const size_t sizes_kb[] = {16, 24, 64, 128, 256, 384, 512, 768};
    char *buf = aligned_alloc(4096, 1 << 20);
    if (!buf) return 1;
    for (size_t i = 0; i < (1 << 20); i++) buf[i] = (char)(i * 7);
    for (size_t s = 0; s < sizeof sizes_kb / sizeof sizes_kb[0]; s++) {
        size_t bytes = sizes_kb[s] * 1024;
        double best = 1e9;
        for (int rep = 0; rep < 3000; rep++) {
            long n = bytes / 512;
            char *p = buf;
            double t = now();
            __asm__ volatile("1:\n" DOT(0) DOT(1) DOT(2) DOT(3) DOT(4) DOT(5) DOT(6) DOT(7)
                             "add $512, %1\n dec %0\n jnz 1b"
                             : "+r"(n), "+r"(p)
                             :
                             : "memory", "zmm0", "zmm1", "zmm2", "zmm3", "zmm4", "zmm5", "zmm6", "zmm7");
            t = now() - t;
            if (t < best) best = t;
        }
        printf("%4zu KB: %6.1f GB/s\n", sizes_kb[s], bytes / best / 1e9);
    }
    free(buf);
    return 0;
}
