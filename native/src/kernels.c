#include <stdlib.h>
#include <string.h>

#include "bn_internal.h"

/*
 * Chosen once per process. The choice is cached without a lock: every thread that races to make
 * it computes the same answer.
 */
const bn_kernels *bn_kernels_select(void) {
    static const bn_kernels *chosen;
    const bn_kernels *k = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (k)
        return k;
    const char *isa = getenv("BN_ISA");
    int cap_generic = isa != NULL && strcmp(isa, "generic") == 0;
    int cap_avx2 = cap_generic || (isa != NULL && strcmp(isa, "avx2") == 0);
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (avx2 && !cap_avx2 && __builtin_cpu_supports("avx512f"))
        k = &bn_kernels_avx512;
    else if (avx2 && !cap_generic)
        k = &bn_kernels_avx2;
    else
        k = &bn_kernels_generic;
    __atomic_store_n(&chosen, k, __ATOMIC_RELEASE);
    return k;
}
