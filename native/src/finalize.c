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

/* invstd[j] = 1/sqrt(var[j] + eps), with PyTorch's training rule: a constant channel with
 * eps == 0 gets 0 (y = bias, zero dx and dweight) rather than 1/0. Eval mode has no such rule.
 * Loops without calls or branches, so that the channels' square roots and divisions overlap. */
static void train_invstd(double *invstd, const double *var, double eps, int64_t g) {
    for (int64_t j = 0; j < g; j++)
        invstd[j] = 1.0 / sqrt(var[j] + eps);
    for (int64_t j = 0; eps == 0.0 && j < g; j++)
        invstd[j] = var[j] == 0.0 ? 0.0 : invstd[j];
}

static void set_norm(const bn_coef *k, int64_t j, double mean, double invstd, const float *w,
                     const float *b, int64_t ch) {
    k->mean[j] = mean;
    k->a[j] = invstd * (w ? (double)w[ch] : 1.0);
    k->b[j] = b ? (double)b[ch] : 0.0;
}

/* Channels per step of a group finalize: its per-channel temporaries live on the stack. */
#define BN_FIN_STEP 64

// mean, m2, var, invstd are (g); k's arrays are (g)
static void train_step(const bn_train_out *o, int64_t c0, int64_t g, const double *mean,
                       const double *m2, double count, const bn_coef *k) {
    double var[BN_FIN_STEP], invstd[BN_FIN_STEP];
    for (int64_t j = 0; j < g; j++)
        var[j] = m2[j] / count;
    train_invstd(invstd, var, o->eps, g);
    for (int64_t j = 0; o->save_mean && j < g; j++)
        o->save_mean[c0 + j] = mean[j];
    for (int64_t j = 0; o->save_invstd && j < g; j++)
        o->save_invstd[c0 + j] = invstd[j];
    if (o->running_mean) {
        double f = o->factor;
        int biased = (o->flags & BN_RUNNING_VAR_BIASED) != 0;
        for (int64_t j = 0; j < g; j++) {
            double stored = biased ? var[j] : m2[j] / (count - 1.0);
            o->running_mean[c0 + j] =
                (float)((1.0 - f) * (double)o->running_mean[c0 + j] + f * mean[j]);
            o->running_var[c0 + j] =
                (float)((1.0 - f) * (double)o->running_var[c0 + j] + f * stored);
        }
    }
    for (int64_t j = 0; k && j < g; j++)
        set_norm(k, j, mean[j], invstd[j], o->weight, o->bias, c0 + j);
}

void bn_finalize_train(const bn_train_out *o, int64_t c0, int64_t g, const double *mean,
                       const double *m2, double count, const bn_coef *k) {
    for (int64_t j = 0; j < g; j += BN_FIN_STEP) {
        int64_t n = g - j < BN_FIN_STEP ? g - j : BN_FIN_STEP;
        bn_coef kj = k ? bn_coef_from(k, j) : (bn_coef){NULL, NULL, NULL, NULL, NULL};
        train_step(o, c0 + j, n, mean + j, m2 + j, count, k ? &kj : NULL);
    }
}

void bn_consts_eval(const bn_coef *k, const float *running_mean, const float *running_var,
                    const float *weight, const float *bias, double eps, int64_t c0, int64_t g) {
    for (int64_t j = 0; j < g; j++) /* invstd, its own loop as in train_invstd */
        k->a[j] = 1.0 / sqrt((double)running_var[c0 + j] + eps);
    for (int64_t j = 0; j < g; j++)
        set_norm(k, j, (double)running_mean[c0 + j], k->a[j], weight, bias, c0 + j);
}

void bn_consts_saved(const bn_coef *k, const double *mean, const double *invstd,
                     const float *weight, const float *bias, int64_t c0, int64_t g) {
    for (int64_t j = 0; j < g; j++)
        set_norm(k, j, mean[c0 + j], invstd[c0 + j], weight, bias, c0 + j);
}

/* dx constants of the training backward, dx = ((g - gm) - (x - mean)*kk)*a, for channels
 * [c0, c0+g) from their sums sum_dy[0..g), sum_dy_xhat[0..g). */
static void train_dx(const bn_coef *k, const bn_grad_out *o, int64_t c0, int64_t g,
                     const double *sum_dy, const double *sum_dy_xhat) {
    for (int64_t j = 0; j < g; j++) {
        double invstd = o->invstd[c0 + j];
        k->mean[j] = o->mean[c0 + j];
        k->a[j] = invstd * (o->weight ? (double)o->weight[c0 + j] : 1.0);
        k->b[j] = sum_dy[j] / o->count;
        k->k[j] = invstd * (sum_dy_xhat[j] / o->count);
    }
}

void bn_finalize_grads(const bn_grad_out *o, int64_t c0, int64_t g, const bn_sums *t,
                       const bn_coef *k) {
    double s[BN_FIN_STEP], q[BN_FIN_STEP];
    for (int64_t j0 = 0; j0 < g; j0 += BN_FIN_STEP) {
        int64_t n = g - j0 < BN_FIN_STEP ? g - j0 : BN_FIN_STEP, ch = c0 + j0;
        for (int64_t j = 0; j < n; j++) {
            s[j] = t[j0 + j].s;
            q[j] = o->invstd[ch + j] * t[j0 + j].q;
        }
        for (int64_t j = 0; o->dweight && j < n; j++)
            o->dweight[ch + j] = (float)q[j];
        for (int64_t j = 0; o->dbias && j < n; j++)
            o->dbias[ch + j] = (float)s[j];
        for (int64_t j = 0; o->sum_dy && j < n; j++)
            o->sum_dy[ch + j] = s[j];
        for (int64_t j = 0; o->sum_dy_xhat && j < n; j++)
            o->sum_dy_xhat[ch + j] = q[j];
        if (k) {
            bn_coef kj = bn_coef_from(k, j0);
            train_dx(&kj, o, ch, n, s, q);
        }
    }
}

void bn_consts_train_dx(const bn_coef *k, const bn_grad_out *o, const double *sum_dy,
                        const double *sum_dy_xhat, int64_t c0, int64_t g) {
    train_dx(k, o, c0, g, sum_dy + c0, sum_dy_xhat + c0);
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
