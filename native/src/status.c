#include "batchnorm.h"

const char *bn_status_message(int32_t status) {
    switch (status) {
    case BN_OK:
        return "ok";
    case BN_ERR_NULL_POINTER:
        return "a required pointer is NULL, or only one of running_mean and running_var is given";
    case BN_ERR_BAD_SIZE:
        return "bad size: n must be >= 0, c >= 1 and s >= 0";
    case BN_ERR_SIZE_OVERFLOW:
        return "size overflow: n*c*s or a byte count derived from it does not fit in int64_t";
    case BN_ERR_TOO_FEW_VALUES:
        return "expected more than 1 value per channel when training (n*s == 1)";
    case BN_ERR_BAD_EPS:
        return "eps must be finite and >= 0";
    case BN_ERR_BAD_FACTOR:
        return "the running-stat factor (momentum) must be in [0, 1]";
    case BN_ERR_UNSUPPORTED_LAYOUT:
        return "unsupported layout: only BN_LAYOUT_NCS (contiguous NCHW) is implemented";
    case BN_ERR_BAD_THREADS:
        return "the thread count must be in 1..1024";
    default:
        return "unknown status code";
    }
}
