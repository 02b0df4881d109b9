/* The avx512 kernel set: kernels.inc over simd_avx512.h. */
#include "simd_avx512.h"

#define BN_KERNELS bn_kernels_avx512
#define BN_KERNELS_NAME "avx512"
#include "kernels.inc"
