#include <math.h>
#include <stddef.h>

#include "batchnorm.h"
#include "bn.h"

static int fits(int64_t a, int64_t b) {
    int64_t r;
    return !__builtin_mul_overflow(a, b, &r);
}

/*
 * Besides n*c*s, every count the kernels form must fit: the byte size of the tensor, the row
 * stride c*s (used even when n == 0 would make the tensor empty) and its byte size, and the byte
 * size of the per-channel double arrays.
 */
int32_t bn_check_shape(int64_t n, int64_t c, int64_t s, int32_t layout) {
    if (n < 0 || c < 1 || s < 0)
        return BN_ERR_BAD_SIZE;
    int64_t cs, ncs;
    if (__builtin_mul_overflow(c, s, &cs) || !fits(cs, (int64_t)sizeof(float)))
        return BN_ERR_SIZE_OVERFLOW;
    if (__builtin_mul_overflow(n, cs, &ncs) || !fits(ncs, (int64_t)sizeof(float)))
        return BN_ERR_SIZE_OVERFLOW;
    if (!fits(c, (int64_t)sizeof(double)))
        return BN_ERR_SIZE_OVERFLOW;
    if (layout != BN_LAYOUT_NCS && layout != BN_LAYOUT_NSC)
        return BN_ERR_UNSUPPORTED_LAYOUT;
    return BN_OK;
}

int32_t bn_check_eps(double eps) {
    return (isfinite(eps) && eps >= 0.0) ? BN_OK : BN_ERR_BAD_EPS;
}

int32_t bn_check_factor(double factor) {
    return (factor >= 0.0 && factor <= 1.0) ? BN_OK : BN_ERR_BAD_FACTOR;
}

int32_t bn_check_type(int32_t dtype, int32_t act, const void *z) {
    if (dtype != BN_F32 && dtype != BN_BF16 && dtype != BN_F16)
        return BN_ERR_UNSUPPORTED_DTYPE;
    if (act != BN_ACT_NONE && act != BN_ACT_RELU && act != BN_ACT_ADD_RELU)
        return BN_ERR_BAD_ACTIVATION;
    if (act == BN_ACT_ADD_RELU && z == NULL)
        return BN_ERR_BAD_ACTIVATION;
    return BN_OK;
}

int32_t bn_check_flags(int32_t flags) {
    return (flags & ~BN_RUNNING_VAR_BIASED) == 0 ? BN_OK : BN_ERR_BAD_FLAGS;
}
