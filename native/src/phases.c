/* The statistics phases (batchnorm.h): a batch split into shards. */
#include <stddef.h>

#include "bn.h"

BN_ENTRY
int32_t bn_stats(double *mean, double *m2, const void *x, int64_t n, int64_t c, int64_t s,
                 int32_t layout, int32_t dtype) {
    bn_enter();
    if (mean == NULL || m2 == NULL || x == NULL)
        return BN_ERR_NULL_POINTER;
    int32_t st = bn_check_shape(n, c, s, layout);
    if (st == BN_OK)
        st = bn_check_type(dtype, BN_ACT_NONE, NULL);
    if (st != BN_OK)
        return st;
    if (n * s == 0) {
        for (int64_t ch = 0; ch < c; ch++)
            mean[ch] = m2[ch] = 0.0;
        return BN_OK;
    }
    bn_op op = {bn_io_make(x, NULL, NULL, NULL, NULL, NULL, n, c, s, layout, dtype, BN_ACT_NONE),
                BN_REDUCE_MOMENTS, BN_FIN_STATS, -1, NULL, NULL, mean, m2, NULL};
    bn_reduce(&op);
    return BN_OK;
}

BN_ENTRY
int32_t bn_merge_stats(int64_t *count, double *mean, double *m2, const int64_t *counts,
                       const double *means, const double *m2s, int64_t k, int64_t c) {
    bn_enter();
    if (count == NULL || mean == NULL || m2 == NULL ||
        (k > 0 && (counts == NULL || means == NULL || m2s == NULL)))
        return BN_ERR_NULL_POINTER;
    if (k < 0 || c < 1)
        return BN_ERR_BAD_SIZE;
    /* the outputs' C doubles too, also when there are no partials */
    int64_t kc, cb, total = 0;
    if (__builtin_mul_overflow(k, c, &kc) || __builtin_mul_overflow(kc, (int64_t)8, &kc) ||
        __builtin_mul_overflow(c, (int64_t)8, &cb))
        return BN_ERR_SIZE_OVERFLOW;
    for (int64_t i = 0; i < k; i++) {
        if (counts[i] < 0)
            return BN_ERR_BAD_SIZE;
        if (__builtin_add_overflow(total, counts[i], &total))
            return BN_ERR_SIZE_OVERFLOW;
    }
    for (int64_t ch = 0; ch < c; ch++) {
        bn_moments acc = {0.0, 0.0, 0.0};
        for (int64_t i = 0; i < k; i++) {
            bn_moments part = {(double)counts[i], means[i * c + ch], m2s[i * c + ch]};
            if (counts[i] > 0)
                acc = bn_moments_merge(acc, part);
        }
        mean[ch] = acc.mean;
        m2[ch] = acc.m2;
    }
    *count = total;
    return BN_OK;
}

typedef struct {
    const double *mean, *m2;
    double count, eps;
    const float *weight, *bias;
} stats_ctx;

static void stats_consts(const void *p, const bn_coef *k, int64_t c0, int64_t g) {
    const stats_ctx *e = p;
    bn_train_out o = {NULL, NULL, NULL, NULL, e->weight, e->bias, e->eps, 0.0, 0};
    bn_finalize_train(&o, c0, g, e->mean + c0, e->m2 + c0, e->count, k);
}

BN_ENTRY
int32_t bn_forward_from_stats(void *y, double *save_mean, double *save_invstd,
                              float *running_mean, float *running_var, const void *x,
                              const void *z, const float *weight, const float *bias,
                              const double *mean, const double *m2, int64_t count, int64_t n,
                              int64_t c, int64_t s, int32_t layout, int32_t dtype, int32_t act,
                              double eps, double factor, int32_t flags) {
    bn_enter();
    if (y == NULL || x == NULL || mean == NULL || m2 == NULL ||
        (running_mean == NULL) != (running_var == NULL))
        return BN_ERR_NULL_POINTER;
    int32_t st = bn_check_shape(n, c, s, layout);
    if (st == BN_OK)
        st = bn_check_type(dtype, act, z);
    if (st == BN_OK)
        st = bn_check_eps(eps);
    if (st == BN_OK)
        st = bn_check_factor(factor);
    if (st == BN_OK)
        st = bn_check_flags(flags);
    if (st == BN_OK && count < 0)
        st = BN_ERR_BAD_SIZE;
    if (st == BN_OK && count < n * s)
        st = BN_ERR_BAD_COUNT;
    if (st != BN_OK)
        return st;
    if (count == 1)
        return BN_ERR_TOO_FEW_VALUES;
    if (count == 0) {
        for (int64_t ch = 0; ch < c; ch++) {
            if (save_mean)
                save_mean[ch] = 0.0;
            if (save_invstd)
                save_invstd[ch] = 0.0;
        }
        return BN_OK;
    }
    bn_train_out o = {save_mean, save_invstd, running_mean, running_var, weight, bias,
                      eps, factor, flags};
    bn_finalize_train(&o, 0, c, mean, m2, (double)count, NULL);
    if (n * s == 0)
        return BN_OK;
    stats_ctx e = {mean, m2, (double)count, eps, weight, bias};
    bn_io io = bn_io_make(x, act == BN_ACT_ADD_RELU ? z : NULL, NULL, NULL, y, NULL, n, c, s, layout,
                       dtype, act);
    bn_apply(&io, BN_APPLY_NORMALIZE, stats_consts, &e);
    return BN_OK;
}

/* The checks of the backward phases: dy, x, the saved statistics, and y for the epilogues. */
static int32_t check_backward(const void *dy, const void *y, const void *x,
                              const double *save_mean, const double *save_invstd, int64_t n,
                              int64_t c, int64_t s, int32_t layout, int32_t dtype, int32_t act) {
    if (dy == NULL || x == NULL || save_mean == NULL || save_invstd == NULL ||
        (act != BN_ACT_NONE && y == NULL))
        return BN_ERR_NULL_POINTER;
    int32_t st = bn_check_shape(n, c, s, layout);
    return st != BN_OK ? st : bn_check_type(dtype, act, dy);
}

BN_ENTRY
int32_t bn_backward_reduce(double *sum_dy, double *sum_dy_xhat, float *dweight, float *dbias,
                           const void *dy, const void *y, const void *x, const double *save_mean,
                           const double *save_invstd, int64_t n, int64_t c, int64_t s,
                           int32_t layout, int32_t dtype, int32_t act) {
    bn_enter();
    if (sum_dy == NULL || sum_dy_xhat == NULL)
        return BN_ERR_NULL_POINTER;
    int32_t st = check_backward(dy, y, x, save_mean, save_invstd, n, c, s, layout, dtype, act);
    if (st != BN_OK)
        return st;
    if (n * s == 0) {
        for (int64_t ch = 0; ch < c; ch++) {
            sum_dy[ch] = sum_dy_xhat[ch] = 0.0;
            if (dweight)
                dweight[ch] = 0.0f;
            if (dbias)
                dbias[ch] = 0.0f;
        }
        return BN_OK;
    }
    bn_grad_out o = {dweight, dbias, sum_dy, sum_dy_xhat, NULL, save_mean, save_invstd,
                     NULL, NULL, 0.0, (double)(n * s)};
    bn_op op = {bn_io_make(x, NULL, dy, act != BN_ACT_NONE ? y : NULL, NULL, NULL, n, c, s, layout,
                        dtype, act),
                BN_REDUCE_GRADS, BN_FIN_GRADS, -1, NULL, &o, NULL, NULL, NULL};
    bn_reduce(&op);
    return BN_OK;
}

typedef struct {
    bn_grad_out o;
    const double *sum_dy, *sum_dy_xhat;
} sums_ctx;

static void sums_consts(const void *p, const bn_coef *k, int64_t c0, int64_t g) {
    const sums_ctx *e = p;
    bn_consts_train_dx(k, &e->o, e->sum_dy, e->sum_dy_xhat, c0, g);
}

BN_ENTRY
int32_t bn_backward_from_sums(void *dx, void *dz, const void *dy, const void *y, const void *x,
                              const float *weight, const double *save_mean,
                              const double *save_invstd, const double *sum_dy,
                              const double *sum_dy_xhat, int64_t count, int64_t n, int64_t c,
                              int64_t s, int32_t layout, int32_t dtype, int32_t act) {
    bn_enter();
    if (sum_dy == NULL || sum_dy_xhat == NULL)
        return BN_ERR_NULL_POINTER;
    int32_t st = check_backward(dy, y, x, save_mean, save_invstd, n, c, s, layout, dtype, act);
    if (st == BN_OK && count < 0)
        st = BN_ERR_BAD_SIZE;
    if (st == BN_OK && count < n * s)
        st = BN_ERR_BAD_COUNT;
    if (st != BN_OK)
        return st;
    void *dz_out = act == BN_ACT_ADD_RELU ? dz : NULL;
    if (n * s == 0 || (dx == NULL && dz_out == NULL))
        return BN_OK;
    sums_ctx e = {{NULL, NULL, NULL, NULL, weight, save_mean, save_invstd, NULL, NULL, 0.0,
                   (double)count},
                  sum_dy, sum_dy_xhat};
    bn_io io = bn_io_make(x, NULL, dy, act != BN_ACT_NONE ? y : NULL, dx, dz_out, n, c, s, layout,
                       dtype, act);
    bn_apply(&io, BN_APPLY_TRAIN_DX, sums_consts, &e);
    return BN_OK;
}
