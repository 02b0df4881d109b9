#include <math.h>
#include <stddef.h>

#include "batchnorm.h"
#include "bn_internal.h"

typedef struct {
    float *dx, *dweight, *dbias;
    const float *dy, *x, *weight;
    const double *save_mean, *save_invstd;
    int64_t s, m;
    bn_rows v;
} train_args;

// dy, x are (N,C,S); sum dy and sum dy*(x-mean) of one channel, block by block in block order
static bn_grad_sums channel_grad_sums(const float *dy, const float *x, bn_rows v, int64_t m,
                                      double mean) {
    bn_grad_sums acc = {0.0, 0.0};
    for (int64_t b = 0; b < m; b += BN_BLOCK) {
        int64_t len = m - b < BN_BLOCK ? m - b : BN_BLOCK;
        bn_grad_sums g = bn_block_grad_sums(dy, x, v, b, len, mean);
        acc.dy += g.dy;
        acc.dyx += g.dyx;
    }
    return acc;
}

// dx, dy, x are (N,C,S); the reductions, then dx, of channel ch
static void train_channel(const train_args *a, int64_t ch) {
    int64_t off = ch * a->s;
    double mean = a->save_mean[ch], invstd = a->save_invstd[ch];
    bn_grad_sums g = channel_grad_sums(a->dy + off, a->x + off, a->v, a->m, mean);
    if (a->dbias)
        a->dbias[ch] = (float)g.dy;
    if (a->dweight)
        a->dweight[ch] = (float)(g.dyx * invstd);
    if (a->dx) {
        double w = a->weight ? (double)a->weight[ch] : 1.0;
        double mm = (double)a->m;
        bn_block_train_dx(a->dx + off, a->dy + off, a->x + off, a->v, 0, a->m, mean, w * invstd,
                          g.dy / mm, g.dyx * invstd * invstd / mm);
    }
}

static void zero_channels(float *p, int64_t c) {
    if (p)
        for (int64_t ch = 0; ch < c; ch++)
            p[ch] = 0.0f;
}

int32_t bn_backward_train_f32(float *dx, float *dweight, float *dbias,
                              const float *dy, const float *x, const float *weight,
                              const double *save_mean, const double *save_invstd,
                              int64_t n, int64_t c, int64_t s, int32_t layout) {
    if (dy == NULL || x == NULL || save_mean == NULL || save_invstd == NULL)
        return BN_ERR_NULL_POINTER;
    int32_t st = bn_check_shape(n, c, s, layout);
    if (st != BN_OK)
        return st;
    int64_t m = n * s;
    if (m == 0) {
        zero_channels(dweight, c);
        zero_channels(dbias, c);
        return BN_OK;
    }
    if (dx == NULL && dweight == NULL && dbias == NULL)
        return BN_OK;
    train_args a = {dx, dweight, dbias, dy, x, weight, save_mean, save_invstd, s, m, {s, c * s}};
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
    float *dx, *dweight, *dbias;
    const float *dy, *x, *weight, *running_mean, *running_var;
    int64_t s, m;
    bn_rows v;
    double eps;
} eval_args;

// dx, dy, x are (N,C,S); the running statistics are constants
static void eval_channel(const eval_args *a, int64_t ch) {
    int64_t off = ch * a->s;
    double invstd = 1.0 / sqrt((double)a->running_var[ch] + a->eps);
    if (a->dweight) {
        bn_grad_sums g = channel_grad_sums(a->dy + off, a->x + off, a->v, a->m,
                                           (double)a->running_mean[ch]);
        a->dweight[ch] = (float)(g.dyx * invstd);
        if (a->dbias)
            a->dbias[ch] = (float)g.dy;
    } else if (a->dbias) {
        double sum = 0.0;
        for (int64_t b = 0; b < a->m; b += BN_BLOCK)
            sum += bn_block_sum(a->dy + off, a->v, b, a->m - b < BN_BLOCK ? a->m - b : BN_BLOCK);
        a->dbias[ch] = (float)sum;
    }
    if (a->dx) {
        double w = a->weight ? (double)a->weight[ch] : 1.0;
        bn_block_scale(a->dx + off, a->dy + off, a->v, 0, a->m, w * invstd);
    }
}

int32_t bn_backward_eval_f32(float *dx, float *dweight, float *dbias,
                             const float *dy, const float *x, const float *weight,
                             const float *running_mean, const float *running_var,
                             int64_t n, int64_t c, int64_t s, int32_t layout,
                             double eps) {
    if (dy == NULL || running_mean == NULL || running_var == NULL ||
        (dweight != NULL && x == NULL))
        return BN_ERR_NULL_POINTER;
    int32_t st = bn_check_shape(n, c, s, layout);
    if (st == BN_OK)
        st = bn_check_eps(eps);
    if (st != BN_OK)
        return st;
    int64_t m = n * s;
    if (m == 0) {
        zero_channels(dweight, c);
        zero_channels(dbias, c);
        return BN_OK;
    }
    if (dx == NULL && dweight == NULL && dbias == NULL)
        return BN_OK;
    eval_args a = {dx, dweight, dbias, dy, x, weight, running_mean, running_var,
                   s, m, {s, c * s}, eps};
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
