/* The generic kernel set: kernels.inc over simd_generic.h. */
#include "simd_generic.h"

#define BN_KERNELS bn_kernels_generic
#define BN_KERNELS_NAME "generic"
#include "kernels.inc"
