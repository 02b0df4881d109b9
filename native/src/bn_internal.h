/*
 * Internals shared by the libbatchnorm sources. Not installed, not part of the API.
 *
 * Every channel is a strided view: N rows of S contiguous floats, row r at base + r*stride
 * (stride = C*S, base = data + ch*S). Its M = N*S values are indexed flat as i = r*S + col.
 *
 * Determinism: each channel's M values are cut into blocks of BN_BLOCK flat indices (or, for the
 * memory-order reductions of short rows, into blocks of whole rows: bn_rows_per_block), a function
 * of the shape alone. Every reduction is computed per block by one kernel call, then the block
 * results are merged strictly in block order. Whichever thread computes a block, and however
 * many threads there are, the same floating-point operations happen in the same order.
 */
#ifndef BN_INTERNAL_H
#define BN_INTERNAL_H

#include <math.h>
#include <stdint.h>

#if defined(__GNUC__)
#define BN_HIDDEN __attribute__((visibility("hidden")))
#else
#define BN_HIDDEN
#endif

/* Values per reduction block: small enough that a block read twice in a row stays in L1. */
#define BN_BLOCK 4096

/* Below this much work (values a parallel pass would cover) a call runs on the calling thread
 * alone and never enters an OpenMP region: starting a team costs more than the whole kernel. */
#define BN_PARALLEL_MIN_ELEMENTS 65536

/* Small tensors: serial calls with at most this many values per channel, or with rows of one
 * value (BatchNorm1d on (N, C)), go through the kernels' whole-tensor small path when they have
 * one. */
#define BN_SMALL_MAX_M 1024

/* At most this many consecutive channels go through a group kernel together. */
#define BN_GROUP_MAX 16

/* A channel's data: row r starts at base + r*stride and holds s values; m = n*s values in all.
 * stream asks the kernels to write outputs with non-temporal stores (large tensors that will not
 * be read back soon). */
typedef struct {
    int64_t s;
    int64_t stride;
    int64_t m;
    int stream;
} bn_rows;

/*
 * Moments of a set of values: count, sum of (value - shift) and sum of squared deviations from
 * their own mean. The shift is one value of the channel: sums of shifted values stay small when
 * |mean| >> spread, so block means and Chan's merge keep their accuracy.
 */
typedef struct {
    double n;
    double sum;
    double m2;
} bn_moments;

/* Sums a backward needs: sum dy and sum dy*xhat, xhat = (x - mean)*invstd. */
typedef struct {
    double dy;
    double dyx;
} bn_grad_sums;

/*
 * One channel's running sums over a block of whole rows, for the reductions that walk memory in
 * order (row kernels below): 4 double lanes each of s and q; which lane takes which value is a
 * function of the row length alone. Folded with bn_fold4.
 */
typedef struct {
    double s[4], q[4];
} bn_row_state;

/* The lanes of a row state's sum in a fixed order. */
static inline double bn_fold4(const double a[4]) {
    return (a[0] + a[1]) + (a[2] + a[3]);
}

/* The row holding flat index i of a channel with rows of s values (no division for row 0: tiny
 * tensors call the kernels once per channel and would spend their time dividing). */
static inline int64_t bn_row_of(int64_t i, int64_t s) {
    return i < s ? 0 : i / s;
}

/* ---- validation (validate.c) ---- */

/* BN_OK, BN_ERR_BAD_SIZE, BN_ERR_SIZE_OVERFLOW or BN_ERR_UNSUPPORTED_LAYOUT. */
BN_HIDDEN int32_t bn_check_shape(int64_t n, int64_t c, int64_t s, int32_t layout);
BN_HIDDEN int32_t bn_check_eps(double eps);
BN_HIDDEN int32_t bn_check_factor(double factor);

/* ---- threads (threads.c) ---- */

/*
 * The team size for a call whose parallel pass would cover `work` values: 1 below the parallel
 * threshold, when the thread count is 1, or when another call holds the process-wide team slot;
 * otherwise the thread count, and the caller now holds the slot. Every bn_team_begin is paired
 * with a bn_team_end(team size) once the parallel region is over.
 */
BN_HIDDEN int bn_team_begin(int64_t work);
BN_HIDDEN void bn_team_end(int threads);

/* Per-channel constants of an elementwise pass: mean, and the pass's own a, b, k. */
typedef struct bn_coeffs {
    double mean, a, b, k;
} bn_coeffs;

/* A constant a float lane can use without overflow, underflow or NaN worries. */
static inline int bn_float_ok(double c) {
    double a = fabs(c);
    return a == 0.0 || (a > 1e-30 && a < 1e30);
}

/*
 * A channel's normalize constants, y = (x - mean)*a + b, prepared once for many runs: in double,
 * and as the float lanes use them (the mean as a float pair mh + ml, so that deviations keep full
 * accuracy when |mean| >> spread); fast says whether the float form is safe to use.
 */
typedef struct bn_norm {
    double mean, a, b;
    float mh, ml, af, bf;
    int fast;
} bn_norm;

static inline bn_norm bn_norm_make(bn_coeffs co) {
    bn_norm k = {co.mean, co.a, co.b, (float)co.mean, 0.0f, (float)co.a, (float)co.b,
                 bn_float_ok(co.mean) && bn_float_ok(co.a)};
    k.ml = (float)(co.mean - (double)k.mh);
    return k;
}

/* The same for the training backward's dx = ((dy - g) - (x - mean)*k)*a (co = mean, a, g, k). */
typedef struct bn_dx {
    bn_coeffs co;
    float mh, ml, af, gf, kf;
    int fast;
} bn_dx;

static inline bn_dx bn_dx_make(bn_coeffs co) {
    bn_dx d = {co, (float)co.mean, 0.0f, (float)co.a, (float)co.b, (float)co.k,
               bn_float_ok(co.mean) && bn_float_ok(co.a) && bn_float_ok(co.b) &&
                   bn_float_ok(co.k)};
    d.ml = (float)(co.mean - (double)d.mh);
    return d;
}

/* One channel's constants for a row kernel of either pass. */
typedef union bn_row_consts {
    bn_norm norm;
    bn_dx dx;
} bn_row_consts;

/* ---- block kernels; start and len are flat indices within one channel (kernels_*.c) ---- */

typedef struct {
    /* Moments of x[start, start+len) about shift: sum of (x - shift) and sum of squared
     * deviations from the block's mean, from deviations, never from E[x^2] - E[x]^2. */
    bn_moments (*moments)(const float *x, bn_rows v, int64_t start, int64_t len, double shift);
    /* y = (x - mean)*alpha + beta. y may equal x. */
    void (*normalize)(float *y, const float *x, bn_rows v, int64_t start, int64_t len,
                      double mean, double alpha, double beta);
    /* The same on len contiguous values that run through consecutive channels of one row: the
     * first value is column col of the channel with constants k[0].norm (from bn_norm_make),
     * and every s values the next channel begins. store is a BN_ROW_* mode; streamed stores
     * need the caller to fence after its last such call. y may equal x. */
    void (*normalize_row)(float *y, const float *x, int64_t s, int64_t col, int64_t len,
                          const union bn_row_consts *k, int store);
    /* normalize() of x into y and moments() of xn (another channel of the same shape), over the
     * same block, in one pass: the memory stream of the next channel's statistics overlaps with
     * the output of this one. The same bits as the two calls. */
    bn_moments (*normalize_moments)(float *y, const float *x, bn_rows v, int64_t start,
                                    int64_t len, double mean, double alpha, double beta,
                                    const float *xn, double shift);
    /* sum dy and sum dy*xhat, xhat = (x - mean)*invstd. */
    bn_grad_sums (*grad_sums)(const float *dy, const float *x, bn_rows v, int64_t start,
                              int64_t len, double mean, double invstd);
    /* dx = ((dy - gmean) - (x - mean)*k)*a. dx may equal dy. */
    void (*train_dx)(float *dx, const float *dy, const float *x, bn_rows v, int64_t start,
                     int64_t len, double mean, double a, double gmean, double k);
    /* train_dx() on a row the way normalize_row works, with k[j].dx from bn_dx_make; stores
     * stream when asked (v.stream: one segment at a time, never in whole lines). dx may equal
     * dy. */
    void (*train_dx_row)(float *dx, const float *dy, const float *x, int64_t s, int64_t col,
                         int64_t len, const union bn_row_consts *k, int stream);
    /* dx = dy*a (when dx != NULL) and the sums dy, dy*(x - mean)*invstd (the latter only when
     * x != NULL), in one pass. dx may equal dy. */
    bn_grad_sums (*eval_backward)(float *dx, const float *dy, const float *x, bn_rows v,
                                  int64_t start, int64_t len, double mean, double invstd,
                                  double a);
    /*
     * Group kernels: the same work for g <= BN_GROUP_MAX consecutive channels (channel j's base
     * is the given base + j*s), done row by row so that memory is read in order when rows are
     * short. Each channel's result is bit-identical to the single-channel kernel's.
     */
    void (*moments_group)(const float *x, bn_rows v, int64_t g, int64_t start, int64_t len,
                          const double *shift, bn_moments *out);
    void (*normalize_group)(float *y, const float *x, bn_rows v, int64_t g, int64_t start,
                            int64_t len, const struct bn_coeffs *co);
    void (*grad_sums_group)(const float *dy, const float *x, bn_rows v, int64_t g, int64_t start,
                            int64_t len, const double *mean, const double *invstd,
                            bn_grad_sums *out);
    void (*train_dx_group)(float *dx, const float *dy, const float *x, bn_rows v, int64_t g,
                           int64_t start, int64_t len, const struct bn_coeffs *co);
    /*
     * Row kernels of the memory-order reductions: one row of c consecutive channels (c*s
     * contiguous values from x, channel j's at x + j*s) added into their states st[0..c);
     * moments_rows takes that many consecutive rows (c*s values apart).
     * moments_rows: s += d, q += d*d with d = x - k[j] in double. grad_sums_rows: s += dy,
     * q += dy*(x - mean[j]) in double.
     */
    void (*moments_rows)(bn_row_state *st, const float *x, int64_t rows, int64_t s, int64_t c,
                         const double *k);
    void (*grad_sums_rows)(bn_row_state *st, const float *dy, const float *x, int64_t s,
                           int64_t c, const double *mean);
    /*
     * The fused training pass of bn_run_row_channels, on one channel whose n rows (stride
     * apart) are cut into blocks of `rows`: when x != NULL, every row of block b added into
     * st[b] (s, q as in moments_rows, d = x - k[b]; a lane order of its own); when p != NULL,
     * the previous channel's rows at the same offsets (p, into q) normalized with constants kp,
     * the bits of normalize_row, in the same walk, with streamed (and fenced) stores: the
     * schedule takes outputs too big for the cache. NULL when the kernels have no such pass.
     */
    void (*moments_rows_fused)(bn_row_state *st, float *q, const float *x, const double *k,
                               const float *p, const union bn_row_consts *kp, int64_t n,
                               int64_t rows, int64_t s, int64_t stride);
    /*
     * Whole operations on small tensors (bn_small), with the arguments of the API functions
     * (already validated, M >= 1, and M >= 2 for training): per-channel overhead dominates
     * there, so these take several channels at once. NULL when the kernels have no such path:
     * the driver's serial schedule serves then.
     */
    void (*small_forward_train)(float *y, double *save_mean, double *save_invstd,
                                float *running_mean, float *running_var, const float *x,
                                const float *weight, const float *bias, int64_t n, int64_t c,
                                int64_t s, double eps, double factor);
    void (*small_forward_eval)(float *y, const float *x, const float *weight, const float *bias,
                               const float *running_mean, const float *running_var, int64_t n,
                               int64_t c, int64_t s, double eps);
    void (*small_backward_train)(float *dx, float *dweight, float *dbias, const float *dy,
                                 const float *x, const float *weight, const double *save_mean,
                                 const double *save_invstd, int64_t n, int64_t c, int64_t s);
} bn_kernels;

/* Whether a call with m values per channel in rows of s, and `work` values for a parallel pass,
 * takes the small path: a function of the shape alone, and such a call is always serial. */
static inline int bn_small(int64_t m, int64_t s, int64_t work) {
    return work < BN_PARALLEL_MIN_ELEMENTS && (m <= BN_SMALL_MAX_M || s == 1);
}

BN_HIDDEN extern const bn_kernels bn_kernels_generic;
BN_HIDDEN extern const bn_kernels bn_kernels_avx2;
BN_HIDDEN extern const bn_kernels bn_kernels_avx512;

/* The kernels for this CPU: AVX-512 when it has AVX-512F (with AVX2 and FMA), else AVX2 when it
 * has AVX2 and FMA, else the portable ones. BN_ISA=avx2 or BN_ISA=generic in the environment caps
 * the choice, for tests. Results are deterministic for any thread count on one machine; the
 * three kernel sets may differ from each other in the last bits of the statistics. */
BN_HIDDEN const bn_kernels *bn_kernels_select(void);

/* ---- the parallel driver (driver.c) ---- */

/* Per-channel partial result of the reduction pass: moments or gradient sums. */
typedef union {
    bn_moments mo;
    bn_grad_sums g;
} bn_partial;


/*
 * One operation as three steps per channel: reduce each block (optional), finalize the channel
 * from the merged partial (writes the per-channel outputs, returns the elementwise constants),
 * apply the elementwise pass to each block (optional).
 */
typedef struct {
    const void *args;
    bn_partial (*reduce)(const void *args, int64_t ch, int64_t start, int64_t len);
    bn_partial (*merge)(bn_partial a, bn_partial b);
    bn_coeffs (*finalize)(const void *args, int64_t ch, bn_partial total);
    void (*apply)(const void *args, int64_t ch, int64_t start, int64_t len, bn_coeffs co);
    /* Optional: reduce and apply for g consecutive channels from ch at once, with the same
     * per-channel results; used when rows are short. */
    void (*reduce_group)(const void *args, int64_t ch, int64_t g, int64_t start, int64_t len,
                         bn_partial *out);
    void (*apply_group)(const void *args, int64_t ch, int64_t g, int64_t start, int64_t len,
                        const bn_coeffs *co);
    /* Optional: apply on channel ch_apply and reduce channel ch_reduce over the same block, in
     * one pass; the same results as apply and reduce called apart. */
    bn_partial (*reduce_apply)(const void *args, int64_t ch_reduce, int64_t ch_apply,
                               int64_t start, int64_t len, bn_coeffs co);
    /* Optional, for bn_run_row_blocks: the partials of rows [r0, r1) (row block b) of every
     * channel, into out[0..c). */
    void (*reduce_rows)(const void *args, int64_t b, int64_t r0, int64_t r1, bn_partial *out);
    /* Optional, for bn_run_row_channels: the partials of channel ch_reduce's row blocks into
     * out[0..nb), and in the same walk the apply pass of channel ch_apply with constants co;
     * either channel may be -1 (none). */
    void (*reduce_apply_rows)(const void *args, int64_t ch_reduce, int64_t ch_apply,
                              bn_coeffs co, bn_partial *out);
} bn_op;

/* Runs op over c channels of m values each (rows of s), on a team (bn_team_begin(work)) or on
 * the calling thread alone; the results are the same bits either way. */
BN_HIDDEN void bn_run(const bn_op *op, int64_t c, int64_t s, int64_t m, int64_t work);

/*
 * An elementwise pass over an (N,C,S) tensor in memory order (bn_run_rows): per channel
 * constants, then runs of values, each contiguous within one row and starting at column col of
 * the channel whose constants are k[0] (later channels follow at k[1], ...).
 */
typedef struct {
    const void *args;
    bn_row_consts (*consts)(const void *args, int64_t ch);
    void (*run)(const void *args, int64_t off, int64_t col, int64_t len, const bn_row_consts *k);
    int stream; /* the runs stream their stores */
} bn_row_op;

/* Elementwise passes in memory order: windows of BN_WINDOW consecutive channels (all of C in
 * the common case), each seen row by row, one contiguous span of that order per thread. */
#define BN_WINDOW 1024
BN_HIDDEN void bn_run_rows(const bn_row_op *op, int64_t n, int64_t c, int64_t s, int64_t work);

/*
 * A reduction pass in memory order, for short rows: the rows are cut into blocks of
 * rows_per_block (the last may be shorter), a function of the shape alone; op->reduce_rows
 * turns block b into part[b*c .. b*c + c), each block on one thread (contiguous runs of blocks
 * per thread), then every channel merges its partials in block order and is finalized. op->apply
 * is not used. part holds ceil(n / rows_per_block) * c partials.
 */
BN_HIDDEN void bn_run_row_blocks(const bn_op *op, int64_t n, int64_t c, int64_t rows_per_block,
                                 bn_partial *part, int64_t work);

/*
 * A training forward by channel over blocks of whole rows (bn_rows_per_block), each thread a
 * contiguous range of channels: op->reduce_apply_rows reduces channel ch while it applies
 * channel ch - 1 in the same walk, so each channel is read from memory once and is still in the
 * core's cache when its apply pass comes; then ch's block partials are merged in block order
 * and finalized. For rows of at least BN_ROW_CHANNELS_MIN_S values and channels of at most
 * BN_ROW_CHANNELS_MAX_M: their row blocks' states and partials live on the stack (48 KiB at
 * most, BN_ROW_CHANNELS_MAX_M / BN_ROW_CHANNELS_MIN_S blocks).
 */
#define BN_ROW_CHANNELS_MIN_S 1024
#define BN_ROW_CHANNELS_MAX_M 524288
BN_HIDDEN void bn_run_row_channels(const bn_op *op, int64_t n, int64_t c, int64_t rows,
                                   int64_t work);

/* Rows per block of bn_run_row_blocks for rows of s values: at most BN_BLOCK values of a
 * channel per block (the accuracy bound of one-pass moments), and at least 8 blocks when there
 * are rows enough, to share among threads (measured with 2 threads: 4 or 8 blocks up to 1.1x
 * faster than 16; 8 leaves work for more threads). */
static inline int64_t bn_rows_per_block(int64_t n, int64_t s) {
    int64_t r = BN_BLOCK / s, share = (n + 7) / 8;
    r = r < share ? r : share;
    return r < 1 ? 1 : r;
}

/*
 * Room for bn_run_row_blocks's per-block state in an output buffer of `total` floats, which the
 * pass after the reduction overwrites anyway: no allocation, and no stack (C up to BN_WINDOW
 * channels times 8 blocks of states would not fit on a Java thread's stack). `parts` states of
 * sizeof(bn_row_state) + extra bytes each, the states first on a cache-line boundary. NULL when
 * out is in (in place) or too small: a function of the shape and of out == in alone, never of the
 * thread count.
 */
BN_HIDDEN bn_row_state *bn_row_scratch(float *out, const float *in, int64_t total, int64_t parts,
                                       int64_t extra);

/* Memory-order passes need rows of at least BN_RUN_MIN_S values (shorter runs do not pay for
 * their setup). In place, where bn_row_scratch has no room, training passes over rows shorter
 * than BN_TWO_PASS_MAX_S still take two passes, their reduction by channel groups. */
#define BN_RUN_MIN_S 16
#define BN_TWO_PASS_MAX_S 1024

/* The row view of an (N,C,S) tensor, with the streaming-store decision. */
BN_HIDDEN bn_rows bn_make_rows(int64_t n, int64_t c, int64_t s);

/* How the memory-order normalize (normalize_row) stores: through the cache (BN_ROW_CACHED), one
 * channel's segment at a time streamed (BN_ROW_STREAM, what bn_make_rows's stream flag means for
 * every kernel), or, for outputs too big for the cache with rows too short to stream a segment at
 * a time, in whole 64-byte lines that run across channel boundaries (BN_ROW_LINES). The bits are
 * the same in every mode. train_dx_row streams by the flag only: lines measured 3-9% slower for
 * dx (docs/DESIGN.md). */
enum { BN_ROW_CACHED = 0, BN_ROW_STREAM = 1, BN_ROW_LINES = 2 };
BN_HIDDEN int bn_row_store(int64_t n, int64_t c, int64_t s);

BN_HIDDEN bn_partial bn_merge_moments(bn_partial a, bn_partial b);
BN_HIDDEN bn_partial bn_merge_sums(bn_partial a, bn_partial b);

#endif /* BN_INTERNAL_H */
