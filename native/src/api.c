/* The whole operations (batchnorm.h): check, describe, plan, run. */
#include <stddef.h>

#include "bn.h"

static int32_t check_common(int64_t n, int64_t c, int64_t s, int32_t layout, int32_t dtype,
                            int32_t act, const void *z) {
    int32_t st = bn_check_shape(n, c, s, layout);
    return st != BN_OK ? st : bn_check_type(dtype, act, z);
}

static void zero_doubles(double *p, int64_t c) {
    for (int64_t i = 0; p && i < c; i++)
        p[i] = 0.0;
}

static void zero_floats(float *p, int64_t c) {
    for (int64_t i = 0; p && i < c; i++)
        p[i] = 0.0f;
}

BN_ENTRY
int32_t bn_forward_train(void *y, double *save_mean, double *save_invstd, float *running_mean,
                         float *running_var, const void *x, const void *z, const float *weight,
                         const float *bias, int64_t n, int64_t c, int64_t s, int32_t layout,
                         int32_t dtype, int32_t act, double eps, double factor, int32_t flags) {
    bn_enter();
    if (y == NULL || x == NULL || (running_mean == NULL) != (running_var == NULL))
        return BN_ERR_NULL_POINTER;
    int32_t st = check_common(n, c, s, layout, dtype, act, z);
    if (st == BN_OK)
        st = bn_check_eps(eps);
    if (st == BN_OK)
        st = bn_check_factor(factor);
    if (st == BN_OK)
        st = bn_check_flags(flags);
    if (st != BN_OK)
        return st;
    int64_t m = n * s;
    if (m == 1)
        return BN_ERR_TOO_FEW_VALUES;
    if (m == 0) {
        zero_doubles(save_mean, c);
        zero_doubles(save_invstd, c);
        return BN_OK;
    }
    bn_train_out o = {save_mean, save_invstd, running_mean, running_var, weight, bias,
                      eps, factor, flags};
    bn_op op = {bn_io_make(x, act == BN_ACT_ADD_RELU ? z : NULL, NULL, NULL, y, NULL, n, c, s,
                        layout, dtype, act),
                BN_REDUCE_MOMENTS, BN_FIN_TRAIN, BN_APPLY_NORMALIZE, &o, NULL, NULL, NULL, NULL};
    bn_reduce(&op);
    return BN_OK;
}

typedef struct {
    const float *running_mean, *running_var, *weight, *bias;
    double eps;
} eval_ctx;

static void eval_consts(const void *p, const bn_coef *k, int64_t c0, int64_t g) {
    const eval_ctx *e = p;
    bn_consts_eval(k, e->running_mean, e->running_var, e->weight, e->bias, e->eps, c0, g);
}

BN_ENTRY
int32_t bn_forward_eval(void *y, const void *x, const void *z, const float *weight,
                        const float *bias, const float *running_mean, const float *running_var,
                        int64_t n, int64_t c, int64_t s, int32_t layout, int32_t dtype,
                        int32_t act, double eps) {
    bn_enter();
    if (y == NULL || x == NULL || running_mean == NULL || running_var == NULL)
        return BN_ERR_NULL_POINTER;
    int32_t st = check_common(n, c, s, layout, dtype, act, z);
    if (st == BN_OK)
        st = bn_check_eps(eps);
    if (st != BN_OK)
        return st;
    if (n * s == 0)
        return BN_OK;
    eval_ctx e = {running_mean, running_var, weight, bias, eps};
    bn_io io = bn_io_make(x, act == BN_ACT_ADD_RELU ? z : NULL, NULL, NULL, y, NULL, n, c, s, layout,
                       dtype, act);
    bn_apply(&io, BN_APPLY_NORMALIZE, eval_consts, &e);
    return BN_OK;
}

/* The checks every backward shares: dy and, for the fused epilogues, y. */
static int32_t check_backward(const void *dy, const void *y, int64_t n, int64_t c, int64_t s,
                              int32_t layout, int32_t dtype, int32_t act) {
    if (dy == NULL || (act != BN_ACT_NONE && y == NULL))
        return BN_ERR_NULL_POINTER;
    return check_common(n, c, s, layout, dtype, act, dy);
}

BN_ENTRY
int32_t bn_backward_train(void *dx, void *dz, float *dweight, float *dbias, const void *dy,
                          const void *y, const void *x, const float *weight,
                          const double *save_mean, const double *save_invstd, int64_t n,
                          int64_t c, int64_t s, int32_t layout, int32_t dtype, int32_t act) {
    bn_enter();
    if (x == NULL || save_mean == NULL || save_invstd == NULL)
        return BN_ERR_NULL_POINTER;
    int32_t st = check_backward(dy, y, n, c, s, layout, dtype, act);
    if (st != BN_OK)
        return st;
    int64_t m = n * s;
    if (m == 0) {
        zero_floats(dweight, c);
        zero_floats(dbias, c);
        return BN_OK;
    }
    void *dz_out = act == BN_ACT_ADD_RELU ? dz : NULL;
    bn_grad_out o = {dweight, dbias, NULL, NULL, weight, save_mean, save_invstd,
                     NULL, NULL, 0.0, (double)m};
    bn_op op = {bn_io_make(x, NULL, dy, act != BN_ACT_NONE ? y : NULL, dx, dz_out, n, c, s, layout,
                        dtype, act),
                BN_REDUCE_GRADS, BN_FIN_GRADS, dx || dz_out ? BN_APPLY_TRAIN_DX : -1,
                NULL, &o, NULL, NULL, NULL};
    bn_reduce(&op);
    return BN_OK;
}

static void eval_dx_consts(const void *p, const bn_coef *k, int64_t c0, int64_t g) {
    const bn_grad_out *o = p;
    bn_sums none = {0.0, 0.0};
    bn_grad_out consts_only = *o;
    consts_only.dweight = consts_only.dbias = NULL;
    for (int64_t j = 0; j < g; j++)
        bn_finalize_eval_grads(&consts_only, c0 + j, none, k, j);
}

BN_ENTRY
int32_t bn_backward_eval(void *dx, void *dz, float *dweight, float *dbias, const void *dy,
                         const void *y, const void *x, const float *weight,
                         const float *running_mean, const float *running_var, int64_t n,
                         int64_t c, int64_t s, int32_t layout, int32_t dtype, int32_t act,
                         double eps) {
    bn_enter();
    if (running_mean == NULL || running_var == NULL || (dweight != NULL && x == NULL))
        return BN_ERR_NULL_POINTER;
    int32_t st = check_backward(dy, y, n, c, s, layout, dtype, act);
    if (st == BN_OK)
        st = bn_check_eps(eps);
    if (st != BN_OK)
        return st;
    if (n * s == 0) {
        zero_floats(dweight, c);
        zero_floats(dbias, c);
        return BN_OK;
    }
    void *dz_out = act == BN_ACT_ADD_RELU ? dz : NULL;
    bn_grad_out o = {dweight, dbias, NULL, NULL, weight, NULL, NULL,
                     running_mean, running_var, eps, 0.0};
    bn_io io = bn_io_make(dweight ? x : NULL, NULL, dy, act != BN_ACT_NONE ? y : NULL, dx, dz_out, n,
                       c, s, layout, dtype, act);
    int kind = dx || dz_out ? BN_APPLY_EVAL_DX : -1;
    if (dweight || dbias) {
        bn_op op = {io, BN_REDUCE_GRADS, BN_FIN_EVAL_GRADS, kind, NULL, &o, NULL, NULL, NULL};
        bn_reduce(&op);
    } else if (kind >= 0) {
        bn_apply(&io, kind, eval_dx_consts, &o);
    }
    return BN_OK;
}

/* ---- float32 shorthands ---- */

int32_t bn_forward_train_f32(float *y, double *save_mean, double *save_invstd,
                             float *running_mean, float *running_var, const float *x,
                             const float *weight, const float *bias, int64_t n, int64_t c,
                             int64_t s, int32_t layout, double eps, double factor) {
    return bn_forward_train(y, save_mean, save_invstd, running_mean, running_var, x, NULL, weight,
                            bias, n, c, s, layout, BN_F32, BN_ACT_NONE, eps, factor, 0);
}

int32_t bn_forward_eval_f32(float *y, const float *x, const float *weight, const float *bias,
                            const float *running_mean, const float *running_var, int64_t n,
                            int64_t c, int64_t s, int32_t layout, double eps) {
    return bn_forward_eval(y, x, NULL, weight, bias, running_mean, running_var, n, c, s, layout,
                           BN_F32, BN_ACT_NONE, eps);
}

int32_t bn_backward_train_f32(float *dx, float *dweight, float *dbias, const float *dy,
                              const float *x, const float *weight, const double *save_mean,
                              const double *save_invstd, int64_t n, int64_t c, int64_t s,
                              int32_t layout) {
    return bn_backward_train(dx, NULL, dweight, dbias, dy, NULL, x, weight, save_mean,
                             save_invstd, n, c, s, layout, BN_F32, BN_ACT_NONE);
}

int32_t bn_backward_eval_f32(float *dx, float *dweight, float *dbias, const float *dy,
                             const float *x, const float *weight, const float *running_mean,
                             const float *running_var, int64_t n, int64_t c, int64_t s,
                             int32_t layout, double eps) {
    return bn_backward_eval(dx, NULL, dweight, dbias, dy, NULL, x, weight, running_mean,
                            running_var, n, c, s, layout, BN_F32, BN_ACT_NONE, eps);
}
