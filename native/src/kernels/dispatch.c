#include <cpuid.h>
#include <stdlib.h>
#include <string.h>

#include "../bn.h"

/* F16C from cpuid leaf 1 (ECX bit 29): older clang's __builtin_cpu_supports does not know it. */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}

/*
 * Chosen once per process; the choice is cached without a lock, since every thread that races to
 * make it computes the same answer.
 */
const bn_kernels *bn_kernels_select(void) {
    static const bn_kernels *chosen;
    const bn_kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (k)
        return k;
    const char *cap = getenv("BN_ISA");
    int cap_generic = cap != NULL && strcmp(cap, "generic") == 0;
    int cap_avx2 = cap_generic || (cap != NULL && strcmp(cap, "avx2") == 0);
    int cap_avx512 = cap_avx2 || (cap != NULL && strcmp(cap, "avx512") == 0);
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               has_f16c();
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (avx512 && __builtin_cpu_supports("avx512bf16") && !cap_avx512)
        k = &bn_kernels_avx512bf16;
    else if (avx512 && !cap_avx2)
        k = &bn_kernels_avx512;
    else if (avx2 && !cap_generic)
        k = &bn_kernels_avx2;
    else
        k = &bn_kernels_generic;
    __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    return k;
}

const char *bn_isa(void) {
    return bn_kernels_select()->name;
}
