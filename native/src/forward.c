#include <math.h>
#include <stddef.h>

#include "batchnorm.h"
#include "bn_internal.h"

typedef struct {
    float *y;
    double *save_mean, *save_invstd;
    float *running_mean, *running_var;
    const float *x, *weight, *bias;
    int64_t n, s, m;
    bn_rows v;
    double eps, factor;
} train_args;

/* The shift for a channel's moments: its first value, or 0 when that is not finite. */
static double channel_shift(const float *x) {
    return isfinite(x[0]) ? (double)x[0] : 0.0;
}

// x is (N,C,S); the moments of one channel about shift, block by block in block order
static bn_moments channel_moments(const float *x, bn_rows v, int64_t m, double shift) {
    bn_moments acc = {0.0, 0.0, 0.0};
    for (int64_t b = 0; b < m; b += BN_BLOCK) {
        int64_t len = m - b < BN_BLOCK ? m - b : BN_BLOCK;
        acc = bn_merge_moments(acc, bn_block_moments(x, v, b, len, shift));
    }
    return acc;
}

// x, y are (N,C,S); statistics, running update and normalisation of channel ch
static void train_channel(const train_args *a, int64_t ch) {
    const float *x = a->x + ch * a->s;
    double shift = channel_shift(x);
    bn_moments mo = channel_moments(x, a->v, a->m, shift);
    double mean = shift + mo.sum / (double)a->m;
    double var = mo.m2 / (double)a->m;
    double invstd = 1.0 / sqrt(var + a->eps);
    if (a->save_mean)
        a->save_mean[ch] = mean;
    if (a->save_invstd)
        a->save_invstd[ch] = invstd;
    if (a->running_mean) {
        double f = a->factor;
        double unbiased = mo.m2 / (double)(a->m - 1);
        a->running_mean[ch] = (float)((1.0 - f) * (double)a->running_mean[ch] + f * mean);
        a->running_var[ch] = (float)((1.0 - f) * (double)a->running_var[ch] + f * unbiased);
    }
    double w = a->weight ? (double)a->weight[ch] : 1.0;
    double b = a->bias ? (double)a->bias[ch] : 0.0;
    bn_block_normalize(a->y + ch * a->s, x, a->v, 0, a->m, mean, invstd * w, b);
}

int32_t bn_forward_train_f32(float *y, double *save_mean, double *save_invstd,
                             float *running_mean, float *running_var,
                             const float *x, const float *weight, const float *bias,
                             int64_t n, int64_t c, int64_t s, int32_t layout,
                             double eps, double factor) {
    if (y == NULL || x == NULL || (running_mean == NULL) != (running_var == NULL))
        return BN_ERR_NULL_POINTER;
    int32_t st = bn_check_shape(n, c, s, layout);
    if (st == BN_OK)
        st = bn_check_eps(eps);
    if (st == BN_OK)
        st = bn_check_factor(factor);
    if (st != BN_OK)
        return st;
    int64_t m = n * s;
    if (m == 1)
        return BN_ERR_TOO_FEW_VALUES;
    if (m == 0) {
        for (int64_t ch = 0; ch < c; ch++) {
            if (save_mean)
                save_mean[ch] = 0.0;
            if (save_invstd)
                save_invstd[ch] = 0.0;
        }
        return BN_OK;
    }
    train_args a = {y, save_mean, save_invstd, running_mean, running_var, x, weight, bias,
                    n, s, m, {s, c * s}, eps, factor};
    int threads = bn_threads_for(m * c);
    if (threads == 1) {
        for (int64_t ch = 0; ch < c; ch++)
            train_channel(&a, ch);
    } else {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t ch = 0; ch < c; ch++)
            train_channel(&a, ch);
    }
    return BN_OK;
}

typedef struct {
    float *y;
    const float *x, *weight, *bias, *running_mean, *running_var;
    int64_t s, m;
    bn_rows v;
    double eps;
} eval_args;

// x, y are (N,C,S); normalisation of channel ch with the running statistics
static void eval_channel(const eval_args *a, int64_t ch) {
    double invstd = 1.0 / sqrt((double)a->running_var[ch] + a->eps);
    double w = a->weight ? (double)a->weight[ch] : 1.0;
    double b = a->bias ? (double)a->bias[ch] : 0.0;
    bn_block_normalize(a->y + ch * a->s, a->x + ch * a->s, a->v, 0, a->m,
                       (double)a->running_mean[ch], invstd * w, b);
}

int32_t bn_forward_eval_f32(float *y,
                            const float *x, const float *weight, const float *bias,
                            const float *running_mean, const float *running_var,
                            int64_t n, int64_t c, int64_t s, int32_t layout,
                            double eps) {
    if (y == NULL || x == NULL || running_mean == NULL || running_var == NULL)
        return BN_ERR_NULL_POINTER;
    int32_t st = bn_check_shape(n, c, s, layout);
    if (st == BN_OK)
        st = bn_check_eps(eps);
    if (st != BN_OK)
        return st;
    int64_t m = n * s;
    if (m == 0)
        return BN_OK;
    eval_args a = {y, x, weight, bias, running_mean, running_var, s, m, {s, c * s}, eps};
    int threads = bn_threads_for(m * c);
    if (threads == 1) {
        for (int64_t ch = 0; ch < c; ch++)
            eval_channel(&a, ch);
    } else {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t ch = 0; ch < c; ch++)
            eval_channel(&a, ch);
    }
    return BN_OK;
}
