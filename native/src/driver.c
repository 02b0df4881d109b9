/*
 * The parallel driver. Three schedules for operations with a reduction, all computing each
 * block's partial with the same kernel and merging a channel's partials in block order, so they
 * give bit-identical results:
 *  - serial: the calling thread runs channel after channel, no OpenMP region at all;
 *  - by channel: each thread takes a contiguous range of channels and runs each one start to
 *    finish (reduce, finalize, apply), so the apply pass finds the channel's data in cache; with
 *    long rows the reduction of the next channel is fused into the apply pass of this one;
 *  - split: when channels are too few to share out evenly, the blocks of a group of channels are
 *    shared out instead; partials go to a fixed-size array and are merged in block order by one
 *    thread, then the apply pass uses the same static split so each thread meets its own blocks.
 * And two in memory order, one contiguous span per thread: reductions over blocks of whole rows
 * (bn_run_row_blocks, for short rows) and elementwise passes (bn_run_rows). And one more by
 * channel, over blocks of whole rows with the apply fused in (bn_run_row_channels), whose
 * reduction tree is its own: a shape that takes it always does.
 */
#include <omp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "bn_internal.h"

/* Split schedule bounds: at most this many channels (their partials and constants live on the
 * stack), and partials for at most BN_ROUND blocks at a time. */
#define BN_SPLIT_MAX_CHANNELS 64
#define BN_ROUND 512
/* Values per thread in one channel group of the split schedule: what stays in a core's L2. */
#define BN_GROUP_PER_THREAD 65536

/* Outputs bigger than this are written with non-temporal stores: they cannot stay in cache for
 * the caller anyway, and streaming them spares the read-for-ownership traffic. A kernel that
 * streams one channel's segment at a time needs rows of 64 values and more (shorter ones would
 * stream partial cache lines, which costs more than it saves); the memory-order normalize streams
 * whole lines across channel boundaries instead (bn_row_store). */
#define BN_STREAM_MIN_BYTES ((int64_t)16 << 20)
#define BN_STREAM_MIN_S 64

int bn_row_store(int64_t n, int64_t c, int64_t s) {
    if (n * c * s * (int64_t)sizeof(float) < BN_STREAM_MIN_BYTES)
        return BN_ROW_CACHED;
    return s >= BN_STREAM_MIN_S ? BN_ROW_STREAM : BN_ROW_LINES;
}

bn_rows bn_make_rows(int64_t n, int64_t c, int64_t s) {
    bn_rows v = {s, c * s, n * s, bn_row_store(n, c, s) == BN_ROW_STREAM};
    return v;
}

bn_partial bn_merge_moments(bn_partial a, bn_partial b) {
    if (a.mo.n == 0.0)
        return b;
    double n = a.mo.n + b.mo.n;
    double delta = b.mo.sum / b.mo.n - a.mo.sum / a.mo.n;
    bn_partial r;
    r.mo.n = n;
    r.mo.sum = a.mo.sum + b.mo.sum;
    r.mo.m2 = a.mo.m2 + b.mo.m2 + delta * delta * (a.mo.n * b.mo.n / n);
    return r;
}

bn_partial bn_merge_sums(bn_partial a, bn_partial b) {
    bn_partial r;
    r.g.dy = a.g.dy + b.g.dy;
    r.g.dyx = a.g.dyx + b.g.dyx;
    return r;
}

static bn_partial zero_partial(void) {
    bn_partial z;
    z.mo.n = z.mo.sum = z.mo.m2 = 0.0;
    return z;
}

static int64_t block_len(int64_t m, int64_t b) {
    int64_t start = b * BN_BLOCK;
    return m - start < BN_BLOCK ? m - start : BN_BLOCK;
}

/*
 * Channels per group for rows of s values and m values per channel: enough that one row of the
 * group spans 4 KiB of memory read in order; with a reduction, also few enough that the group's
 * data stays in L2 between the reduction and the apply pass.
 */
static int64_t group_size(const bn_op *op, int64_t s, int64_t m) {
    int64_t g = 4096 / (s * (int64_t)sizeof(float));
    int64_t fit = (512 * 1024) / (m * (int64_t)sizeof(float));
    if (op->reduce && g > fit)
        g = fit;
    if (g > BN_GROUP_MAX)
        g = BN_GROUP_MAX;
    return g < 1 ? 1 : g;
}

/* Channels [c0, c1) on the calling thread, g at a time through the group callbacks. */
static void run_groups(const bn_op *op, int64_t c0, int64_t c1, int64_t m, int64_t g) {
    bn_partial acc[BN_GROUP_MAX], part[BN_GROUP_MAX];
    bn_coeffs co[BN_GROUP_MAX];
    for (int64_t ch = c0; ch < c1; ch += g) {
        int64_t gg = c1 - ch < g ? c1 - ch : g;
        for (int64_t j = 0; j < gg; j++)
            acc[j] = zero_partial();
        for (int64_t start = 0; op->reduce && start < m; start += BN_BLOCK) {
            op->reduce_group(op->args, ch, gg, start, block_len(m, start / BN_BLOCK), part);
            for (int64_t j = 0; j < gg; j++)
                acc[j] = op->merge(acc[j], part[j]);
        }
        for (int64_t j = 0; j < gg; j++)
            co[j] = op->finalize(op->args, ch + j, acc[j]);
        if (op->apply)
            op->apply_group(op->args, ch, gg, 0, m, co);
    }
}

/*
 * Channels [c0, c1) on the calling thread, one at a time, software-pipelined when the op has a
 * fused pass (reduce_apply): block by block, one pass applies this channel and reduces the next.
 * The apply reads its data back from cache and writes the output while the reduction reads the
 * next channel from memory: in one loop the two streams overlap in the core instead of taking
 * turns (measured: up to 1.3x faster training forwards on rows of >= 1024 values). Backward
 * has no fused pass: its two inputs already fill L2, and interleaving its passes measured
 * slower. The partials are still merged in block order: the same bits as the plain walk.
 */
static void run_channels(const bn_op *op, int64_t c0, int64_t c1, int64_t m) {
    int fused = op->reduce && op->apply && op->reduce_apply;
    bn_partial acc = zero_partial(), next = zero_partial();
    for (int64_t start = 0; fused && start < m; start += BN_BLOCK)
        next = op->merge(next, op->reduce(op->args, c0, start, block_len(m, start / BN_BLOCK)));
    for (int64_t ch = c0; ch < c1; ch++) {
        if (fused) {
            acc = next;
            next = zero_partial();
        } else {
            acc = zero_partial();
            for (int64_t start = 0; op->reduce && start < m; start += BN_BLOCK)
                acc = op->merge(acc, op->reduce(op->args, ch, start,
                                                block_len(m, start / BN_BLOCK)));
        }
        bn_coeffs co = op->finalize(op->args, ch, acc);
        if (!fused || ch + 1 == c1) {
            if (op->apply)
                op->apply(op->args, ch, 0, m, co);
            continue;
        }
        for (int64_t start = 0; start < m; start += BN_BLOCK)
            next = op->merge(next, op->reduce_apply(op->args, ch + 1, ch, start,
                                                    block_len(m, start / BN_BLOCK), co));
    }
}

/* Channels [c0, c1) on the calling thread. */
static void run_range(const bn_op *op, int64_t c0, int64_t c1, int64_t m, int64_t g) {
    if (g > 1 && (!op->reduce || op->reduce_group) && (!op->apply || op->apply_group))
        run_groups(op, c0, c1, m, g);
    else
        run_channels(op, c0, c1, m);
}

static void run_split(const bn_op *op, int64_t c, int64_t m, int threads) {
    bn_partial acc[BN_SPLIT_MAX_CHANNELS], part[BN_ROUND];
    bn_coeffs co[BN_SPLIT_MAX_CHANNELS];
    int64_t nb = (m + BN_BLOCK - 1) / BN_BLOCK;
    int64_t group = (int64_t)threads * BN_GROUP_PER_THREAD / m;
    if (group < 1)
        group = 1;
#pragma omp parallel num_threads(threads)
    for (int64_t g0 = 0; g0 < c; g0 += group) {
        int64_t g1 = g0 + group < c ? g0 + group : c, tasks = (g1 - g0) * nb;
#pragma omp single
        for (int64_t ch = g0; ch < g1; ch++)
            acc[ch] = zero_partial();
        for (int64_t r0 = 0; op->reduce && r0 < tasks; r0 += BN_ROUND) {
            int64_t r1 = r0 + BN_ROUND < tasks ? r0 + BN_ROUND : tasks;
#pragma omp for schedule(static)
            for (int64_t t = r0; t < r1; t++) {
                int64_t ch = g0 + t / nb, b = t % nb;
                part[t - r0] = op->reduce(op->args, ch, b * BN_BLOCK, block_len(m, b));
            }
#pragma omp single
            for (int64_t t = r0; t < r1; t++) {
                int64_t ch = g0 + t / nb;
                acc[ch] = op->merge(acc[ch], part[t - r0]);
            }
        }
#pragma omp single
        for (int64_t ch = g0; ch < g1; ch++)
            co[ch] = op->finalize(op->args, ch, acc[ch]);
        if (op->apply) {
#pragma omp for schedule(static)
            for (int64_t t = 0; t < tasks; t++) {
                int64_t ch = g0 + t / nb, b = t % nb;
                op->apply(op->args, ch, b * BN_BLOCK, block_len(m, b), co[ch]);
            }
        }
    }
}

/*
 * Few channels of at most one block each, on the calling thread: phase by phase over all
 * channels, so that the channels' short dependency chains (sums, divisions, square roots)
 * overlap in the core instead of running one after the other.
 */
static void run_small(const bn_op *op, int64_t c, int64_t m) {
    bn_partial part[BN_SPLIT_MAX_CHANNELS];
    bn_coeffs co[BN_SPLIT_MAX_CHANNELS];
    for (int64_t ch = 0; ch < c; ch++)
        part[ch] = op->reduce ? op->merge(zero_partial(), op->reduce(op->args, ch, 0, m))
                              : zero_partial();
    for (int64_t ch = 0; ch < c; ch++)
        co[ch] = op->finalize(op->args, ch, part[ch]);
    if (op->apply)
        for (int64_t ch = 0; ch < c; ch++)
            op->apply(op->args, ch, 0, m, co[ch]);
}

/* Inside a parallel region: the contiguous share of c channels that schedule(static) would give
 * this thread. */
static void channel_share(int64_t c, int64_t *c0, int64_t *c1) {
    int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    int64_t q = c / nt, r = c % nt;
    *c0 = t * q + (t < r ? t : r);
    *c1 = *c0 + q + (t < r ? 1 : 0);
}

static void run(const bn_op *op, int64_t c, int64_t s, int64_t m, int threads) {
    if (threads <= 1 && c <= BN_SPLIT_MAX_CHANNELS && m <= BN_BLOCK) {
        run_small(op, c, m);
        return;
    }
    int64_t g = group_size(op, s, m);
    if (threads <= 1) {
        run_range(op, 0, c, m, g);
        return;
    }
    /* By channel unless that leaves a thread idle for more than 1/8 of the time. */
    if (c % threads == 0 || c >= 8 * (int64_t)threads || c > BN_SPLIT_MAX_CHANNELS) {
#pragma omp parallel num_threads(threads)
        {
            int64_t c0, c1;
            channel_share(c, &c0, &c1);
            run_range(op, c0, c1, m, g);
        }
        return;
    }
    run_split(op, c, m, threads);
}

void bn_run(const bn_op *op, int64_t c, int64_t s, int64_t m, int64_t work) {
    int threads = bn_team_begin(work);
    run(op, c, s, m, threads);
    bn_team_end(threads);
}

// the tensor is (N,C,S); part is (nb, C)
static void row_blocks_reduce(const bn_op *op, int64_t n, int64_t c, int64_t rows, int64_t b,
                              bn_partial *part) {
    int64_t r0 = b * rows, r1 = r0 + rows < n ? r0 + rows : n;
    op->reduce_rows(op->args, b, r0, r1, part + b * c);
}

// part is (nb, C)
static void row_blocks_finish(const bn_op *op, int64_t c, int64_t nb, int64_t ch,
                              const bn_partial *part) {
    bn_partial acc = zero_partial();
    for (int64_t b = 0; b < nb; b++)
        acc = op->merge(acc, part[b * c + ch]);
    op->finalize(op->args, ch, acc);
}

/*
 * The blocks in order of memory, a contiguous run of them per thread (schedule(static)), so each
 * thread streams one contiguous range of the tensor; then the channels' merges, in block order
 * whatever thread ran a block.
 */
void bn_run_row_blocks(const bn_op *op, int64_t n, int64_t c, int64_t rows, bn_partial *part,
                       int64_t work) {
    int64_t nb = (n + rows - 1) / rows;
    int threads = bn_team_begin(work);
    if (threads <= 1) {
        for (int64_t b = 0; b < nb; b++)
            row_blocks_reduce(op, n, c, rows, b, part);
        for (int64_t ch = 0; ch < c; ch++)
            row_blocks_finish(op, c, nb, ch, part);
    } else {
#pragma omp parallel num_threads(threads)
        {
#pragma omp for schedule(static)
            for (int64_t b = 0; b < nb; b++)
                row_blocks_reduce(op, n, c, rows, b, part);
#pragma omp for schedule(static)
            for (int64_t ch = 0; ch < c; ch++)
                row_blocks_finish(op, c, nb, ch, part);
        }
    }
    bn_team_end(threads);
}

/* Channels [c0, c1) of bn_run_row_channels on the calling thread: the walk of channel ch
 * reduces ch and applies ch - 1. */
static void row_channels(const bn_op *op, int64_t c0, int64_t c1, int64_t nb) {
    bn_partial part[BN_ROW_CHANNELS_MAX_M / BN_ROW_CHANNELS_MIN_S];
    bn_coeffs co = {0.0, 0.0, 0.0, 0.0};
    if (c0 == c1)
        return;
    for (int64_t ch = c0; ch < c1; ch++) {
        op->reduce_apply_rows(op->args, ch, ch > c0 ? ch - 1 : -1, co, part);
        bn_partial acc = zero_partial();
        for (int64_t b = 0; b < nb; b++)
            acc = op->merge(acc, part[b]);
        co = op->finalize(op->args, ch, acc);
    }
    op->reduce_apply_rows(op->args, -1, c1 - 1, co, part);
}

void bn_run_row_channels(const bn_op *op, int64_t n, int64_t c, int64_t rows, int64_t work) {
    int64_t nb = (n + rows - 1) / rows;
    int threads = bn_team_begin(work);
    if (threads <= 1) {
        row_channels(op, 0, c, nb);
    } else {
#pragma omp parallel num_threads(threads)
        {
            int64_t c0, c1;
            channel_share(c, &c0, &c1);
            row_channels(op, c0, c1, nb);
        }
    }
    bn_team_end(threads);
}

bn_row_state *bn_row_scratch(float *out, const float *in, int64_t total, int64_t parts,
                             int64_t extra) {
    int64_t bytes = parts * ((int64_t)sizeof(bn_row_state) + extra);
    if (out == in || bytes + 64 > total * (int64_t)sizeof(float))
        return NULL;
    return (bn_row_state *)(((uintptr_t)out + 63) & ~(uintptr_t)63);
}

/*
 * Memory order, for elementwise passes that gain nothing from walking a channel's rows (C*S
 * values apart) and lose much: the walk jumps, and lines at row ends are shared between channels.
 */

// the tensor is (N,C,S); [f0, f1) are positions in window order
static void rows_span(const bn_row_op *op, int64_t n, int64_t c, int64_t s, int64_t f0,
                      int64_t f1) {
    if (f0 >= f1)
        return;
    bn_row_consts k[BN_WINDOW]; /* 56 KiB of stack */
    int64_t window_values = (int64_t)BN_WINDOW * n * s;
    int64_t win = f0 / window_values, f = f0 - win * window_values, g = 0;
    int64_t row = 0, j = 0, col = 0;
    for (int64_t left = f1 - f0; left > 0;) {
        if (g == 0) {
            g = c - win * BN_WINDOW < BN_WINDOW ? c - win * BN_WINDOW : BN_WINDOW;
            for (int64_t i = 0; i < g; i++)
                k[i] = op->consts(op->args, win * BN_WINDOW + i);
            row = f / (g * s);
            j = f % (g * s) / s;
            col = f % s;
        }
        int64_t len = g * s - (j * s + col) < left ? g * s - (j * s + col) : left;
        op->run(op->args, (row * c + win * BN_WINDOW + j) * s + col, col, len, &k[j]);
        left -= len;
        j = col = 0;
        if (++row == n) {
            win++;
            f = g = 0;
        }
    }
    /* streaming stores are weakly ordered: make them visible before the call returns */
    if (op->stream)
        atomic_thread_fence(memory_order_seq_cst);
}

/* Thread t's share of `total` positions out of nt, starting on a 64-byte boundary of values. */
static int64_t span_start(int64_t total, int t, int nt) {
    if (t == nt)
        return total;
    int64_t q = total / nt, r = total % nt;
    return (q * t + (t < r ? t : r)) & ~(int64_t)15;
}

void bn_run_rows(const bn_row_op *op, int64_t n, int64_t c, int64_t s, int64_t work) {
    int64_t total = n * c * s;
    int threads = bn_team_begin(work);
    if (threads <= 1) {
        rows_span(op, n, c, s, 0, total);
    } else {
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            rows_span(op, n, c, s, span_start(total, t, nt), span_start(total, t + 1, nt));
        }
    }
    bn_team_end(threads);
}
