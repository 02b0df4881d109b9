/*
 * Internals of libbatchnorm. Not installed, not part of the API.
 *
 * The library is four layers, each in its own files:
 *   api.c, phases_api.c  the public entry points: check the arguments (validate.c), describe the
 *                        problem (bn_problem), ask for a plan, run it;
 *   plan.c               the one place that chooses a schedule (bn_plan) for a problem;
 *   schedule.c           runs a plan: the phases (reduce, merge, finalize, apply) on a team of
 *                        threads or on the calling thread;
 *   finalize.c           per-channel math in double: statistics, running update, constants;
 *   kernels/             the inner loops, written once (kernels.inc) and built per ISA.
 *
 * Determinism: a channel's M values (in its logical order: flat index n*S + s) are cut into
 * `tiles` ranges, a function of the shape alone (bn_tiles). One kernel call reduces one tile of a
 * channel, in an operation order that depends on the tile alone; tile results are merged in tile
 * order. Whichever thread reduces a tile, and whatever else it reduces in the same call, the same
 * floating-point operations happen in the same order, so results are the same bits for any thread
 * count and any schedule.
 */
#ifndef BN_H
#define BN_H

#include <stddef.h>
#include <stdint.h>

#include "batchnorm.h"

#if defined(__GNUC__)
#define BN_HIDDEN __attribute__((visibility("hidden")))
#else
#define BN_HIDDEN
#endif

/* ---- the problem ---- */

/* Reductions (the kernels' reduce mode). */
enum {
    BN_REDUCE_MOMENTS = 0, /* s += d, q += d*d with d = x - ref (ref: the channel's shift) */
    BN_REDUCE_GRADS = 1,   /* s += g, q += g*(x - ref) with g = dy, masked by y > 0 for the
                              fused epilogues (ref: the channel's mean); x == NULL: q stays 0 */
    BN_REDUCE_GRADS_KEEP = 2, /* BN_REDUCE_GRADS masked by y > 0, g also stored into io.out */
};

/* Elementwise passes (the kernels' apply kind). */
enum {
    BN_APPLY_NORMALIZE = 0, /* y = act((x - mean)*a + b [+ z]) */
    BN_APPLY_TRAIN_DX = 1,  /* dx = ((g - gm) - (x - mean)*k)*a, dz = g */
    BN_APPLY_EVAL_DX = 2,   /* dx = g*a, dz = g */
};

/*
 * The entry points that compute: each is built twice, for AVX and for any x86-64, and the loader
 * picks the AVX build where the CPU has AVX. A caller that leaves the upper halves of the vector
 * registers in use (a JIT's AVX-512 code, for one) makes every SSE instruction wait for a state
 * transition until something clears them: a call on 128 values from Java with heap segments took
 * 246 ns instead of 116. The AVX build encodes its own instructions as VEX, which do not wait,
 * and clears the halves first (bn_enter), so the SSE code it calls does not wait either.
 */
#if defined(__clang__)
/* clang (14) names the clones' dispatcher apart from the function, so other translation units
 * cannot link to it: there each entry point is built once, and bn_enter alone clears the
 * halves, after whatever SSE code the compiler places before it. */
#define BN_ENTRY
#else
#define BN_ENTRY __attribute__((target_clones("avx", "default")))
#endif

/* First statement of a BN_ENTRY function. */
static inline void bn_enter(void) {
    if (__builtin_cpu_supports("avx"))
        __asm__ volatile("vzeroupper" ::: "memory");
}

/*
 * The tensors of one call and how to read them. A tensor is (N, C, S) in `layout`; element
 * (n, ch, i) of a channels-first tensor is at (n*c + ch)*s + i, of a channels-last one at
 * (n*s + i)*c + ch. x, z, dy, y are inputs (NULL when the op has none); out and out2 outputs (y or
 * dx; dz). Kernels index the per-channel arrays of bn_coef and ref from the first channel they
 * are given.
 */
typedef struct bn_io {
    const void *x, *z, *dy, *y;
    void *out, *out2;
    int64_t n, c, s;
    int32_t layout, dtype, act;
} bn_io;

/* Per-channel constants of an elementwise pass (see the BN_APPLY_* formulas). */
typedef struct bn_coef {
    double *mean, *a, *b, *k;
    const struct bn_coef_f *f; /* the same constants for float lanes (apply.inc), or NULL */
} bn_coef;

/* A channel's constants for an elementwise pass in float lanes (apply.inc, coef_float). */
typedef struct bn_coef_f {
    float mean, a, b, k;
} bn_coef_f;

/* The constants of k from channel j on. */
static inline bn_coef bn_coef_from(const bn_coef *k, int64_t j) {
    bn_coef r = {k->mean + j, k->a + j, k->b + j, k->k + j, k->f ? k->f + j : NULL};
    return r;
}

/* A reduction's per-channel sums over one tile or one merged set of tiles. */
typedef struct bn_sums {
    double s, q;
} bn_sums;

/* Moments of a set of values about a channel's shift: count, mean of (value - shift), and m2, the
 * sum of squared deviations from their own mean. */
typedef struct bn_moments {
    double n, mean, m2;
} bn_moments;

/* ---- kernels (kernels/) ---- */

/* Channels per call of reduce_ncs / channels per call of reduce_nsc: their accumulators live on
 * the kernel's stack. */
#define BN_NCS_GROUP_MAX 32
#define BN_NSC_PIECE_MAX 256
/* Channels per call of apply_nsc: whole rows of up to this many channels are walked in memory
 * order, each vector's constants prepared once for the call (on the kernel's stack). */
#define BN_NSC_ROW_MAX 1024
/* Channels-last channels a thread takes at a time in the by-channels schedule (a vector's worth
 * on every ISA): a reduction of fewer channels always sees whole rows. */
#define BN_NSC_THREAD_CHANNELS 16

typedef struct bn_kernels {
    const char *name;
    /* Channels-first: channels [c0, c0+g) over the tile [f0, f1) of each channel's flat index,
     * walked in memory order (row by row, the g runs of a row one after the other); out[j] gets
     * channel c0+j's sums. g <= BN_NCS_GROUP_MAX. far: the inputs come from beyond the
     * last-level cache (the plan's stream). */
    void (*reduce_ncs)(bn_sums *out, const bn_io *io, const double *ref, int mode, int64_t c0,
                       int64_t g, int64_t f0, int64_t f1, int far);
    /* Channels-last: channels [c0, c0+g) over rows [r0, r1) (row = n*S + i). g <=
     * BN_NSC_PIECE_MAX. */
    void (*reduce_nsc)(bn_sums *out, const bn_io *io, const double *ref, int mode, int64_t c0,
                       int64_t g, int64_t r0, int64_t r1);
    /* Channels-first: rows [r0, r1) of channels [c0, c0+g), columns [i0, i1) of each row.
     * stream: store past the caches where the runs allow it (fenced before returning). */
    void (*apply_ncs)(const bn_io *io, const bn_coef *k, int kind, int64_t c0, int64_t g,
                      int64_t r0, int64_t r1, int64_t i0, int64_t i1, int stream);
    /* Channels-last: rows [r0, r1), channels [c0, c0+g). g <= BN_NSC_ROW_MAX. */
    void (*apply_nsc)(const bn_io *io, const bn_coef *k, int kind, int64_t c0, int64_t g,
                      int64_t r0, int64_t r1, int stream);
    /* Channels-first, rows [r0, r1) (a tile of whole rows): reduce_ncs of channels [cr, cr+g)
     * into out, and in the same loop apply_ncs of channels [ca, ca+g) over the same rows,
     * constants k[0..g). The training forward (BN_REDUCE_MOMENTS with BN_APPLY_NORMALIZE)
     * only. */
    void (*fused_ncs)(bn_sums *out, const bn_io *io, const double *ref, int64_t cr,
                      const bn_coef *k, int64_t ca, int64_t g, int64_t r0, int64_t r1,
                      int stream);
} bn_kernels;

BN_HIDDEN extern const bn_kernels bn_kernels_generic;
BN_HIDDEN extern const bn_kernels bn_kernels_avx2;
BN_HIDDEN extern const bn_kernels bn_kernels_avx512;
BN_HIDDEN extern const bn_kernels bn_kernels_avx512bf16;

/* The kernels for this CPU (dispatch.c): AVX-512 (F, BW, DQ, VL) with or without AVX-512 BF16,
 * else AVX2 (with FMA and F16C), else portable. BN_ISA=avx512, avx2 or generic in the
 * environment caps the choice. */
BN_HIDDEN const bn_kernels *bn_kernels_select(void);

/* ---- validation (validate.c) ---- */

BN_HIDDEN int32_t bn_check_shape(int64_t n, int64_t c, int64_t s, int32_t layout);
BN_HIDDEN int32_t bn_check_type(int32_t dtype, int32_t act, const void *z);
BN_HIDDEN int32_t bn_check_eps(double eps);
BN_HIDDEN int32_t bn_check_factor(double factor);
BN_HIDDEN int32_t bn_check_flags(int32_t flags);

/* ---- threads (threads.c) ---- */

/* Below this much work a call runs on the calling thread alone and never enters an OpenMP
 * region: starting a team costs more than the whole kernel. */
#define BN_PARALLEL_MIN_ELEMENTS 65536

/* The team size for a call of `work` values (1 below the threshold, with one thread, or when
 * another call holds the process-wide team slot; then the caller holds it). Every bn_team_begin
 * is paired with bn_team_end(team size). */
BN_HIDDEN int bn_team_begin(int64_t work);
BN_HIDDEN void bn_team_end(int threads);

/* ---- per-channel math (finalize.c) ---- */

/* Elements of a type, in bytes. */
static inline int64_t bn_elem_bytes(int32_t dtype) {
    return dtype == BN_F32 ? 4 : 2;
}

/* One value of a tensor, as a double (for shifts). */
BN_HIDDEN double bn_elem_value(const void *p, int64_t i, int32_t dtype);

/* A tile's moments from its sums about the shift, and Chan's merge of two sets of moments. */
static inline bn_moments bn_moments_of(bn_sums t, double count) {
    bn_moments m = {count, 0.0, 0.0};
    if (count == 0.0)
        return m;
    m.mean = t.s / count;
    m.m2 = t.q - t.s * m.mean;
    if (m.m2 < 0.0) /* rounding, when every value is the same; NaN stays */
        m.m2 = 0.0;
    return m;
}

static inline bn_moments bn_moments_merge(bn_moments a, bn_moments b) {
    if (a.n == 0.0)
        return b;
    if (b.n == 0.0)
        return a;
    double n = a.n + b.n, delta = b.mean - a.mean;
    bn_moments r = {n, a.mean + delta * (b.n / n), a.m2 + b.m2 + delta * delta * (a.n * b.n / n)};
    return r;
}

/* What a training finalize writes and reads, per channel. */
typedef struct bn_train_out {
    double *save_mean, *save_invstd;
    float *running_mean, *running_var;
    const float *weight, *bias;
    double eps, factor;
    int32_t flags;
} bn_train_out;

/* Channels [c0, c0+g)'s statistics from moments over count values each, with means (absolute)
 * mean[0..g) and m2[0..g): saves them, moves the running statistics, and returns the normalize
 * constants in k[0..g) (when k != NULL). */
BN_HIDDEN void bn_finalize_train(const bn_train_out *o, int64_t c0, int64_t g, const double *mean,
                                 const double *m2, double count, const bn_coef *k);
/* Normalize constants of eval mode for channels [c0, c0+g) into k[0..g). */
BN_HIDDEN void bn_consts_eval(const bn_coef *k, const float *running_mean,
                              const float *running_var, const float *weight, const float *bias,
                              double eps, int64_t c0, int64_t g);
/* Normalize constants from saved statistics for channels [c0, c0+g). */
BN_HIDDEN void bn_consts_saved(const bn_coef *k, const double *mean, const double *invstd,
                               const float *weight, const float *bias, int64_t c0, int64_t g);

/* What a backward finalize writes and reads, per channel. */
typedef struct bn_grad_out {
    float *dweight, *dbias;
    double *sum_dy, *sum_dy_xhat;
    const float *weight;
    const double *mean, *invstd;  /* training: saved statistics */
    const float *running_mean, *running_var; /* eval */
    double eps, count;            /* count: the batch's values per channel (training dx) */
} bn_grad_out;

/* Training backward of channels [c0, c0+g) from their sums t[0..g) (s = sum g, q = sum
 * g*(x - mean)): writes the gradient outputs, returns the dx constants in k[0..g) (when
 * k != NULL). */
BN_HIDDEN void bn_finalize_grads(const bn_grad_out *o, int64_t c0, int64_t g, const bn_sums *t,
                                 const bn_coef *k);
/* dx constants of the training backward from the batch's sums, for channels [c0, c0+g). */
BN_HIDDEN void bn_consts_train_dx(const bn_coef *k, const bn_grad_out *o, const double *sum_dy,
                                  const double *sum_dy_xhat, int64_t c0, int64_t g);
/* Eval backward of channel ch: gradient outputs from the sums, dx constant in k[j]. */
BN_HIDDEN void bn_finalize_eval_grads(const bn_grad_out *o, int64_t ch, bn_sums t,
                                      const bn_coef *k, int64_t j);

/* ---- plans and schedules (plan.c, schedule.c) ---- */

/* At most this many tiles per channel: tiles bound the stack of the schedules that keep a
 * partial per (tile, channel). */
#define BN_TILES_MAX 32

/* How a reduction's work is shared: each thread a range of channels (every tile of a channel
 * on one thread, merged as it goes; channels-first), or, a panel of channels at a time, each
 * thread a range of (tile, channel group) pieces with the partials kept until every tile is done
 * (channels-last with tiles enough to share: each thread reads whole rows in memory order). */
typedef enum { BN_BY_CHANNELS = 0, BN_BY_TILES = 1 } bn_split;

/* At most this many channels take the by-tiles schedule (its partials live on the stack). */
#define BN_BY_TILES_MAX_C 64

/* Channels-last reductions run by tiles, a panel of at most BN_PANEL_MAX channels at a time (the
 * most an elementwise pass walks whole rows of), in at most BN_NSC_TILES_MAX tiles, and at most
 * BN_TILE_PARTS (tile, channel) partials: they live on the stack, so a panel of more than
 * BN_TILE_PARTS / BN_NSC_TILES_MAX channels takes fewer tiles. */
#define BN_PANEL_MAX BN_NSC_ROW_MAX
#define BN_NSC_TILES_MAX 16
#define BN_TILE_PARTS 4096

typedef struct bn_plan {
    int threads;     /* team size; 1: the calling thread, no OpenMP region */
    int64_t tiles;   /* tiles per channel (bn_tiles: the shape's reduction tree) */
    bn_split split;  /* for ops with a reduction */
    int64_t group;   /* channels per reduce/apply call: NCS group, NSC piece */
    int64_t panel;   /* by tiles: channels reduced, finalized and applied together */
    int stream;      /* outputs too big to stay in the cache: stream them past it */
    int fuse;        /* by channels: reduce each group while the previous one is applied */
} bn_plan;

/* The values (NCS) or rows (NSC) [*f0, *f1) of tile t of m. */
static inline void bn_tile(int64_t m, int64_t tiles, int64_t t, int64_t *f0, int64_t *f1) {
    int64_t q = m / tiles, r = m % tiles;
    *f0 = t * q + (t < r ? t : r);
    *f1 = *f0 + q + (t < r ? 1 : 0);
}

/* The tensors of a call as the kernels take them: rows of one value (S == 1) run channels-last,
 * a single channel channels-first; a function of the shape alone, as the reduction order must
 * be. */
BN_HIDDEN bn_io bn_io_make(const void *x, const void *z, const void *dy, const void *y, void *out,
                           void *out2, int64_t n, int64_t c, int64_t s, int32_t layout,
                           int32_t dtype, int32_t act);

/* The tiles per channel of a shape: a function of (m, layout) and, channels-last, of the panel
 * (itself a function of the shape, the op and the cache size, never of the thread count). */
BN_HIDDEN int64_t bn_tiles(int64_t m, int32_t layout, int64_t panel);

/* What an op does, for its plan: an elementwise pass alone, a reduction (maybe followed by an
 * elementwise pass), or a reduction and a pass that fused_ncs can run together. */
enum { BN_OP_APPLY = 0, BN_OP_REDUCE = 1, BN_OP_FUSABLE = 2 };

/* The plan of an op of kind `what` (BN_OP_*) over `work` values; takes the team slot when it
 * plans a team (release with bn_team_end(plan.threads)). */
BN_HIDDEN bn_plan bn_plan_make(const bn_io *io, const bn_kernels *k, int what, int64_t work);

/* What a schedule does per channel between its reduction and its elementwise pass. */
typedef enum {
    BN_FIN_TRAIN = 0,      /* moments -> statistics, running update, normalize constants */
    BN_FIN_STATS = 1,      /* moments -> (mean, m2) only (bn_stats) */
    BN_FIN_GRADS = 2,      /* grad sums -> dweight, dbias, sums, dx constants (training) */
    BN_FIN_EVAL_GRADS = 3, /* grad sums -> dweight, dbias, dx constant (eval) */
} bn_fin;

/*
 * One operation for the schedule runner: a reduction (mode, with the per-channel reference
 * values: shifts read from x, or means), a finalize step, and an elementwise pass (apply kind, or
 * -1 for none). Exactly one of train/grad/stats_out is used, by fin.
 */
typedef struct bn_op {
    bn_io io;
    int mode;              /* BN_REDUCE_* */
    bn_fin fin;
    int kind;              /* BN_APPLY_* or -1 */
    const bn_train_out *train;
    const bn_grad_out *grad;
    double *mean_out, *m2_out; /* BN_FIN_STATS */
    const bn_io *pass;         /* the elementwise pass's tensors when not io's (bn_reduce) */
} bn_op;

/* Runs op under plan p with kernels k: reduction + finalize + elementwise pass. */
BN_HIDDEN void bn_run_reduce(const bn_op *op, const bn_plan *p, const bn_kernels *k);

/* A lone elementwise pass with per-channel constants from `consts` (called per window of
 * channels [c0, c0+g) into k[0..g)). */
typedef void (*bn_consts_fn)(const void *ctx, const bn_coef *k, int64_t c0, int64_t g);
BN_HIDDEN void bn_run_apply(const bn_io *io, int kind, bn_consts_fn consts, const void *ctx,
                            const bn_plan *p, const bn_kernels *k);

/* Plan and run an op with a reduction, or a lone elementwise pass (schedule.c). */
BN_HIDDEN void bn_reduce(const bn_op *op);
BN_HIDDEN void bn_apply(const bn_io *io, int kind, bn_consts_fn consts, const void *ctx);

#endif /* BN_H */
