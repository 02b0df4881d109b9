/*
 * Runs a plan: the phases of an op (reduce every tile, merge the tiles in order, finalize each
 * channel, apply the elementwise pass) on a team of threads or on the calling thread alone. The
 * serial and parallel runs call the same functions with (thread, team size) = (0, 1) or their
 * place in the team: one implementation for every size of tensor.
 */
#include <math.h>
#include <omp.h>
#include <stddef.h>

#include "bn.h"

/* Channels whose elementwise constants are prepared at once (stack arrays). */
#define BN_WINDOW BN_NSC_PIECE_MAX


typedef struct {
    double mean[BN_WINDOW], a[BN_WINDOW], b[BN_WINDOW], k[BN_WINDOW];
} coef_buf;

static bn_coef coef_at(coef_buf *buf) {
    bn_coef k = {buf->mean, buf->a, buf->b, buf->k, NULL};
    return k;
}

/* Constants of a row of up to BN_NSC_ROW_MAX channels: a channels-last elementwise pass's, or a
 * by-tiles panel's. */
typedef struct {
    double mean[BN_NSC_ROW_MAX], a[BN_NSC_ROW_MAX], b[BN_NSC_ROW_MAX], k[BN_NSC_ROW_MAX];
} row_coef;

static bn_coef row_coef_at(row_coef *buf) {
    bn_coef k = {buf->mean, buf->a, buf->b, buf->k, NULL};
    return k;
}

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

/* Thread t's share [*b, *e) of `total` items out of nt, boundaries on multiples of unit. */
static void share(int64_t total, int t, int nt, int64_t unit, int64_t *b, int64_t *e) {
    int64_t units = (total + unit - 1) / unit, q = units / nt, r = units % nt;
    int64_t u0 = t * q + (t < r ? t : r), u1 = u0 + q + (t < r ? 1 : 0);
    *b = min64(u0 * unit, total);
    *e = min64(u1 * unit, total);
}

static void barrier(int nt) {
    if (nt > 1) {
#pragma omp barrier
    }
}

/* ---- reduce, merge, finalize ---- */

/* Tile t of every channel: values (channels-first; whole rows when there are rows enough, so
 * that rows can be taken side by side) or rows (channels-last) [*f0, *f1). A function of the
 * shape alone. */
static void tile_bounds(const bn_io *io, int64_t tiles, int64_t t, int64_t *f0, int64_t *f1) {
    if (io->layout == BN_LAYOUT_NCS && io->n >= tiles) {
        bn_tile(io->n, tiles, t, f0, f1);
        *f0 *= io->s;
        *f1 *= io->s;
        return;
    }
    bn_tile(io->n * io->s, tiles, t, f0, f1);
}

/* Channel ch's reference for op's reduction: its shift (its first value, or 0 when that is not
 * finite: sums about a value of the data stay small when |mean| >> spread) or its mean. */
static double op_ref(const bn_op *op, int64_t ch) {
    if (op->mode == BN_REDUCE_MOMENTS) {
        int64_t i = op->io.layout == BN_LAYOUT_NCS ? ch * op->io.s : ch;
        double v = bn_elem_value(op->io.x, i, op->io.dtype);
        return isfinite(v) ? v : 0.0;
    }
    return op->grad->mean ? op->grad->mean[ch] : (double)op->grad->running_mean[ch];
}

/* Tile [f0, f1) of channels [ch, ch+g) into out[0..g). */
static void reduce_tile(const bn_op *op, const bn_plan *p, const bn_kernels *k, bn_sums *out,
                        const double *ref, int64_t ch, int64_t g, int64_t f0, int64_t f1) {
    if (op->io.layout == BN_LAYOUT_NCS)
        k->reduce_ncs(out, &op->io, ref, op->mode, ch, g, f0, f1, p->stream);
    else
        k->reduce_nsc(out, &op->io, ref, op->mode, ch, g, f0, f1);
}

/* A channel's merged tiles: moments (BN_REDUCE_MOMENTS) or gradient sums. */
typedef struct {
    bn_moments mo;
    bn_sums su;
} merged;

static merged merged_zero(void) {
    merged r = {{0.0, 0.0, 0.0}, {0.0, 0.0}};
    return r;
}

/* The next tile (of `count` values) of a channel, in tile order. */
static void merge_tile(const bn_op *op, merged *acc, bn_sums t, double count) {
    if (op->mode == BN_REDUCE_MOMENTS) {
        acc->mo = bn_moments_merge(acc->mo, bn_moments_of(t, count));
    } else {
        acc->su.s += t.s;
        acc->su.q += t.q;
    }
}

/* Channels [ch, ch+g)'s outputs from their merged tiles r[0..g) about ref[0..g); their
 * elementwise constants into k[0..g). g <= BN_WINDOW. */
static void finalize(const bn_op *op, int64_t ch, int64_t g, const double *ref, const merged *r,
                     const bn_coef *k) {
    double mean[BN_WINDOW], m2[BN_WINDOW];
    bn_sums su[BN_WINDOW];
    switch (op->fin) {
    case BN_FIN_TRAIN:
        for (int64_t j = 0; j < g; j++) {
            mean[j] = ref[j] + r[j].mo.mean;
            m2[j] = r[j].mo.m2;
        }
        /* every channel has the same count */
        if (g > 0)
            bn_finalize_train(op->train, ch, g, mean, m2, r[0].mo.n, k);
        break;
    case BN_FIN_STATS:
        for (int64_t j = 0; j < g; j++) {
            op->mean_out[ch + j] = ref[j] + r[j].mo.mean;
            op->m2_out[ch + j] = r[j].mo.m2;
        }
        break;
    case BN_FIN_GRADS:
        for (int64_t j = 0; j < g; j++)
            su[j] = r[j].su;
        bn_finalize_grads(op->grad, ch, g, su, op->kind >= 0 ? k : NULL);
        break;
    case BN_FIN_EVAL_GRADS:
        for (int64_t j = 0; j < g; j++)
            bn_finalize_eval_grads(op->grad, ch + j, r[j].su, k, j);
        break;
    }
}

/* The tensors of op's elementwise pass. */
static const bn_io *pass_io(const bn_op *op) {
    return op->pass ? op->pass : &op->io;
}

/* The elementwise pass over every value of channels [ch, ch+g), constants in k[0..g). */
static void apply_channels(const bn_op *op, const bn_kernels *k, const bn_coef *kc, int64_t ch,
                           int64_t g, int stream) {
    const bn_io *io = pass_io(op);
    if (io->layout == BN_LAYOUT_NCS)
        k->apply_ncs(io, kc, op->kind, ch, g, 0, io->n, 0, io->s, stream);
    else
        k->apply_nsc(io, kc, op->kind, ch, g, 0, io->n * io->s, stream);
}

/* One group's reduction state: references, the merged tiles so far, and its constants. */
typedef struct {
    double ref[BN_WINDOW];
    merged acc[BN_WINDOW];
    coef_buf cb;
} group_state;

static void group_begin(const bn_op *op, group_state *gs, int64_t ch, int64_t g) {
    for (int64_t j = 0; j < g; j++) {
        gs->ref[j] = op_ref(op, ch + j);
        gs->acc[j] = merged_zero();
    }
}

static void group_merge(const bn_op *op, group_state *gs, const bn_sums *part, int64_t g,
                        int64_t f0, int64_t f1) {
    for (int64_t j = 0; j < g; j++)
        merge_tile(op, &gs->acc[j], part[j], (double)(f1 - f0));
}

static void group_finalize(const bn_op *op, group_state *gs, int64_t ch, int64_t g) {
    bn_coef kc = coef_at(&gs->cb);
    finalize(op, ch, g, gs->ref, gs->acc, &kc);
}

/* Every tile of channels [ch, ch+g), merged in tile order, then finalized. */
static void group_reduce(const bn_op *op, const bn_plan *p, const bn_kernels *k, group_state *gs,
                         int64_t ch, int64_t g) {
    bn_sums part[BN_WINDOW];
    group_begin(op, gs, ch, g);
    for (int64_t t = 0; t < p->tiles; t++) {
        int64_t f0, f1;
        tile_bounds(&op->io, p->tiles, t, &f0, &f1);
        reduce_tile(op, p, k, part, gs->ref, ch, g, f0, f1);
        group_merge(op, gs, part, g, f0, f1);
    }
    group_finalize(op, gs, ch, g);
}

/* The reduction of group nx (channels [cn, cn+g)) fused with the elementwise pass of group cur
 * (channels [cc, cc+g), finalized), tile by tile (tiles of whole rows); then nx is finalized. */
static void group_fused(const bn_op *op, const bn_plan *p, const bn_kernels *k, group_state *nx,
                        int64_t cn, group_state *cur, int64_t cc, int64_t g) {
    bn_sums part[BN_WINDOW];
    bn_coef kc = coef_at(&cur->cb);
    group_begin(op, nx, cn, g);
    for (int64_t t = 0; t < p->tiles; t++) {
        int64_t f0, f1;
        tile_bounds(&op->io, p->tiles, t, &f0, &f1);
        k->fused_ncs(part, &op->io, nx->ref, cn, &kc, cc, g, f0 / op->io.s,
                     f1 / op->io.s, p->stream);
        group_merge(op, nx, part, g, f0, f1);
    }
    group_finalize(op, nx, cn, g);
}

/*
 * By channels: channels [c0, c1) on this thread, p->group at a time: every tile of the group in
 * order, merged as it comes, then finalized, then (when the op has one) the group's elementwise
 * pass, which finds the group's data still in the core's cache. With p->fuse, that pass runs in
 * the same loop as the next group's reduction (group_fused).
 */
static void run_channels(const bn_op *op, const bn_plan *p, const bn_kernels *k, int64_t c0,
                         int64_t c1) {
    group_state st[2];
    int cur = 0;
    int64_t ch = c0, g = min64(p->group, c1 - c0);
    if (ch < c1)
        group_reduce(op, p, k, &st[cur], ch, g);
    while (ch < c1) {
        int64_t cn = ch + g, gn = min64(p->group, c1 - cn);
        if (p->fuse && op->kind >= 0 && gn == g) {
            group_fused(op, p, k, &st[1 - cur], cn, &st[cur], ch, g);
        } else {
            if (op->kind >= 0) {
                bn_coef kc = coef_at(&st[cur].cb);
                apply_channels(op, k, &kc, ch, g, p->stream);
            }
            if (gn > 0)
                group_reduce(op, p, k, &st[1 - cur], cn, gn);
        }
        cur = 1 - cur;
        ch = cn;
        g = gn;
    }
}

_Static_assert(BN_TILES_MAX * BN_BY_TILES_MAX_C <= BN_TILE_PARTS &&
                   BN_BY_TILES_MAX_C <= BN_PANEL_MAX && BN_PANEL_MAX <= BN_NSC_ROW_MAX,
               "a by-tiles panel fits the shared partials and constants");

/* What the by-tiles schedule's threads share: a partial per (tile, channel of the panel), and
 * the constants of two panels (a thread may finalize the next panel while another still applies
 * this one). */
typedef struct {
    bn_sums part[BN_TILE_PARTS]; /* tile t, channel j of the panel at [t * panel + j] */
    row_coef coef[2];
} tiles_shared;

static void apply_share(const bn_io *io, int kind, const bn_kernels *k, int stream,
                        const bn_coef *all, bn_consts_fn consts, const void *ctx, int t, int nt);

/* The (tile, channel group) pieces of panel [p0, p0+pc), shared among the team. */
static void panel_reduce(const bn_op *op, const bn_plan *p, const bn_kernels *k,
                         tiles_shared *sh, int64_t p0, int64_t pc, int t, int nt) {
    double ref[BN_NSC_PIECE_MAX];
    int64_t g = min64(p->group, pc), groups = (pc + g - 1) / g, u0, u1;
    share(p->tiles * groups, t, nt, 1, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t tile = u / groups, j = u % groups * g, gj = min64(g, pc - j), f0, f1;
        for (int64_t l = 0; l < gj; l++)
            ref[l] = op_ref(op, p0 + j + l);
        tile_bounds(&op->io, p->tiles, tile, &f0, &f1);
        reduce_tile(op, p, k, sh->part + tile * pc + j, ref, p0 + j, gj, f0, f1);
    }
}

/* Each channel of the panel: its tiles merged in order, then finalized (constants into kc). */
static void panel_finalize(const bn_op *op, const bn_plan *p, tiles_shared *sh, const bn_coef *kc,
                           int64_t p0, int64_t pc, int t, int nt) {
    double ref[BN_WINDOW];
    merged acc[BN_WINDOW];
    int64_t c0, c1;
    share(pc, t, nt, 1, &c0, &c1);
    for (int64_t j0 = c0; j0 < c1; j0 += BN_WINDOW) {
        int64_t g = min64(BN_WINDOW, c1 - j0);
        for (int64_t j = 0; j < g; j++) {
            ref[j] = op_ref(op, p0 + j0 + j);
            acc[j] = merged_zero();
        }
        for (int64_t tile = 0; tile < p->tiles; tile++) {
            int64_t f0, f1;
            tile_bounds(&op->io, p->tiles, tile, &f0, &f1);
            for (int64_t j = 0; j < g; j++)
                merge_tile(op, &acc[j], sh->part[tile * pc + j0 + j], (double)(f1 - f0));
        }
        bn_coef kj = bn_coef_from(kc, j0);
        finalize(op, p0 + j0, g, ref, acc, &kj);
    }
}

/* The panel's elementwise pass: channels-last rows shared among the team. */
static void panel_apply(const bn_op *op, const bn_plan *p, const bn_kernels *k, const bn_coef *kc,
                        int64_t p0, int64_t pc, int t, int nt) {
    const bn_io *io = pass_io(op);
    int64_t r0, r1;
    if (io->layout == BN_LAYOUT_NCS) {
        apply_share(io, op->kind, k, p->stream, kc, NULL, NULL, t, nt);
        return;
    }
    share(io->n * io->s, t, nt, 1, &r0, &r1);
    if (r0 < r1)
        k->apply_nsc(io, kc, op->kind, p0, pc, r0, r1, p->stream);
}

/*
 * By tiles, a panel of channels at a time: the panel's (tile, channel group) pieces shared among
 * the team, each partial kept; then each channel merges its tiles in order and is finalized;
 * then the panel's elementwise pass.
 */
static void run_tiles(const bn_op *op, const bn_plan *p, const bn_kernels *k, tiles_shared *sh,
                      int t, int nt) {
    int64_t c = op->io.c;
    for (int64_t p0 = 0, i = 0; p0 < c; p0 += p->panel, i++) {
        int64_t pc = min64(p->panel, c - p0);
        bn_coef kc = row_coef_at(&sh->coef[i % 2]);
        panel_reduce(op, p, k, sh, p0, pc, t, nt);
        barrier(nt);
        panel_finalize(op, p, sh, &kc, p0, pc, t, nt);
        if (op->kind >= 0) {
            barrier(nt);
            panel_apply(op, p, k, &kc, p0, pc, t, nt);
        } else if (p0 + pc < c) {
            barrier(nt);
        }
    }
}

static void run_reduce_on(const bn_op *op, const bn_plan *p, const bn_kernels *k,
                          tiles_shared *sh, int t, int nt) {
    if (p->split == BN_BY_TILES) {
        run_tiles(op, p, k, sh, t, nt);
        return;
    }
    /* channels-last threads take whole vectors of channels */
    int64_t c0, c1, unit = op->io.layout == BN_LAYOUT_NSC ? BN_NSC_THREAD_CHANNELS : 1;
    share(op->io.c, t, nt, unit, &c0, &c1);
    run_channels(op, p, k, c0, c1);
}

static void run_reduce_team(const bn_op *op, const bn_plan *p, const bn_kernels *k,
                            tiles_shared *sh) {
#pragma omp parallel num_threads(p->threads)
    run_reduce_on(op, p, k, sh, omp_get_thread_num(), omp_get_num_threads());
}

/* The by-tiles schedule's shared state lives in this frame only (its stack is not small). */
static void run_reduce_tiles(const bn_op *op, const bn_plan *p, const bn_kernels *k) {
    tiles_shared sh;
    if (p->threads <= 1)
        run_tiles(op, p, k, &sh, 0, 1);
    else
        run_reduce_team(op, p, k, &sh);
}

void bn_run_reduce(const bn_op *op, const bn_plan *p, const bn_kernels *k) {
    if (p->split == BN_BY_TILES)
        run_reduce_tiles(op, p, k);
    else if (p->threads <= 1)
        run_reduce_on(op, p, k, NULL, 0, 1);
    else
        run_reduce_team(op, p, k, NULL);
}

/* ---- elementwise passes ---- */

/*
 * Constants of channels [ch, ch+g) for an elementwise pass: a view into `all` (every channel's,
 * prepared by the caller), or computed into store's arrays (which hold at least g).
 */
static bn_coef window_coef(const bn_coef *all, bn_consts_fn consts, const void *ctx,
                           bn_coef store, int64_t ch, int64_t g) {
    if (all)
        return bn_coef_from(all, ch);
    consts(ctx, &store, ch, g);
    return store;
}

/* Channels [c0, c1) of rows [r0, r1), columns [i0, i1), window by window of channels (each
 * window's constants prepared once for all its rows). */
static void apply_block(const bn_io *io, int kind, const bn_kernels *k, int stream,
                        const bn_coef *all, bn_consts_fn consts, const void *ctx, coef_buf *buf,
                        int64_t r0, int64_t r1, int64_t c0, int64_t c1, int64_t i0, int64_t i1) {
    for (int64_t ch = c0; r0 < r1 && ch < c1; ch += BN_WINDOW) {
        int64_t g = min64(BN_WINDOW, c1 - ch);
        bn_coef kc = window_coef(all, consts, ctx, coef_at(buf), ch, g);
        k->apply_ncs(io, &kc, kind, ch, g, r0, r1, i0, i1, stream);
    }
}

/* Channels-first: units are (row, channel) runs of S values, a contiguous range of them per
 * thread (a partial first row, whole rows, a partial last row); or, with fewer runs than the
 * team can share, every run's columns. */
static void apply_share_ncs(const bn_io *io, int kind, const bn_kernels *k, int stream,
                            const bn_coef *all, bn_consts_fn consts, const void *ctx, int t,
                            int nt) {
    coef_buf buf;
    int64_t c = io->c, s = io->s, u0, u1;
    /* with every channel's constants at hand, prepare them once per thread */
    bn_coef whole;
    if (!all && c <= BN_WINDOW) {
        whole = window_coef(NULL, consts, ctx, coef_at(&buf), 0, c);
        all = &whole;
    }
    if (io->n * c < 4 * (int64_t)nt) {
        int64_t i0, i1;
        share(s, t, nt, 16, &i0, &i1);
        if (i0 < i1)
            apply_block(io, kind, k, stream, all, consts, ctx, &buf, 0, io->n, 0, c, i0, i1);
        return;
    }
    share(io->n * c, t, nt, 1, &u0, &u1);
    if (u0 >= u1)
        return;
    int64_t ra = u0 / c, ca = u0 % c, rb = u1 / c, cb = u1 % c;
    if (ra == rb) {
        apply_block(io, kind, k, stream, all, consts, ctx, &buf, ra, ra + 1, ca, cb, 0, s);
        return;
    }
    if (ca > 0) {
        apply_block(io, kind, k, stream, all, consts, ctx, &buf, ra, ra + 1, ca, c, 0, s);
        ra++;
    }
    apply_block(io, kind, k, stream, all, consts, ctx, &buf, ra, rb, 0, c, 0, s);
    if (cb > 0)
        apply_block(io, kind, k, stream, all, consts, ctx, &buf, rb, rb + 1, 0, cb, 0, s);
}

static void apply_share(const bn_io *io, int kind, const bn_kernels *k, int stream,
                        const bn_coef *all, bn_consts_fn consts, const void *ctx, int t, int nt) {
    if (io->layout == BN_LAYOUT_NCS) {
        apply_share_ncs(io, kind, k, stream, all, consts, ctx, t, nt);
        return;
    }
    /* channels-last: up to BN_NSC_ROW_MAX channels of each row at a time, so that rows of
     * up to that many are walked whole, in memory order */
    row_coef buf;
    int64_t r0, r1;
    share(io->n * io->s, t, nt, 1, &r0, &r1);
    for (int64_t ch = 0; r0 < r1 && ch < io->c; ch += BN_NSC_ROW_MAX) {
        int64_t g = min64(BN_NSC_ROW_MAX, io->c - ch);
        bn_coef kc = window_coef(all, consts, ctx, row_coef_at(&buf), ch, g);
        k->apply_nsc(io, &kc, kind, ch, g, r0, r1, stream);
    }
}

void bn_run_apply(const bn_io *io, int kind, bn_consts_fn consts, const void *ctx,
                  const bn_plan *p, const bn_kernels *k) {
    if (p->threads <= 1) {
        apply_share(io, kind, k, p->stream, NULL, consts, ctx, 0, 1);
        return;
    }
#pragma omp parallel num_threads(p->threads)
    apply_share(io, kind, k, p->stream, NULL, consts, ctx, omp_get_thread_num(),
                omp_get_num_threads());
}

/*
 * A backward through Add+ReLU whose elementwise pass reads its inputs again from beyond the
 * core's L2 (by tiles, channels-last): the reduction, which reads dy and y anyway, writes dz (the
 * masked gradient g itself) and the pass reads g and x alone, one input fewer, and no longer
 * writes dz. A channels-first group by channels finds its inputs in L2, and there the
 * reduction's stores only add reads for ownership to a walk bound by its reads; so they do where
 * the pass stores past the cache (p->stream), which writes dz without one. Without dz, the
 * same trick (g kept in dx) moves a read for ownership but saves no traffic, and measured slower
 * as often as faster. Same values: g is exact in every type.
 */
static bn_op keep_gradient(const bn_op *op, const bn_plan *p, bn_io *pass) {
    const bn_io *io = &op->io;
    bn_op r = *op;
    if (op->mode != BN_REDUCE_GRADS || io->act != BN_ACT_ADD_RELU || op->kind < 0 ||
        io->out2 == NULL)
        return r;
    if ((io->layout == BN_LAYOUT_NCS && p->split == BN_BY_CHANNELS) || p->stream)
        return r;
    *pass = bn_io_make(io->x, NULL, io->out2, NULL, io->out, NULL, io->n, io->c, io->s,
                       io->layout, io->dtype, BN_ACT_NONE);
    r.io.out = io->out2;
    r.io.out2 = NULL;
    r.mode = BN_REDUCE_GRADS_KEEP;
    r.kind = pass->out ? op->kind : -1;
    r.pass = pass;
    return r;
}

void bn_reduce(const bn_op *op) {
    const bn_kernels *k = bn_kernels_select();
    /* the training forward only: the backward's second input stream makes two of its groups
     * outgrow the core's L2, and its phases one after the other were as fast on AMD Zen 5 and
     * faster on Intel Xeon */
    int fusable = op->mode == BN_REDUCE_MOMENTS && op->kind == BN_APPLY_NORMALIZE;
    bn_plan p = bn_plan_make(&op->io, k, fusable ? BN_OP_FUSABLE : BN_OP_REDUCE,
                             op->io.n * op->io.c * op->io.s);
    bn_io pass;
    bn_op run = keep_gradient(op, &p, &pass);
    bn_run_reduce(&run, &p, k);
    bn_team_end(p.threads);
}

void bn_apply(const bn_io *io, int kind, bn_consts_fn consts, const void *ctx) {
    const bn_kernels *k = bn_kernels_select();
    /* a lone elementwise pass needs twice a reduction's work to pay for a team */
    bn_plan p = bn_plan_make(io, k, BN_OP_APPLY, io->n * io->c * io->s / 2);
    bn_run_apply(io, kind, consts, ctx, &p, k);
    bn_team_end(p.threads);
}
