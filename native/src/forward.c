#include <math.h>
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
    int64_t c;
    /* the memory-order statistics pass: per (row block, channel) states and block origins */
    bn_row_state *states;
    double *origins;
    /* rows per block of the row-block statistics (bn_rows_per_block) */
    int64_t rows;
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

/* A row block's origin: its first value, or the channel's shift when that is not finite. */
static double block_origin(float first, const float *channel) {
    return isfinite(first) ? (double)first : channel_shift(channel);
}

/* A row block's moments about its channel's shift, from its state about origin k: len values
 * from flat index start of channel ch. */
static bn_moments row_block_moments(const train_args *a, int64_t ch, int64_t start, int64_t len,
                                    const bn_row_state *st, double k) {
    double shift = channel_shift(a->x + ch * a->s);
    double sd = bn_fold4(st->s), sq = bn_fold4(st->q);
    bn_moments m = {(double)len, sd + (double)len * (k - shift), sq - sd * (sd / (double)len)};
    /* a NaN or infinity in the block: the block kernel gives the channel its NaN */
    if (!isfinite(m.sum) || !isfinite(m.m2))
        m = a->k->moments(a->x + ch * a->s, a->v, start, len, shift);
    return m;
}

/*
 * Rows [r0, r1) of every channel (row block b) in memory order: per channel, the deviations from
 * the block's first value (its origin, as in the block kernels' one-pass moments), then the
 * block's moments about the channel's shift.
 */
// x is (N,C,S); out is (C)
static void train_reduce_rows(const void *p, int64_t b, int64_t r0, int64_t r1,
                              bn_partial *out) {
    const train_args *a = p;
    int64_t c = a->c, s = a->s, len = (r1 - r0) * s;
    bn_row_state *st = a->states + b * c;
    double *k = a->origins + b * c;
    for (int64_t ch = 0; ch < c; ch++) {
        k[ch] = block_origin(a->x[(r0 * c + ch) * s], a->x + ch * s);
        st[ch] = (bn_row_state){{0.0}, {0.0}};
    }
    a->k->moments_rows(st, a->x + r0 * c * s, r1 - r0, s, c, k);
    for (int64_t ch = 0; ch < c; ch++)
        out[ch].mo = row_block_moments(a, ch, r0 * s, len, &st[ch], k[ch]);
}

/*
 * The statistics of channel ch_reduce by row blocks (the blocks and origins of
 * train_reduce_rows), and in the same walk the normalize of channel ch_apply, for
 * bn_run_row_channels. In place too: the walk reads channel ch_reduce and writes ch_apply.
 */
// x, y are (N,C,S); out is (nb)
static void train_reduce_apply_rows(const void *p, int64_t ch_reduce, int64_t ch_apply,
                                    bn_coeffs co, bn_partial *out) {
    const train_args *a = p;
    bn_row_state st[BN_ROW_CHANNELS_MAX_M / BN_ROW_CHANNELS_MIN_S];
    double k[BN_ROW_CHANNELS_MAX_M / BN_ROW_CHANNELS_MIN_S];
    int64_t s = a->s, n = a->m / s, rows = a->rows, nb = (n + rows - 1) / rows;
    const float *x = ch_reduce < 0 ? NULL : a->x + ch_reduce * s;
    for (int64_t b = 0; x && b < nb; b++) {
        k[b] = block_origin(x[b * rows * a->v.stride], x);
        st[b] = (bn_row_state){{0.0}, {0.0}};
    }
    bn_row_consts kp;
    if (ch_apply >= 0)
        kp.norm = bn_norm_make(co);
    a->k->moments_rows_fused(st, ch_apply < 0 ? NULL : a->y + ch_apply * s, x, k,
                             ch_apply < 0 ? NULL : a->x + ch_apply * s, &kp, n, rows, s,
                             a->v.stride);
    for (int64_t b = 0; x && b < nb; b++) {
        int64_t r0 = b * rows, r1 = r0 + rows < n ? r0 + rows : n;
        out[b].mo = row_block_moments(a, ch_reduce, r0 * s, (r1 - r0) * s, &st[b], k[b]);
    }
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
 * The normalize pass in memory order (bn_run_rows): eval has no reduction to keep in cache, and
 * training with short rows has its statistics done by a pass of its own first. Rows shorter than
 * BN_RUN_MIN_S values would make runs too short to pay for their setup; they keep the
 * channel-group schedule. Training rows of BN_FUSED_MIN_S values and more take the fused
 * per-channel pass; in place, so do rows of BN_TWO_PASS_MAX_S and more.
 */
#define BN_FUSED_MIN_S 8192

typedef struct {
    const bn_kernels *k;
    float *y;
    const float *x;
    int64_t s;
    int store; /* a BN_ROW_* mode */
    /* channel ch's constants */
    bn_coeffs (*coeffs)(const void *args, int64_t ch);
    const void *args;
} norm_pass;

static bn_row_consts norm_consts_of(const void *p, int64_t ch) {
    const norm_pass *a = p;
    bn_row_consts k;
    k.norm = bn_norm_make(a->coeffs(a->args, ch));
    return k;
}

// x, y are (N,C,S)
static void norm_run(const void *p, int64_t off, int64_t col, int64_t len,
                     const bn_row_consts *k) {
    const norm_pass *a = p;
    a->k->normalize_row(a->y + off, a->x + off, a->s, col, len, k, a->store);
}

static void normalize_memory_order(const bn_kernels *k, float *y, const float *x, int64_t n,
                                   int64_t c, int64_t s,
                                   bn_coeffs (*coeffs)(const void *, int64_t), const void *args,
                                   int64_t work) {
    int store = bn_row_store(n, c, s);
    norm_pass pass = {k, y, x, s, store, coeffs, args};
    bn_row_op op = {&pass, norm_consts_of, norm_run, store != BN_ROW_CACHED};
    bn_run_rows(&op, n, c, s, work);
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
                    x, weight, bias, s, m, bn_make_rows(n, c, s), eps, factor, c, NULL, NULL,
                    bn_rows_per_block(n, s)};
    /*
     * Long rows in outputs too big to stay in cache: by channel, each channel read from memory
     * once, four of its rows side by side, while the channel before it is normalized from the
     * core's cache (bn_run_row_channels). Against the two passes below, 2 threads: 0.74-0.86 of
     * the time on (32,64,56,56) with x in memory, 0.88-0.98 with x in the L3; 0.81-0.99 on
     * channels past the L2 ((64,64,56,56), (128,64,56,56), (64,64,64,64)). Outputs that stay
     * in cache measured 1.06-1.4x slower this way, rows of 196-784 values 1.04-2.2x
     * (docs/DESIGN.md).
     */
    if (k->moments_rows_fused && s >= BN_ROW_CHANNELS_MIN_S && s < BN_FUSED_MIN_S &&
        m <= BN_ROW_CHANNELS_MAX_M && a.v.stream) {
        bn_op fused = {.args = &a, .merge = bn_merge_moments, .finalize = train_finalize,
                       .reduce_apply_rows = train_reduce_apply_rows};
        bn_run_row_channels(&fused, n, c, a.rows, m * c);
        return BN_OK;
    }
    /*
     * Two passes in memory order: the statistics over blocks of whole rows
     * (bn_run_row_blocks), then the normalize pass from the saved statistics. Measured faster
     * than every per-channel schedule for rows below BN_FUSED_MIN_S values: 1.25-1.5x against
     * channel groups on short rows (their two passes walk memory in short strided pieces), and
     * 1.0-1.35x against the fused per-channel pass on (32,64,56,56) and (128,16,32,32), 2
     * threads (noisy); on rows of 12544 values the fused pass was 1.1x faster. When y has no
     * room for the statistics pass's state (in place), short rows take their statistics by
     * channel groups, and long rows the fused pass, the best of what remains.
     */
    if (save_mean && save_invstd && s >= BN_RUN_MIN_S && s < BN_FUSED_MIN_S) {
        int64_t rows = a.rows, nb = (n + rows - 1) / rows;
        /* the states of a block should stay in L2: at most a window of channels */
        bn_row_state *states =
            c > BN_WINDOW ? NULL
                          : bn_row_scratch(y, x, n * c * s, nb * c,
                                           (int64_t)(sizeof(bn_partial) + sizeof(double)));
        if (states) {
            bn_partial *part = (bn_partial *)(states + nb * c);
            a.states = states;
            a.origins = (double *)(part + nb * c);
            bn_op stats = {.args = &a, .merge = bn_merge_moments, .finalize = train_finalize,
                           .reduce_rows = train_reduce_rows};
            bn_run_row_blocks(&stats, n, c, rows, part, m * c);
        } else if (s < BN_TWO_PASS_MAX_S) {
            bn_op stats = {.args = &a, .reduce = train_reduce, .merge = bn_merge_moments,
                           .finalize = train_finalize, .reduce_group = train_reduce_group};
            bn_run(&stats, c, s, m, m * c);
        }
        if (states || s < BN_TWO_PASS_MAX_S) {
            normalize_memory_order(k, y, x, n, c, s, saved_coeffs, &a, m * c / 2);
            return BN_OK;
        }
    }
    bn_op op = {.args = &a, .reduce = train_reduce, .merge = bn_merge_moments,
                .finalize = train_finalize, .apply = train_apply,
                .reduce_group = train_reduce_group, .apply_group = train_apply_group,
                .reduce_apply = train_reduce_apply};
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
        normalize_memory_order(k, y, x, n, c, s, eval_coeffs, &a, work);
        return BN_OK;
    }
    bn_op op = {.args = &a, .finalize = eval_finalize, .apply = eval_apply,
                .apply_group = eval_apply_group};
    bn_run(&op, c, s, m, work);
    return BN_OK;
}
