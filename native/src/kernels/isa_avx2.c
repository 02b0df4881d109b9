/* The avx2 kernel set: kernels.inc over simd_avx2.h. */
#include "simd_avx2.h"

#define BN_KERNELS bn_kernels_avx2
#define BN_KERNELS_NAME "avx2"
#include "kernels.inc"
