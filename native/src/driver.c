/*
 * The parallel driver. Three schedules, all computing each block's partial with the same kernel
 * and merging a channel's partials in block order, so they give bit-identical results:
 *  - serial: the calling thread runs channel after channel, no OpenMP region at all;
 *  - by channel: each thread takes a contiguous range of channels and runs each one start to
 *    finish (reduce, finalize, apply), so the apply pass finds the channel's data in cache;
 *  - split: when channels are too few to share out evenly, the blocks of a group of channels are
 *    shared out instead; partials go to a fixed-size array and are merged in block order by one
 *    thread, then the apply pass uses the same static split so each thread meets its own blocks.
 */
#include <omp.h>
#include <stddef.h>

#include "bn_internal.h"

/* Split schedule bounds: at most this many channels (their partials and constants live on the
 * stack), and partials for at most BN_ROUND blocks at a time. */
#define BN_SPLIT_MAX_CHANNELS 64
#define BN_ROUND 512
/* Values per thread in one channel group of the split schedule: what stays in a core's L2. */
#define BN_GROUP_PER_THREAD 65536

/* Outputs bigger than this are written with non-temporal stores: they cannot stay in cache for
 * the caller anyway, and streaming them spares the read-for-ownership traffic. Rows shorter than
 * 64 values would stream partial cache lines, which costs more than it saves. */
#define BN_STREAM_MIN_BYTES ((int64_t)16 << 20)

bn_rows bn_make_rows(int64_t n, int64_t c, int64_t s) {
    bn_rows v = {s, c * s, n * s, n * c * s * (int64_t)sizeof(float) >= BN_STREAM_MIN_BYTES && s >= 64};
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

/* One block [start, start+len) of g channels from ch, merged into acc. */
static void reduce_blocks(const bn_op *op, int64_t ch, int64_t g, int64_t start, int64_t len,
                          int grouped, bn_partial *acc, bn_partial *part) {
    if (grouped)
        op->reduce_group(op->args, ch, g, start, len, part);
    else
        part[0] = op->reduce(op->args, ch, start, len);
    for (int64_t j = 0; j < g; j++)
        acc[j] = op->merge(acc[j], part[j]);
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

/*
 * Channels [c0, c1) on the calling thread, g at a time (through the group callbacks when g > 1),
 * software-pipelined: the reduction of the next group runs block by block beside the apply pass
 * of the current one, in one fused pass when the op has one (reduce_apply). The apply pass reads
 * its data back from cache and writes the output while the reduction reads the next group from
 * memory: side by side, the two streams overlap in the core instead of taking turns. Each
 * group's partials are still merged in block order, so the results are the bits a plain
 * channel-by-channel walk gives.
 */
static void run_channels(const bn_op *op, int64_t c0, int64_t c1, int64_t s, int64_t m,
                         int64_t g) {
    int grouped = g > 1 && (!op->reduce || op->reduce_group) && (!op->apply || op->apply_group);
    if (!grouped)
        g = 1;
    /* The apply pass goes block by block beside the reduction, or, for groups, in chunks of
     * whole rows of about a block (what the group kernels' fast path wants). */
    int64_t chunk = !grouped ? BN_BLOCK : s >= BN_BLOCK ? s : BN_BLOCK / s * s;
    int fused = !grouped && op->reduce_apply != NULL;
    bn_partial acc[BN_GROUP_MAX], next[BN_GROUP_MAX], part[BN_GROUP_MAX];
    bn_coeffs co[BN_GROUP_MAX];
    for (int64_t j = 0; j < g; j++)
        next[j] = zero_partial();
    /* the first group's reduction, alone */
    int64_t gg = c1 - c0 < g ? c1 - c0 : g;
    for (int64_t start = 0; op->reduce && start < m; start += BN_BLOCK)
        reduce_blocks(op, c0, gg, start, block_len(m, start / BN_BLOCK), grouped, next, part);
    for (int64_t ch = c0; ch < c1; ch += g) {
        gg = c1 - ch < g ? c1 - ch : g;
        int64_t ch2 = ch + gg, gg2 = c1 - ch2 < g ? c1 - ch2 : g;
        for (int64_t j = 0; j < gg; j++) {
            acc[j] = next[j];
            next[j] = zero_partial();
            co[j] = op->finalize(op->args, ch + j, acc[j]);
        }
        int64_t blocks = op->reduce && gg2 > 0 ? (m + BN_BLOCK - 1) / BN_BLOCK : 0;
        int64_t chunks = op->apply ? (m + chunk - 1) / chunk : 0;
        for (int64_t i = 0; i < blocks || i < chunks; i++) {
            int64_t start = i * chunk, len = m - start < chunk ? m - start : chunk;
            if (fused && i < blocks && i < chunks)
                next[0] = op->merge(next[0], op->reduce_apply(op->args, ch2, ch, start, len, co[0]));
            else if (i < blocks)
                reduce_blocks(op, ch2, gg2, i * BN_BLOCK, block_len(m, i), grouped, next, part);
            if (fused && i < blocks && i < chunks)
                continue;
            if (i < chunks && grouped)
                op->apply_group(op->args, ch, gg, start, len, co);
            else if (i < chunks)
                op->apply(op->args, ch, start, len, co[0]);
        }
    }
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

static void run(const bn_op *op, int64_t c, int64_t s, int64_t m, int threads) {
    if (threads <= 1 && c <= BN_SPLIT_MAX_CHANNELS && m <= BN_BLOCK) {
        run_small(op, c, m);
        return;
    }
    int64_t g = group_size(op, s, m);
    if (threads <= 1) {
        run_channels(op, 0, c, s, m, g);
        return;
    }
    /* By channel unless that leaves a thread idle for more than 1/8 of the time. */
    if (c % threads == 0 || c >= 8 * (int64_t)threads || c > BN_SPLIT_MAX_CHANNELS) {
#pragma omp parallel num_threads(threads)
        {
            /* the contiguous share schedule(static) would give this thread */
            int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            int64_t q = c / nt, r = c % nt;
            int64_t c0 = t * q + (t < r ? t : r), c1 = c0 + q + (t < r ? 1 : 0);
            run_channels(op, c0, c1, s, m, g);
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
