/* Per-channel math, in double: statistics, the running update, and the constants of the
 * elementwise passes (bn.h). */
#include <math.h>

#include "bn.h"
#include "kernels/elem.h"

double bn_elem_value(const void *p, int64_t i, int32_t dtype) {
    if (dtype == BN_F32)
        return (double)((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return (double)(dtype == BN_BF16 ? bn_bf16_to_float(h) : bn_f16_to_float(h));
}

bn_moments bn_moments_of(bn_sums t, double count) {
    bn_moments m = {count, 0.0, 0.0};
    if (count == 0.0)
        return m;
    m.mean = t.s / count;
    m.m2 = t.q - t.s * m.mean;
    if (m.m2 < 0.0) /* rounding, when every value is the same; NaN stays */
        m.m2 = 0.0;
    return m;
}

bn_moments bn_moments_merge(bn_moments a, bn_moments b) {
    if (a.n == 0.0)
        return b;
    if (b.n == 0.0)
        return a;
    double n = a.n + b.n, delta = b.mean - a.mean;
    bn_moments r = {n, a.mean + delta * (b.n / n), a.m2 + b.m2 + delta * delta * (a.n * b.n / n)};
    return r;
}

/* PyTorch's invstd: a constant channel with eps == 0 gets 0 (y = bias, zero dx and dweight)
 * rather than 1/0. Eval mode has no such rule. */
static double train_invstd(double var, double eps) {
    return var == 0.0 && eps == 0.0 ? 0.0 : 1.0 / sqrt(var + eps);
}

static void set_norm(const bn_coef *k, int64_t j, double mean, double invstd, const float *w,
                     const float *b, int64_t ch) {
    k->mean[j] = mean;
    k->a[j] = invstd * (w ? (double)w[ch] : 1.0);
    k->b[j] = b ? (double)b[ch] : 0.0;
}

void bn_finalize_train(const bn_train_out *o, int64_t ch, double mean, double m2, double count,
                       const bn_coef *k, int64_t j) {
    double var = m2 / count, invstd = train_invstd(var, o->eps);
    if (o->save_mean)
        o->save_mean[ch] = mean;
    if (o->save_invstd)
        o->save_invstd[ch] = invstd;
    if (o->running_mean) {
        double f = o->factor;
        double stored = o->flags & BN_RUNNING_VAR_BIASED ? var : m2 / (count - 1.0);
        o->running_mean[ch] = (float)((1.0 - f) * (double)o->running_mean[ch] + f * mean);
        o->running_var[ch] = (float)((1.0 - f) * (double)o->running_var[ch] + f * stored);
    }
    if (k)
        set_norm(k, j, mean, invstd, o->weight, o->bias, ch);
}

void bn_consts_eval(const bn_coef *k, const float *running_mean, const float *running_var,
                    const float *weight, const float *bias, double eps, int64_t c0, int64_t g) {
    for (int64_t j = 0; j < g; j++) {
        double invstd = 1.0 / sqrt((double)running_var[c0 + j] + eps);
        set_norm(k, j, (double)running_mean[c0 + j], invstd, weight, bias, c0 + j);
    }
}

void bn_consts_saved(const bn_coef *k, const double *mean, const double *invstd,
                     const float *weight, const float *bias, int64_t c0, int64_t g) {
    for (int64_t j = 0; j < g; j++)
        set_norm(k, j, mean[c0 + j], invstd[c0 + j], weight, bias, c0 + j);
}

/* dx constants of the training backward: dx = ((g - gm) - (x - mean)*kk)*a. */
static void set_train_dx(const bn_coef *k, int64_t j, const bn_grad_out *o, int64_t ch,
                         double sum_dy, double sum_dy_xhat) {
    double invstd = o->invstd[ch];
    k->mean[j] = o->mean[ch];
    k->a[j] = invstd * (o->weight ? (double)o->weight[ch] : 1.0);
    k->b[j] = sum_dy / o->count;
    k->k[j] = invstd * (sum_dy_xhat / o->count);
}

void bn_finalize_grads(const bn_grad_out *o, int64_t ch, bn_sums t, const bn_coef *k,
                       int64_t j) {
    double sum_dy_xhat = o->invstd[ch] * t.q;
    if (o->dweight)
        o->dweight[ch] = (float)sum_dy_xhat;
    if (o->dbias)
        o->dbias[ch] = (float)t.s;
    if (o->sum_dy)
        o->sum_dy[ch] = t.s;
    if (o->sum_dy_xhat)
        o->sum_dy_xhat[ch] = sum_dy_xhat;
    if (k)
        set_train_dx(k, j, o, ch, t.s, sum_dy_xhat);
}

void bn_consts_train_dx(const bn_coef *k, const bn_grad_out *o, const double *sum_dy,
                        const double *sum_dy_xhat, int64_t c0, int64_t g) {
    for (int64_t j = 0; j < g; j++)
        set_train_dx(k, j, o, c0 + j, sum_dy[c0 + j], sum_dy_xhat[c0 + j]);
}

void bn_finalize_eval_grads(const bn_grad_out *o, int64_t ch, bn_sums t, const bn_coef *k,
                            int64_t j) {
    double invstd = 1.0 / sqrt((double)o->running_var[ch] + o->eps);
    if (o->dweight)
        o->dweight[ch] = (float)(t.q * invstd);
    if (o->dbias)
        o->dbias[ch] = (float)t.s;
    if (k)
        k->a[j] = invstd * (o->weight ? (double)o->weight[ch] : 1.0);
}
