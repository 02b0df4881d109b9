/* The one place that chooses how an op runs: tiles, team size, work split, group size. */
#include <unistd.h>

#include "bn.h"

/* A tile holds at least this many values (channels-first) or rows (channels-last): enough to
 * amortise a kernel call and a merge, few enough tiles to keep BN_TILES_MAX partials. */
#define BN_TILE_MIN_VALUES 65536
#define BN_TILE_MIN_ROWS 512

/* Rows of at least this many values take the fused pass (bn_plan.fuse). */
#define BN_FUSE_MIN_ROW 256

/* A channels-first group spans at least this many bytes of a row: short rows are read as longer
 * runs of consecutive channels, each run's ends (a vector of two channels' values, a masked
 * store) amortised over more values, the rows' far-apart pieces longer for the prefetchers.
 * Rows the fused pass takes span a row of their own. A reduction's group spans at most
 * BN_GROUP_SLICE bytes of each input, so that its elementwise pass finds it in the core's L2 or
 * the cache behind it: on short rows the walk's per-run costs outweigh an L2 hit. */
#define BN_GROUP_ROW_BYTES_SHORT 8192
#define BN_GROUP_ROW_BYTES 1024
#define BN_GROUP_SLICE ((int64_t)2 << 20)

/* A short-row group whose elementwise pass outgrows the core's L2 is narrowed until the pass
 * fits, as long as it still spans this many bytes of a row (narrower, its runs' ends cost more
 * than the L2 saves: docs/experiments.md). */
#define BN_GROUP_ROW_BYTES_FIT 6144

#define BN_PANEL_ROW_BYTES 256

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

/* measure() once per process, cached in *slot without a lock: every thread that races to
 * measure gets the same answer. */
static int64_t cached(int64_t *slot, int64_t (*measure)(void)) {
    int64_t b = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (b == 0) {
        b = measure();
        __atomic_store_n(slot, b, __ATOMIC_RELAXED);
    }
    return b;
}

/* 2 on AMD, 1 elsewhere (cached() takes 0 for "not measured yet"). */
static int64_t measure_amd(void) {
    __builtin_cpu_init();
    return __builtin_cpu_is("amd") ? 2 : 1;
}

static int is_amd(void) {
    static int64_t amd;
    return cached(&amd, measure_amd) == 2;
}

/*
 * The last-level cache a core can use, in bytes. AMD's L3 belongs to a core complex of at most
 * 32 MiB (96 MiB with 3D V-Cache), but what the OS reports is often the whole socket's (hundreds
 * of MiB inside a VM): take at most 32 MiB there. Intel's L3 is shared by every core.
 */
static int64_t measure_llc(void) {
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    int64_t b = l3 > 0 ? (int64_t)l3 : (int64_t)32 << 20;
    return is_amd() ? min64(b, (int64_t)32 << 20) : b;
}

/* A core's L2 in bytes (1 MiB when the OS does not say). */
static int64_t measure_l2(void) {
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return l2 > 0 ? (int64_t)l2 : (int64_t)1 << 20;
}

static int64_t llc_bytes(void) {
    static int64_t bytes;
    return cached(&bytes, measure_llc);
}

static int64_t l2_bytes(void) {
    static int64_t bytes;
    return cached(&bytes, measure_l2);
}

/* The tensors an elementwise pass after a reduction reads again, and those it writes. */
static int64_t reread_inputs(const bn_io *io) {
    return (io->x != NULL) + (io->dy != NULL) + (io->act != BN_ACT_NONE && io->y != NULL);
}

static int64_t outputs(const bn_io *io) {
    return (io->out != NULL) + (io->out2 != NULL);
}

int64_t bn_tiles(int64_t m, int32_t layout, int64_t panel) {
    int64_t t = m / (layout == BN_LAYOUT_NCS ? BN_TILE_MIN_VALUES : BN_TILE_MIN_ROWS);
    int64_t most = layout == BN_LAYOUT_NCS ? BN_TILES_MAX
                                           : min64(BN_NSC_TILES_MAX, BN_TILE_PARTS / panel);
    return t < 1 ? 1 : t > most ? most : t;
}

static int64_t ncs_group(const bn_io *io, int reduce, int threads) {
    int64_t eb = bn_elem_bytes(io->dtype), row = io->s * eb;
    int64_t span = io->s >= BN_FUSE_MIN_ROW ? BN_GROUP_ROW_BYTES : BN_GROUP_ROW_BYTES_SHORT;
    int64_t g = (span + row - 1) / row;
    if (reduce) {
        int64_t slice = io->n * row;
        int64_t fit = slice > 0 ? BN_GROUP_SLICE / slice : g;
        g = min64(g, fit < 1 ? 1 : fit);
    }
    g = min64(g, (io->c + threads - 1) / threads);
    return g < 1 ? 1 : min64(g, BN_NCS_GROUP_MAX);
}

/*
 * Channels per panel of a channels-last reduction (reduced, finalized, applied together): a
 * panel's slices of the inputs its elementwise pass reads again fill at most half the last-level
 * cache, so that the pass finds them there; panels of equal size, whole vectors of channels,
 * each row's piece at least BN_PANEL_ROW_BYTES long (shorter pieces far apart cost more than the
 * cache saves), at most BN_PANEL_MAX channels (the most an elementwise pass walks whole rows of).
 */
static int64_t nsc_panel(const bn_io *io) {
    int64_t reread = reread_inputs(io);
    int64_t per_ch = io->n * io->s * bn_elem_bytes(io->dtype) * (reread > 0 ? reread : 1);
    int64_t fit = per_ch > 0 ? llc_bytes() / 2 / per_ch : io->c;
    int64_t least = BN_PANEL_ROW_BYTES / bn_elem_bytes(io->dtype);
    fit = fit < least ? least : min64(fit, BN_PANEL_MAX);
    int64_t panels = (io->c + fit - 1) / fit, p = (io->c + panels - 1) / panels;
    return min64(io->c, (p + 15) / 16 * 16);
}

bn_plan bn_plan_make(const bn_io *io, const bn_kernels *k, int what, int64_t work) {
    (void)k;
    bn_plan p;
    int reduce = what != BN_OP_APPLY;
    int64_t m = io->n * io->s, c = io->c;
    p.threads = bn_team_begin(work);
    p.panel = io->layout == BN_LAYOUT_NSC && reduce ? nsc_panel(io) : c;
    p.tiles = reduce ? bn_tiles(m, io->layout, p.panel) : 1;
    p.split = BN_BY_CHANNELS;
    p.fuse = 0;
    /* an op whose tensors do not fit in the cache together stores its outputs past it: no read
     * for ownership, no eviction of the inputs it still has to read */
    int64_t tensors = (io->x != NULL) + (io->z != NULL) + (io->dy != NULL) + (io->y != NULL) +
                      outputs(io);
    p.stream = m * c * bn_elem_bytes(io->dtype) * tensors > llc_bytes();
    p.group = c;
    if (!reduce) /* a lone elementwise pass: no tiles, no groups */
        return p;
    if (io->layout == BN_LAYOUT_NCS) {
        /* a thread per channel range unless that leaves a thread idle for more than 1/8 of
         * the time */
        int balanced = c % p.threads == 0 || c >= 8 * (int64_t)p.threads;
        if (reduce && p.threads > 1 && !balanced && c <= BN_BY_TILES_MAX_C)
            p.split = BN_BY_TILES;
        p.group = ncs_group(io, reduce, p.split == BN_BY_TILES ? 1 : p.threads);
        /* a group whose pass outgrows the core's L2 reads its inputs again from the cache
         * behind it anyway: short rows narrow it to fit (BN_GROUP_ROW_BYTES_FIT), or else, where
         * that cache holds the tensors, one pass over memory in address order after every
         * channel's reduction reads them faster than the group's short runs */
        int64_t eb = bn_elem_bytes(io->dtype);
        int64_t per_ch = io->n * io->s * eb * (reread_inputs(io) + outputs(io));
        int64_t pass = per_ch * p.group, fit = per_ch > 0 ? l2_bytes() / per_ch : p.group;
        int short_rows = io->s < BN_FUSE_MIN_ROW && outputs(io) > 0;
        int tiles_fit = p.tiles * c <= BN_TILE_PARTS && c <= BN_PANEL_MAX;
        /* AMD Zen 5 (1 MiB L2) reads short rows in address order faster than from L2-sized
         * groups once the pass's tensors outgrow the team's L2s, from L3 or from memory (not
         * the fused backwards' three inputs from memory); Intel Xeon (2 MiB) the other way
         * round (docs/experiments.md) */
        if (reduce && short_rows && tiles_fit && is_amd() &&
            per_ch * c > p.threads * l2_bytes() && (!p.stream || reread_inputs(io) <= 2)) {
            p.split = BN_BY_TILES;
            p.group = ncs_group(io, reduce, 1);
        } else if (reduce && short_rows && !p.stream && pass > l2_bytes()) {
            if (p.split == BN_BY_CHANNELS && fit * io->s * eb >= BN_GROUP_ROW_BYTES_FIT) {
                p.group = fit;
            } else if (tiles_fit) {
                p.split = BN_BY_TILES;
                p.group = ncs_group(io, reduce, 1);
            }
        }
        /* the fused pass pairs a tile's rows of two groups: tiles of whole rows; on shorter
         * rows its per-row edges cost more than the overlap gains */
        p.fuse = what == BN_OP_FUSABLE && p.split == BN_BY_CHANNELS && io->n >= p.tiles &&
                 io->s >= BN_FUSE_MIN_ROW;
    } else {
        /* whole rows in memory order when the tiles are enough to share; a few long tiles
         * are shared by channels, each thread every row's piece of its channels */
        if (reduce && (p.threads == 1 || p.tiles >= 2 * (int64_t)p.threads)) {
            p.split = BN_BY_TILES;
            p.group = min64(p.panel, BN_NSC_PIECE_MAX);
        } else {
            p.panel = c;
            p.group = min64(c, BN_NSC_PIECE_MAX);
        }
    }
    return p;
}

bn_io bn_io_make(const void *x, const void *z, const void *dy, const void *y, void *out,
                 void *out2, int64_t n, int64_t c, int64_t s, int32_t layout, int32_t dtype,
                 int32_t act) {
    /* rows of one value are the same memory in both layouts: a channel per lane; one channel is
     * the same memory in both too: one long run */
    if (s == 1)
        layout = BN_LAYOUT_NSC;
    else if (c == 1)
        layout = BN_LAYOUT_NCS;
    bn_io io = {x, z, dy, y, out, out2, n, c, s, layout, dtype, act};
    return io;
}
