#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stddef.h>

#include "batchnorm.h"
#include "bn_internal.h"

typedef struct {
    const bn_kernels *k;
    float *y;
    double *save_mean, *save_invstd;
    float *running_mean, *running_var;
    const float *x, *weight, *bias;
    int64_t s, m;
    bn_rows v;
    double eps, factor;
} train_args;

/* The shift of a channel's moments: its first value, or 0 when that is not finite. */
static double channel_shift(const float *x) {
    return isfinite(x[0]) ? (double)x[0] : 0.0;
}

static bn_partial train_reduce(const void *p, int64_t ch, int64_t start, int64_t len) {
    const train_args *a = p;
    const float *x = a->x + ch * a->s;
    bn_partial r;
    r.mo = a->k->moments(x, a->v, start, len, channel_shift(x));
    return r;
}

static bn_partial train_reduce_apply(const void *p, int64_t ch_reduce, int64_t ch_apply,
                                     int64_t start, int64_t len, bn_coeffs co) {
    const train_args *a = p;
    const float *xn = a->x + ch_reduce * a->s;
    bn_partial r;
    r.mo = a->k->normalize_moments(a->y + ch_apply * a->s, a->x + ch_apply * a->s, a->v, start,
                                   len, co.mean, co.a, co.b, xn, channel_shift(xn));
    return r;
}

static void train_reduce_group(const void *p, int64_t ch, int64_t g, int64_t start, int64_t len,
                               bn_partial *out) {
    const train_args *a = p;
    const float *x = a->x + ch * a->s;
    double shift[BN_GROUP_MAX] = {0.0};
    bn_moments mo[BN_GROUP_MAX];
    for (int64_t j = 0; j < g; j++)
        shift[j] = channel_shift(x + j * a->s);
    a->k->moments_group(x, a->v, g, start, len, shift, mo);
    for (int64_t j = 0; j < g; j++)
        out[j].mo = mo[j];
}

static bn_coeffs train_coeffs(const train_args *a, int64_t ch, double mean, double invstd) {
    bn_coeffs co = {mean, invstd * (a->weight ? (double)a->weight[ch] : 1.0),
                    a->bias ? (double)a->bias[ch] : 0.0, 0.0};
    return co;
}

// statistics and running update of channel ch
static bn_coeffs train_finalize(const void *p, int64_t ch, bn_partial total) {
    const train_args *a = p;
    double shift = channel_shift(a->x + ch * a->s);
    double mean = shift + total.mo.sum / (double)a->m;
    double var = total.mo.m2 / (double)a->m;
    /* PyTorch's InvStd: a constant channel with eps == 0 gets invstd 0 (y = bias, zero dx and
     * dweight) rather than 1/0 and NaN outputs. Eval mode has no such rule. */
    double invstd = var == 0.0 && a->eps == 0.0 ? 0.0 : 1.0 / sqrt(var + a->eps);
    if (a->save_mean)
        a->save_mean[ch] = mean;
    if (a->save_invstd)
        a->save_invstd[ch] = invstd;
    if (a->running_mean) {
        double f = a->factor;
        double unbiased = total.mo.m2 / (double)(a->m - 1);
        a->running_mean[ch] = (float)((1.0 - f) * (double)a->running_mean[ch] + f * mean);
        a->running_var[ch] = (float)((1.0 - f) * (double)a->running_var[ch] + f * unbiased);
    }
    return train_coeffs(a, ch, mean, invstd);
}

/* Channel ch's constants from the statistics train_finalize saved. */
static bn_coeffs saved_coeffs(const void *p, int64_t ch) {
    const train_args *a = p;
    return train_coeffs(a, ch, a->save_mean[ch], a->save_invstd[ch]);
}

// x, y are (N,C,S)
static void normalize_apply(const bn_kernels *k, float *y, const float *x, int64_t s, bn_rows v,
                            int64_t ch, int64_t start, int64_t len, bn_coeffs co) {
    k->normalize(y + ch * s, x + ch * s, v, start, len, co.mean, co.a, co.b);
}

static void train_apply(const void *p, int64_t ch, int64_t start, int64_t len, bn_coeffs co) {
    const train_args *a = p;
    normalize_apply(a->k, a->y, a->x, a->s, a->v, ch, start, len, co);
}

static void train_apply_group(const void *p, int64_t ch, int64_t g, int64_t start, int64_t len,
                              const bn_coeffs *co) {
    const train_args *a = p;
    a->k->normalize_group(a->y + ch * a->s, a->x + ch * a->s, a->v, g, start, len, co);
}

/*
 * The normalize pass in memory order, for when nothing is gained by walking a channel's rows
 * (C*S values apart) and much is lost: the walk jumps, and lines at row ends are shared between
 * channels. Eval has no reduction at all; training with short rows has its statistics done by a
 * pass of its own first. The tensor is cut into windows of BN_WINDOW consecutive channels (all of
 * C, in the common case), each window seen row by row, and every thread takes one contiguous span
 * of that order: with C <= BN_WINDOW, one contiguous span of memory. Rows shorter than
 * BN_RUN_MIN_S values would make runs too short to pay for their setup; they keep the
 * channel-group schedule.
 */
#define BN_WINDOW 1024
#define BN_RUN_MIN_S 16
/* Training rows shorter than this take the two-pass schedule (bn_forward_train_f32). */
#define BN_TWO_PASS_MAX_S 1024

typedef struct {
    const bn_kernels *k;
    float *y;
    const float *x;
    int64_t n, c, s;
    int stream;
    /* channel ch's constants */
    bn_coeffs (*coeffs)(const void *args, int64_t ch);
    const void *args;
} norm_pass;

// x, y are (N,C,S); [f0, f1) are positions in window order
static void norm_span(const norm_pass *p, int64_t f0, int64_t f1) {
    if (f0 >= f1)
        return;
    bn_norm k[BN_WINDOW]; /* 48 KiB of stack */
    int64_t n = p->n, c = p->c, s = p->s, window_values = (int64_t)BN_WINDOW * n * s;
    int64_t win = f0 / window_values, f = f0 - win * window_values, g = 0;
    int64_t row = 0, j = 0, col = 0;
    for (int64_t left = f1 - f0; left > 0;) {
        if (g == 0) {
            g = c - win * BN_WINDOW < BN_WINDOW ? c - win * BN_WINDOW : BN_WINDOW;
            for (int64_t i = 0; i < g; i++)
                k[i] = bn_norm_make(p->coeffs(p->args, win * BN_WINDOW + i));
            row = f / (g * s);
            j = f % (g * s) / s;
            col = f % s;
        }
        int64_t len = g * s - (j * s + col) < left ? g * s - (j * s + col) : left;
        int64_t off = (row * c + win * BN_WINDOW + j) * s + col;
        p->k->normalize_row(p->y + off, p->x + off, s, col, len, &k[j], p->stream);
        left -= len;
        j = col = 0;
        if (++row == n) {
            win++;
            f = g = 0;
        }
    }
    /* streaming stores are weakly ordered: make them visible before the call returns */
    if (p->stream)
        atomic_thread_fence(memory_order_seq_cst);
}

/* Thread t's share of `total` positions out of nt, starting on a 64-byte boundary of values. */
static int64_t span_start(int64_t total, int t, int nt) {
    if (t == nt)
        return total;
    int64_t q = total / nt, r = total % nt;
    return (q * t + (t < r ? t : r)) & ~(int64_t)15;
}

static void norm_memory_order(const norm_pass *p, int64_t work) {
    int64_t total = p->n * p->c * p->s;
    int threads = bn_team_begin(work);
    if (threads <= 1) {
        norm_span(p, 0, total);
    } else {
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            norm_span(p, span_start(total, t, nt), span_start(total, t + 1, nt));
        }
    }
    bn_team_end(threads);
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
    const bn_kernels *k = bn_kernels_select();
    if (k->small_forward_train && bn_small(m, s, m * c)) {
        k->small_forward_train(y, save_mean, save_invstd, running_mean, running_var, x, weight,
                               bias, n, c, s, eps, factor);
        return BN_OK;
    }
    train_args a = {k, y, save_mean, save_invstd, running_mean, running_var,
                    x, weight, bias, s, m, bn_make_rows(n, c, s), eps, factor};
    /*
     * Short rows: the statistics by channel groups, then the normalize pass in memory order,
     * from the saved statistics (measured: faster than keeping each group in cache between its
     * two passes, which walks memory in short strided pieces twice). Long rows: channel by
     * channel, the next channel's statistics fused with this one's normalize pass.
     */
    if (save_mean && save_invstd && s >= BN_RUN_MIN_S && s < BN_TWO_PASS_MAX_S) {
        bn_op stats = {&a, train_reduce, bn_merge_moments, train_finalize, NULL,
                       train_reduce_group, NULL, NULL};
        bn_run(&stats, c, s, m, m * c);
        norm_pass pass = {k, y, x, n, c, s, a.v.stream, saved_coeffs, &a};
        norm_memory_order(&pass, m * c / 2);
        return BN_OK;
    }
    bn_op op = {&a, train_reduce, bn_merge_moments, train_finalize, train_apply,
                train_reduce_group, train_apply_group, train_reduce_apply};
    bn_run(&op, c, s, m, m * c);
    return BN_OK;
}

typedef struct {
    const bn_kernels *k;
    float *y;
    const float *x, *weight, *bias, *running_mean, *running_var;
    int64_t s;
    bn_rows v;
    double eps;
} eval_args;

static bn_coeffs eval_finalize(const void *p, int64_t ch, bn_partial total) {
    const eval_args *a = p;
    (void)total;
    double invstd = 1.0 / sqrt((double)a->running_var[ch] + a->eps);
    bn_coeffs co = {(double)a->running_mean[ch],
                    invstd * (a->weight ? (double)a->weight[ch] : 1.0),
                    a->bias ? (double)a->bias[ch] : 0.0, 0.0};
    return co;
}

static bn_coeffs eval_coeffs(const void *p, int64_t ch) {
    bn_partial none = {{0.0, 0.0, 0.0}};
    return eval_finalize(p, ch, none);
}

static void eval_apply(const void *p, int64_t ch, int64_t start, int64_t len, bn_coeffs co) {
    const eval_args *a = p;
    normalize_apply(a->k, a->y, a->x, a->s, a->v, ch, start, len, co);
}

static void eval_apply_group(const void *p, int64_t ch, int64_t g, int64_t start, int64_t len,
                             const bn_coeffs *co) {
    const eval_args *a = p;
    a->k->normalize_group(a->y + ch * a->s, a->x + ch * a->s, a->v, g, start, len, co);
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
    /* a lone elementwise pass needs twice the elements of a reduction to pay for a team */
    int64_t work = m * c / 2;
    const bn_kernels *k = bn_kernels_select();
    if (k->small_forward_eval && bn_small(m, s, work)) {
        k->small_forward_eval(y, x, weight, bias, running_mean, running_var, n, c, s, eps);
        return BN_OK;
    }
    eval_args a = {k, y, x, weight, bias, running_mean, running_var, s, bn_make_rows(n, c, s),
                   eps};
    if (s >= BN_RUN_MIN_S) {
        norm_pass pass = {k, y, x, n, c, s, a.v.stream, eval_coeffs, &a};
        norm_memory_order(&pass, work);
        return BN_OK;
    }
    bn_op op = {&a, NULL, NULL, eval_finalize, eval_apply, NULL, eval_apply_group, NULL};
    bn_run(&op, c, s, m, work);
    return BN_OK;
}
