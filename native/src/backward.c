#include <math.h>
#include <stddef.h>

#include "batchnorm.h"
#include "bn_internal.h"

/* The training backward's two-pass schedule takes at most this many channels: their dx
 * constants live on the stack. */
#define BN_TWO_PASS_MAX_C 1024

typedef struct {
    const bn_kernels *k;
    float *dx, *dweight, *dbias;
    const float *dy, *x, *weight;
    const double *save_mean, *save_invstd;
    int64_t s, m;
    bn_rows v;
    bn_coeffs *dx_coeffs; /* the two-pass schedule keeps each channel's dx constants here */
    int64_t c;
    bn_row_state *states; /* the memory-order sums pass: per (row block, channel) */
} train_args;

static bn_partial train_reduce(const void *p, int64_t ch, int64_t start, int64_t len) {
    const train_args *a = p;
    int64_t off = ch * a->s;
    bn_partial r;
    r.g = a->k->grad_sums(a->dy + off, a->x + off, a->v, start, len, a->save_mean[ch],
                          a->save_invstd[ch]);
    return r;
}

static void train_reduce_group(const void *p, int64_t ch, int64_t g, int64_t start, int64_t len,
                               bn_partial *out) {
    const train_args *a = p;
    int64_t off = ch * a->s;
    bn_grad_sums sums[BN_GROUP_MAX];
    a->k->grad_sums_group(a->dy + off, a->x + off, a->v, g, start, len, a->save_mean + ch,
                          a->save_invstd + ch, sums);
    for (int64_t j = 0; j < g; j++)
        out[j].g = sums[j];
}

/* Rows [r0, r1) of every channel (row block b) in memory order. */
// dy, x are (N,C,S); out is (C)
static void train_reduce_rows(const void *p, int64_t b, int64_t r0, int64_t r1,
                              bn_partial *out) {
    const train_args *a = p;
    int64_t c = a->c, s = a->s;
    bn_row_state *st = a->states + b * c;
    for (int64_t ch = 0; ch < c; ch++)
        st[ch] = (bn_row_state){{0.0}, {0.0}};
    for (int64_t r = r0; r < r1; r++)
        a->k->grad_sums_rows(st, a->dy + r * c * s, a->x + r * c * s, s, c, a->save_mean);
    for (int64_t ch = 0; ch < c; ch++) {
        out[ch].g.dy = bn_fold4(st[ch].s);
        out[ch].g.dyx = bn_fold4(st[ch].q) * a->save_invstd[ch];
    }
}

static bn_coeffs train_finalize(const void *p, int64_t ch, bn_partial total) {
    const train_args *a = p;
    double invstd = a->save_invstd[ch], mm = (double)a->m;
    if (a->dbias)
        a->dbias[ch] = (float)total.g.dy;
    if (a->dweight)
        a->dweight[ch] = (float)total.g.dyx;
    bn_coeffs co = {a->save_mean[ch], (a->weight ? (double)a->weight[ch] : 1.0) * invstd,
                    total.g.dy / mm, total.g.dyx * invstd / mm};
    return co;
}

static bn_coeffs train_finalize_keep(const void *p, int64_t ch, bn_partial total) {
    const train_args *a = p;
    a->dx_coeffs[ch] = train_finalize(p, ch, total);
    return a->dx_coeffs[ch];
}

static bn_row_consts dx_consts_of(const void *p, int64_t ch) {
    const train_args *a = p;
    bn_row_consts k;
    k.dx = bn_dx_make(a->dx_coeffs[ch]);
    return k;
}

// dx, dy, x are (N,C,S)
static void dx_run(const void *p, int64_t off, int64_t col, int64_t len, const bn_row_consts *k) {
    const train_args *a = p;
    a->k->train_dx_row(a->dx + off, a->dy + off, a->x + off, a->s, col, len, k, a->v.stream);
}

static void train_apply(const void *p, int64_t ch, int64_t start, int64_t len, bn_coeffs co) {
    const train_args *a = p;
    int64_t off = ch * a->s;
    a->k->train_dx(a->dx + off, a->dy + off, a->x + off, a->v, start, len, co.mean, co.a, co.b,
                   co.k);
}

static void train_apply_group(const void *p, int64_t ch, int64_t g, int64_t start, int64_t len,
                              const bn_coeffs *co) {
    const train_args *a = p;
    int64_t off = ch * a->s;
    a->k->train_dx_group(a->dx + off, a->dy + off, a->x + off, a->v, g, start, len, co);
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
    const bn_kernels *k = bn_kernels_select();
    if (k->small_backward_train && bn_small(m, s, m * c)) {
        k->small_backward_train(dx, dweight, dbias, dy, x, weight, save_mean, save_invstd, n, c, s);
        return BN_OK;
    }
    train_args a = {k, dx, dweight, dbias, dy, x, weight, save_mean, save_invstd, s, m,
                    bn_make_rows(n, c, s), NULL, c, NULL};
    /*
     * Two passes in memory order: the sums over blocks of whole rows (bn_run_row_blocks), then
     * dx. Measured faster than every per-channel schedule, for short rows (1.25-1.8x against
     * channel groups, whose two passes walk memory in short strided pieces) and for long rows
     * too (1.0-1.55x against sums-then-dx per channel on (32,64,56,56), (8,32,112,112) and
     * (128,16,32,32), 2 threads, noisy). When dx has no room for the sums pass's state (in place),
     * short rows take their sums by channel groups, long rows the per-channel schedule.
     */
    if (dx && s >= BN_RUN_MIN_S && c <= BN_TWO_PASS_MAX_C) {
        bn_coeffs coeffs[BN_TWO_PASS_MAX_C]; /* 32 KiB of stack */
        a.dx_coeffs = coeffs;
        int64_t per = bn_rows_per_block(n, s), nb = (n + per - 1) / per;
        a.states = bn_row_scratch(dx, dy, n * c * s, nb * c, (int64_t)sizeof(bn_partial));
        if (a.states) {
            bn_op sums = {.args = &a, .merge = bn_merge_sums, .finalize = train_finalize_keep,
                          .reduce_rows = train_reduce_rows};
            bn_run_row_blocks(&sums, n, c, per, (bn_partial *)(a.states + nb * c), m * c);
        } else if (s < BN_TWO_PASS_MAX_S) {
            bn_op sums = {.args = &a, .reduce = train_reduce, .merge = bn_merge_sums,
                          .finalize = train_finalize_keep, .reduce_group = train_reduce_group};
            bn_run(&sums, c, s, m, m * c);
        }
        if (a.states || s < BN_TWO_PASS_MAX_S) {
            bn_row_op rows = {&a, dx_consts_of, dx_run, a.v.stream};
            bn_run_rows(&rows, n, c, s, m * c);
            return BN_OK;
        }
    }
    bn_op op = {.args = &a, .reduce = train_reduce, .merge = bn_merge_sums,
                .finalize = train_finalize, .apply = dx ? train_apply : NULL,
                .reduce_group = train_reduce_group, .apply_group = dx ? train_apply_group : NULL};
    bn_run(&op, c, s, m, m * c);
    return BN_OK;
}

typedef struct {
    const bn_kernels *k;
    float *dx, *dweight, *dbias;
    const float *dy, *x, *weight, *running_mean, *running_var;
    int64_t s;
    bn_rows v;
    double eps;
} eval_args;

static double eval_invstd(const eval_args *a, int64_t ch) {
    return 1.0 / sqrt((double)a->running_var[ch] + a->eps);
}

static double eval_scale(const eval_args *a, int64_t ch) {
    return (a->weight ? (double)a->weight[ch] : 1.0) * eval_invstd(a, ch);
}

/* One pass: dx = dy*a and the sums the parameter gradients need. */
static bn_partial eval_reduce(const void *p, int64_t ch, int64_t start, int64_t len) {
    const eval_args *a = p;
    int64_t off = ch * a->s;
    bn_partial r;
    r.g = a->k->eval_backward(a->dx ? a->dx + off : NULL, a->dy + off,
                              a->dweight ? a->x + off : NULL, a->v, start, len,
                              (double)a->running_mean[ch], eval_invstd(a, ch), eval_scale(a, ch));
    return r;
}

static bn_coeffs eval_finalize(const void *p, int64_t ch, bn_partial total) {
    const eval_args *a = p;
    if (a->dbias)
        a->dbias[ch] = (float)total.g.dy;
    if (a->dweight)
        a->dweight[ch] = (float)total.g.dyx;
    bn_coeffs co = {0.0, eval_scale(a, ch), 0.0, 0.0};
    return co;
}

/* dx alone: no sums. */
static void eval_apply(const void *p, int64_t ch, int64_t start, int64_t len, bn_coeffs co) {
    const eval_args *a = p;
    int64_t off = ch * a->s;
    a->k->eval_backward(a->dx + off, a->dy + off, NULL, a->v, start, len, 0.0, 0.0, co.a);
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
    eval_args a = {bn_kernels_select(), dx, dweight, dbias, dy, x, weight, running_mean,
                   running_var, s, bn_make_rows(n, c, s), eps};
    int sums = dweight != NULL || dbias != NULL;
    bn_op op = {.args = &a, .reduce = sums ? eval_reduce : NULL, .merge = bn_merge_sums,
                .finalize = eval_finalize, .apply = sums ? NULL : eval_apply};
    bn_run(&op, c, s, m, m * c);
    return BN_OK;
}
