/*
 * native_bench: libbatchnorm's C kernel (panama-batchnorm-c) beside plain-c (plain_bn.h) and the
 * per-shape rooflines (roofline.h), in one process, for every asked shape, layout, dtype, op,
 * thread count and cache mode (bench_common.h has the options, the cache modes and the timing
 * rule). In each group the implementations' rounds interleave, so that they see the same machine
 * load; a roofline is timed in the first group that needs it for its shape, element size, thread
 * count and cache mode.
 *
 * Before timing, check.c checks both implementations against a double-precision reference; one
 * that fails is not timed. A combination the library lacks or refuses (an older library, or a
 * BN_ERR_UNSUPPORTED_* status) prints a `# skipped:` line and no row.
 *
 * Rows: impl panama-batchnorm-c and plain-c with the op's layout; the rooflines with layout "-",
 * op read/copy/add/add3/add3x2 and impl roofline (the faster of regular and non-temporal stores).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>

#include "batchnorm.h"
#include "bench_common.h"
#include "check.h"
#include "plain_bn.h"
#include "roofline.h"
#include "tensor.h"

static const char *usage =
    "usage: native_bench [options]\n" BENCH_PLAN_USAGE
    "Times libbatchnorm (panama-batchnorm-c), plain-c and the per-shape rooflines; prints CSV rows\n"
    "shape,layout,dtype,op,impl,threads,cache,median_ns.\n";

#define PARALLEL_MIN 65536 /* values: the library's and plain-c's threshold for a team */

static void *alloc_bytes(int64_t bytes) {
    return aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
}

/* The buffers an op of k reads and writes, flushed before each call in cold mode. */
static void op_buffers(bench_buffers *b, const bench_case *k) {
    const int64_t bytes = k->sh.n * k->sh.c * k->sh.s * bench_dtype_size[k->dtype];
    const int64_t c = k->sh.c, act = bench_op_act(k->op);
    memset(b, 0, sizeof *b);
    if (bench_op_is_backward(k->op)) {
        bench_buffers_add(b, k->dy, bytes);
        bench_buffers_add(b, k->x, bytes);
        bench_buffers_add(b, act ? k->y : NULL, bytes);
        bench_buffers_add(b, k->dx, bytes);
        bench_buffers_add(b, act == 2 ? k->dz : NULL, bytes);
        bench_buffers_add(b, k->dw, c * 4);
        bench_buffers_add(b, k->db, c * 4);
    } else {
        bench_buffers_add(b, k->x, bytes);
        bench_buffers_add(b, act == 2 ? k->z : NULL, bytes);
        bench_buffers_add(b, k->y, bytes);
        bench_buffers_add(b, k->rm, c * 4);
        bench_buffers_add(b, k->rv, c * 4);
    }
    bench_buffers_add(b, k->w, c * 4);
    bench_buffers_add(b, k->b, c * 4);
    bench_buffers_add(b, k->sm, c * 8);
    bench_buffers_add(b, k->si, c * 8);
}

/* A roofline call over k's buffers: inputs x, dy, z; outputs dx, dz (never y, which a fused
 * backward reads as the fused forward's output). */
static void roof_setup(roof_call *call, bench_buffers *b, const bench_case *k, int roof,
                       int stream) {
    const int64_t count = k->sh.n * k->sh.c * k->sh.s;
    memset(call, 0, sizeof *call);
    call->roof = roof;
    call->stream = stream;
    call->threads = k->threads;
    call->parallel = count >= PARALLEL_MIN;
    call->bytes = count * bench_dtype_size[k->dtype];
    const void *in[3] = {k->x, k->dy, k->z};
    void *out[2] = {k->dx, k->dz};
    memset(b, 0, sizeof *b);
    for (int r = 0; r < roof_reads[roof]; r++) {
        call->in[r] = in[r];
        bench_buffers_add(b, in[r], call->bytes);
    }
    for (int w = 0; w < roof_writes[roof]; w++) {
        call->out[w] = out[w];
        bench_buffers_add(b, out[w], call->bytes);
    }
}

/* Runs a training forward with the op's epilogue, so that a backward has its statistics and the
 * fused forward's output y: libbatchnorm's when it can, else plain-c's. */
static int prepare_backward(bench_case *k, int ours_ok, int plain_ok) {
    const int op = k->op;
    k->op = op == OP_BACKWARD_RELU ? OP_TRAIN_RELU
            : op == OP_BACKWARD_ADD_RELU ? OP_TRAIN_ADD_RELU
                                         : OP_TRAIN;
    int ok = 0;
    if (ours_ok) {
        ours_run(k);
        ok = k->status == BN_OK;
    }
    if (!ok && plain_ok) {
        plain_run(k);
        ok = 1;
    }
    k->op = op;
    return ok;
}

/* The state of one shape's run: which rooflines are timed, which skips were printed. */
typedef struct {
    int roof_done[BENCH_MAX_LIST][BENCH_NUM_CACHES][2][ROOF_COUNT]; /* [threads][cache][16/32-bit] */
} shape_state;

static int said[IMPL_COUNT][BENCH_NUM_LAYOUTS][BENCH_NUM_DTYPES][BENCH_NUM_OPS];

static void skip_once(int impl, const bench_case *k, const char *why) {
    if (!said[impl][k->layout][k->dtype][k->op]) {
        said[impl][k->layout][k->dtype][k->op] = 1;
        printf("# skipped: %s %s %s %s: %s\n", impl_names[impl], bench_layout_names[k->layout],
               bench_dtype_names[k->dtype], bench_op_names[k->op], why);
    }
}

/* Times one (shape, layout, dtype, op, threads, cache) group and prints its rows. */
static void time_group(bench_case *k, const bench_plan *plan, int ti, int cache, int ours_ok,
                       int plain_ok, shape_state *state) {
    bench_timed group[2 + 2 * 2];
    const char *names[2 + 2 * 2];
    int roofs[2 + 2 * 2];
    roof_call calls[4];
    bench_buffers op_bufs, roof_bufs[4];
    int count = 0, num_calls = 0;
    op_buffers(&op_bufs, k);
    if (ours_ok) {
        group[count] = (bench_timed){.fn = ours_run, .ctx = k, .buffers = &op_bufs};
        names[count] = impl_names[IMPL_OURS], roofs[count++] = -1;
    }
    if (plain_ok) {
        group[count] = (bench_timed){.fn = plain_run, .ctx = k, .buffers = &op_bufs};
        names[count] = impl_names[IMPL_PLAIN], roofs[count++] = -1;
    }
    const int wide = bench_dtype_size[k->dtype] == 4;
    int *done = state->roof_done[ti][cache][wide];
    const int wanted[2] = {roof_of_op(k->op), ROOF_READ};
    for (int w = 0; w < 2; w++) {
        const int roof = wanted[w];
        if (done[roof])
            continue;
        for (int stream = 0; stream <= (roof_writes[roof] > 0); stream++) {
            roof_setup(&calls[num_calls], &roof_bufs[num_calls], k, roof, stream);
            group[count] = (bench_timed){.fn = roof_run, .ctx = &calls[num_calls],
                                         .buffers = &roof_bufs[num_calls]};
            names[count] = "roofline", roofs[count++] = roof;
            num_calls++;
        }
    }
    if (count == 0)
        return;
    double med[2 + 2 * 2];
    bn_set_num_threads(k->threads);
    bench_time_group(group, count, plan, cache, med);
    const char *layout = bench_layout_names[k->layout], *dtype = bench_dtype_names[k->dtype];
    const char *op = bench_op_names[k->op];
    for (int g = 0; g < count; g++) {
        if (roofs[g] >= 0) {
            const int roof = roofs[g];
            if (done[roof])
                continue;
            double best = med[g];
            if (roof_writes[roof] > 0) { /* the two store kinds are adjacent: the faster counts */
                best = med[g] < med[g + 1] ? med[g] : med[g + 1];
                printf("# roofline %s %s %s threads %d %s: %.0f ns regular stores, %.0f ns "
                       "non-temporal\n", roof_names[roof], k->sh.text, dtype, k->threads,
                       bench_cache_names[cache], med[g], med[g + 1]);
            }
            done[roof] = 1;
            bench_print_row(&k->sh, "-", dtype, roof_names[roof], "roofline", k->threads, cache,
                            best);
        } else if (g == 0 && ours_ok && k->status != BN_OK) {
            printf("# skipped: %s %s %s %s threads %d: a timed call failed: %s\n", names[g],
                   layout, dtype, op, k->threads, bn_status_message(k->status));
        } else {
            bench_print_row(&k->sh, layout, dtype, op, names[g], k->threads, cache, med[g]);
        }
    }
}

static int run_shape(bench_shape *sh, const bench_plan *plan, int max_threads, int have_plain,
                     int passed[IMPL_COUNT][BENCH_NUM_LAYOUTS][BENCH_NUM_DTYPES][BENCH_NUM_OPS]) {
    bench_case k;
    memset(&k, 0, sizeof k);
    k.sh = *sh;
    const int64_t count = sh->n * sh->c * sh->s, c = sh->c;
    void **tensors[] = {&k.x, &k.z, &k.y, &k.dy, &k.dx, &k.dz};
    float **chan[] = {&k.w, &k.b, &k.rm, &k.rv, &k.dw, &k.db};
    int ok = 1;
    for (int t = 0; t < 6; t++)
        ok &= (*tensors[t] = alloc_bytes(count * 4)) != NULL;
    for (int t = 0; t < 6; t++)
        ok &= (*chan[t] = alloc_bytes(c * 4)) != NULL;
    ok &= (k.sm = alloc_bytes(c * 8)) != NULL && (k.si = alloc_bytes(c * 8)) != NULL;
    ok &= (k.scratch = alloc_bytes(3 * (int64_t)max_threads * c * 8)) != NULL;
    if (!ok) {
        fprintf(stderr, "native_bench: cannot allocate the buffers of %s\n", sh->text);
        return 1;
    }
    for (int t = 0; t < 6; t++) /* first touch, so that no timed call takes a page fault */
        memset(*tensors[t], 0, (size_t)(count * 4));
    shape_state *state = calloc(1, sizeof *state);
    for (int l = 0; l < BENCH_NUM_LAYOUTS; l++)
        for (int d = 0; d < BENCH_NUM_DTYPES; d++) {
            if (!plan->layouts[l] || !plan->dtypes[d])
                continue;
            k.layout = l, k.dtype = d;
            tensor_fill(&k);
            for (int op = 0; op < BENCH_NUM_OPS; op++) {
                if (!plan->ops[op])
                    continue;
                k.op = op;
                const char *why = NULL;
                int ours_ok = ours_available(&k, &why);
                if (!ours_ok)
                    skip_once(IMPL_OURS, &k, why);
                else if (!passed[IMPL_OURS][l][d][op])
                    skip_once(IMPL_OURS, &k, "it failed the correctness check"), ours_ok = 0;
                int plain_ok = d == DTYPE_F32 && have_plain && passed[IMPL_PLAIN][l][d][op];
                if (d == DTYPE_F32 && have_plain && !plain_ok)
                    skip_once(IMPL_PLAIN, &k, "it failed the correctness check");
                for (int ti = 0; ti < plan->num_threads; ti++) {
                    k.threads = plan->threads[ti];
                    bn_set_num_threads(k.threads);
                    if (ours_ok) { /* the library may refuse the layout or type */
                        if (bench_op_is_backward(op))
                            prepare_backward(&k, 1, 0);
                        ours_run(&k);
                        if (k.status != BN_OK) {
                            skip_once(IMPL_OURS, &k, bn_status_message(k.status));
                            ours_ok = 0;
                        }
                    }
                    if (bench_op_is_backward(op))
                        prepare_backward(&k, ours_ok, plain_ok);
                    for (int cache = 0; cache < BENCH_NUM_CACHES; cache++)
                        if (plan->caches[cache])
                            time_group(&k, plan, ti, cache, ours_ok, plain_ok, state);
                }
            }
        }
    free(state);
    void *all[] = {k.x, k.z, k.y, k.dy, k.dx, k.dz, k.w, k.b, k.rm, k.rv, k.dw, k.db,
                   k.sm, k.si, k.scratch};
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++)
        free(all[t]);
    return 0;
}

int main(int argc, char **argv) {
    bench_plan plan;
    int parsed = bench_parse_plan(&plan, argc, argv, usage, NULL);
    if (parsed != 0)
        return parsed == 1 ? 0 : 2;
    int max_threads = 1;
    for (int t = 0; t < plan.num_threads; t++)
        max_threads = plan.threads[t] > max_threads ? plan.threads[t] : max_threads;
    const int have_plain = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    printf("# native_bench: median of %d rounds of >= %.0f ms (warm), cold calls flushed with %s\n",
           plan.rounds, (double)plan.min_round_ns / 1e6, bench_flush_instruction());
    printf("# isa: %s\n", ours_isa());
    printf("# roofline vectors: %s\n", roof_isa());
    if (!have_plain)
        printf("# skipped: plain-c: built for x86-64-v3, and this CPU lacks AVX2 or FMA\n");
    printf("shape,layout,dtype,op,impl,threads,cache,median_ns\n");
    int passed[IMPL_COUNT][BENCH_NUM_LAYOUTS][BENCH_NUM_DTYPES][BENCH_NUM_OPS];
    check_all(&plan, max_threads, have_plain, passed);
    for (int s = 0; s < plan.num_shapes; s++)
        if (run_shape(&plan.shapes[s], &plan, max_threads, have_plain, passed) != 0)
            return 1;
    return 0;
}
