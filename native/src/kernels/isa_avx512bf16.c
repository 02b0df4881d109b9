/* The avx512bf16 kernel set: the avx512 set with bfloat16 outputs narrowed by AVX-512 BF16's
 * conversion instruction. */
#define BN_AVX512_BF16 1
#include "simd_avx512.h"

#define BN_KERNELS bn_kernels_avx512bf16
#define BN_KERNELS_NAME "avx512bf16"
#include "kernels.inc"
