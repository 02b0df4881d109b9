#include "batchnorm.h"

const char *bn_status_message(int32_t status) {
    switch (status) {
    case BN_OK:
        return "ok";
    case BN_ERR_NULL_POINTER:
        return "a required pointer is NULL, or only one of running_mean and running_var is given";
    case BN_ERR_BAD_SIZE:
        return "bad size: n must be >= 0, c >= 1, s >= 0, k >= 0 and every count >= 0";
    case BN_ERR_SIZE_OVERFLOW:
        return "size overflow: n*c*s or a byte count derived from it does not fit in int64_t";
    case BN_ERR_TOO_FEW_VALUES:
        return "expected more than 1 value per channel when training (n*s == 1)";
    case BN_ERR_BAD_EPS:
        return "eps must be finite and >= 0";
    case BN_ERR_BAD_FACTOR:
        return "the running-stat factor (momentum) must be in [0, 1]";
    case BN_ERR_UNSUPPORTED_LAYOUT:
        return "unsupported layout: expected BN_LAYOUT_NCS (channels-first) or BN_LAYOUT_NSC "
               "(channels-last)";
    case BN_ERR_BAD_THREADS:
        return "the thread count must be in 1..1024";
    case BN_ERR_UNSUPPORTED_DTYPE:
        return "unsupported element type: expected BN_F32, BN_BF16 or BN_F16";
    case BN_ERR_BAD_ACTIVATION:
        return "bad epilogue: act must be BN_ACT_NONE, BN_ACT_RELU or BN_ACT_ADD_RELU, and "
               "BN_ACT_ADD_RELU needs z";
    case BN_ERR_BAD_FLAGS:
        return "unknown bits in flags: only BN_RUNNING_VAR_BIASED is defined";
    case BN_ERR_BAD_COUNT:
        return "the total count is smaller than this shard's n*s";
    default:
        return "unknown status code";
    }
}
