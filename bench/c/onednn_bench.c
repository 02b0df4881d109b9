/*
 * oneDNN's batch normalization (Debian's libdnnl-dev, oneDNN 2.6), timed the way every peer of
 * scripts/bench.sh is (bench_common.h: options, cache modes, timing rule).
 *
 *   layouts  nchw and nhwc (oneDNN's plain tags; impl onednn), and oneDNN's own blocked layout,
 *            nChw16c on CPUs with AVX-512 and nChw8c otherwise (impl onednn-nChw16c or
 *            onednn-nChw8c, rows under layout nchw: the tuned-kernel reference a user gets by
 *            keeping tensors in oneDNN's format; reorders are not timed)
 *   dtypes   f32, and bf16/f16 where this oneDNN runs them on this CPU (a `# skipped:` line
 *            otherwise); scale, shift and the statistics stay f32
 *   ops      forward_train  dnnl_forward_training with scale+shift, batch statistics out, then
 *                           the running-statistics update PyTorch does (C values)
 *            forward_eval   dnnl_forward_inference with the running statistics
 *            backward       dnnl_backward from the training statistics: diff src, scale, shift
 *            forward_train_relu, backward_relu   the same with dnnl_fuse_norm_relu (the fused
 *                           forward's workspace holds the ReLU mask for backward)
 *            forward_train_add_relu, backward_add_relu   no such fusion in oneDNN 2.6: skipped
 *
 * Debian builds oneDNN with the OpenMP runtime, so the thread count is omp_set_num_threads, set
 * before the primitives are created.
 */
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "bench_common.h"

static const char *usage =
    "usage: onednn_bench [options]\n" BENCH_PLAN_USAGE
    "Times oneDNN's batch normalization on plain nchw/nhwc and its blocked layout; prints CSV\n"
    "rows shape,layout,dtype,op,impl,threads,cache,median_ns.\n";

#define EPS 1e-5f
#define MOMENTUM 0.1

enum { FMT_NCHW, FMT_NHWC, FMT_BLOCKED, NUM_FMTS };

/* One (shape, format, dtype) configuration's buffers: data tensors sized by oneDNN's memory
 * descriptor (the blocked one pads C), per-channel float arrays (C). */
typedef struct {
    dnnl_memory_desc_t md;
    int64_t c, m;
    void *x, *y, *dy, *dx, *ws;
    size_t data_bytes, ws_bytes;
    float *scale, *shift, *mean, *var, *dscale, *dshift, *running_mean, *running_var;
} config;

/* One timed execution: the primitive, its arguments, the buffers to flush in cold mode. */
typedef struct {
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    int nargs;
    dnnl_exec_arg_t args[12];
    dnnl_memory_t mems[12];
    bench_buffers buffers;
    config *cfg; /* forward_train: the running-statistics update after the primitive */
    int update_running;
    dnnl_status_t status; /* the first failure of an execution, checked after timing */
} run_ctx;

static void run(void *p) {
    run_ctx *r = p;
    dnnl_status_t st = dnnl_primitive_execute(r->prim, r->stream, r->nargs, r->args);
    if (st == dnnl_success)
        st = dnnl_stream_wait(r->stream);
    if (st != dnnl_success && r->status == dnnl_success)
        r->status = st;
    if (r->update_running) {
        config *c = r->cfg;
        const double unbias = (double)c->m / (double)(c->m - 1);
        for (int64_t k = 0; k < c->c; k++) {
            c->running_mean[k] = (float)((1 - MOMENTUM) * c->running_mean[k] + MOMENTUM * c->mean[k]);
            c->running_var[k] =
                (float)((1 - MOMENTUM) * c->running_var[k] + MOMENTUM * c->var[k] * unbias);
        }
    }
}

static void *alloc_bytes(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (p != NULL)
        memset(p, 0, (bytes + 63) / 64 * 64);
    return p;
}

/* Deterministic values in [-2, 2), as f32 or rounded to bf16/f16 (by truncation: the values'
 * exact bits do not matter to the timing). */
static void fill(void *v, size_t bytes, dnnl_data_type_t dt, uint32_t seed) {
    uint32_t state = seed;
    const size_t count = bytes / (dt == dnnl_f32 ? 4 : 2);
    for (size_t i = 0; i < count; i++) {
        state = state * 1664525u + 1013904223u;
        float f = (float)(state >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
        if (dt == dnnl_f32) {
            ((float *)v)[i] = f;
        } else if (dt == dnnl_bf16) {
            uint32_t u;
            memcpy(&u, &f, 4);
            ((uint16_t *)v)[i] = (uint16_t)(u >> 16);
        } else {
            _Float16 h = (_Float16)f;
            memcpy((uint16_t *)v + i, &h, 2);
        }
    }
}

static float *channel_floats(int64_t c, float value) {
    float *p = alloc_bytes((size_t)c * sizeof(float));
    for (int64_t i = 0; p != NULL && i < c; i++)
        p[i] = value;
    return p;
}

static void config_free(config *cf) {
    void *all[] = {cf->x, cf->y, cf->dy, cf->dx, cf->ws, cf->scale, cf->shift, cf->mean,
                   cf->var, cf->dscale, cf->dshift, cf->running_mean, cf->running_var};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    memset(cf, 0, sizeof *cf);
}

static int config_init(config *cf, const bench_shape *sh, dnnl_format_tag_t tag,
                       dnnl_data_type_t dt) {
    memset(cf, 0, sizeof *cf);
    dnnl_dims_t dims;
    for (int i = 0; i < sh->rank; i++)
        dims[i] = sh->dims[i];
    if (dnnl_memory_desc_init_by_tag(&cf->md, sh->rank, dims, dt, tag) != dnnl_success)
        return 1;
    cf->c = sh->c;
    cf->m = sh->n * sh->s;
    cf->data_bytes = dnnl_memory_desc_get_size(&cf->md);
    cf->x = alloc_bytes(cf->data_bytes);
    cf->y = alloc_bytes(cf->data_bytes);
    cf->dy = alloc_bytes(cf->data_bytes);
    cf->dx = alloc_bytes(cf->data_bytes);
    cf->scale = channel_floats(cf->c, 1.5f);
    cf->shift = channel_floats(cf->c, 0.25f);
    cf->mean = channel_floats(cf->c, 0);
    cf->var = channel_floats(cf->c, 1);
    cf->dscale = channel_floats(cf->c, 0);
    cf->dshift = channel_floats(cf->c, 0);
    cf->running_mean = channel_floats(cf->c, 0);
    cf->running_var = channel_floats(cf->c, 1);
    if (!cf->x || !cf->y || !cf->dy || !cf->dx || !cf->scale || !cf->shift || !cf->mean ||
        !cf->var || !cf->dscale || !cf->dshift || !cf->running_mean || !cf->running_var)
        return 1;
    fill(cf->x, cf->data_bytes, dt, 1);
    fill(cf->dy, cf->data_bytes, dt, 2);
    return 0;
}

/* Binds host buffer `data` as argument `arg`, with the descriptor the primitive expects. */
static int bind(run_ctx *r, const_dnnl_primitive_desc_t pd, dnnl_engine_t engine, int arg,
                void *data) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    if (md == NULL || md->ndims == 0 || data == NULL)
        return 1;
    if (dnnl_memory_create(&r->mems[r->nargs], md, engine, data) != dnnl_success)
        return 1;
    r->args[r->nargs].arg = arg;
    r->args[r->nargs].memory = r->mems[r->nargs];
    r->nargs++;
    bench_buffers_add(&r->buffers, data, (int64_t)dnnl_memory_desc_get_size(md));
    return 0;
}

static void release(run_ctx *r) {
    for (int i = 0; i < r->nargs; i++)
        dnnl_memory_destroy(r->mems[i]);
    if (r->prim != NULL)
        dnnl_primitive_destroy(r->prim);
    dnnl_stream_t stream = r->stream;
    memset(r, 0, sizeof *r);
    r->stream = stream;
}

/* The primitive descriptors of one configuration: training forward (plain, fused ReLU), eval,
 * backward (plain, fused ReLU). NULL where oneDNN has no implementation. */
typedef struct {
    dnnl_primitive_desc_t train, train_relu, eval, back, back_relu;
} descs;

static dnnl_primitive_desc_t make_forward(const config *cf, dnnl_engine_t engine,
                                          dnnl_prop_kind_t kind, unsigned flags) {
    dnnl_batch_normalization_desc_t d;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_batch_normalization_forward_desc_init(&d, kind, &cf->md, EPS, flags) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &d, NULL, engine, NULL) != dnnl_success)
        return NULL;
    return pd;
}

static dnnl_primitive_desc_t make_backward(const config *cf, dnnl_engine_t engine,
                                           unsigned flags, const_dnnl_primitive_desc_t hint) {
    dnnl_batch_normalization_desc_t d;
    dnnl_primitive_desc_t pd = NULL;
    if (hint == NULL ||
        dnnl_batch_normalization_backward_desc_init(&d, dnnl_backward, &cf->md, &cf->md, EPS,
                                                    flags) != dnnl_success ||
        dnnl_primitive_desc_create(&pd, &d, NULL, engine, hint) != dnnl_success)
        return NULL;
    return pd;
}

static void descs_free(descs *d) {
    dnnl_primitive_desc_t all[] = {d->train, d->train_relu, d->eval, d->back, d->back_relu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i] != NULL)
            dnnl_primitive_desc_destroy(all[i]);
}

/* The primitive for op, with its arguments bound; 1 when oneDNN lacks it (why says so). */
static int setup_op(run_ctx *r, int op, const descs *d, config *cf, dnnl_engine_t engine,
                    const char **why) {
    const int relu = op == OP_TRAIN_RELU || op == OP_BACKWARD_RELU;
    const_dnnl_primitive_desc_t pd = op == OP_TRAIN ? d->train
                                     : op == OP_TRAIN_RELU ? d->train_relu
                                     : op == OP_EVAL ? d->eval
                                     : op == OP_BACKWARD ? d->back
                                     : op == OP_BACKWARD_RELU ? d->back_relu
                                                              : NULL;
    if (op == OP_TRAIN_ADD_RELU || op == OP_BACKWARD_ADD_RELU) {
        *why = "oneDNN 2.6 has no fused batch normalization + add + ReLU";
        return 1;
    }
    if (pd == NULL) {
        *why = "oneDNN has no implementation for this data type or layout on this CPU";
        return 1;
    }
    *why = "oneDNN could not create the primitive or bind its arguments";
    if (dnnl_primitive_create(&r->prim, pd) != dnnl_success)
        return 1;
    int bad = 0;
    if (op == OP_EVAL) {
        bad |= bind(r, pd, engine, DNNL_ARG_SRC, cf->x) | bind(r, pd, engine, DNNL_ARG_DST, cf->y) |
               bind(r, pd, engine, DNNL_ARG_MEAN, cf->running_mean) |
               bind(r, pd, engine, DNNL_ARG_VARIANCE, cf->running_var);
    } else if (!bench_op_is_backward(op)) {
        bad |= bind(r, pd, engine, DNNL_ARG_SRC, cf->x) | bind(r, pd, engine, DNNL_ARG_DST, cf->y) |
               bind(r, pd, engine, DNNL_ARG_MEAN, cf->mean) |
               bind(r, pd, engine, DNNL_ARG_VARIANCE, cf->var);
        r->cfg = cf;
        r->update_running = 1;
    } else {
        bad |= bind(r, pd, engine, DNNL_ARG_SRC, cf->x) |
               bind(r, pd, engine, DNNL_ARG_DIFF_DST, cf->dy) |
               bind(r, pd, engine, DNNL_ARG_MEAN, cf->mean) |
               bind(r, pd, engine, DNNL_ARG_VARIANCE, cf->var) |
               bind(r, pd, engine, DNNL_ARG_DIFF_SRC, cf->dx) |
               bind(r, pd, engine, DNNL_ARG_DIFF_SCALE, cf->dscale) |
               bind(r, pd, engine, DNNL_ARG_DIFF_SHIFT, cf->dshift);
    }
    bad |= bind(r, pd, engine, DNNL_ARG_SCALE, cf->scale) |
           bind(r, pd, engine, DNNL_ARG_SHIFT, cf->shift);
    if (relu && !bad)
        bad |= bind(r, pd, engine, DNNL_ARG_WORKSPACE, cf->ws);
    return bad;
}

static const char *impl_info(const_dnnl_primitive_desc_t pd) {
    const char *impl = "?";
    if (pd != NULL)
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    return impl;
}

/* Times every asked op of one (shape, format, dtype) at one thread count. */
static int run_config(const bench_shape *sh, const bench_plan *plan, int dtype,
                      int threads, dnnl_engine_t engine, dnnl_stream_t stream, config *cf,
                      const char *layout, const char *impl, int *said) {
    descs d = {0};
    d.train = make_forward(cf, engine, dnnl_forward_training, dnnl_use_scale | dnnl_use_shift);
    d.train_relu = make_forward(cf, engine, dnnl_forward_training,
                                dnnl_use_scale | dnnl_use_shift | dnnl_fuse_norm_relu);
    d.eval = make_forward(cf, engine, dnnl_forward_inference,
                          dnnl_use_scale | dnnl_use_shift | dnnl_use_global_stats);
    d.back = make_backward(cf, engine, dnnl_use_scale | dnnl_use_shift, d.train);
    d.back_relu = make_backward(cf, engine, dnnl_use_scale | dnnl_use_shift | dnnl_fuse_norm_relu,
                                d.train_relu);
    if (d.train_relu != NULL && cf->ws == NULL) {
        const dnnl_memory_desc_t *ws = dnnl_primitive_desc_query_md(d.train_relu,
                                                                    dnnl_query_workspace_md, 0);
        cf->ws_bytes = ws != NULL ? dnnl_memory_desc_get_size(ws) : 0;
        cf->ws = alloc_bytes(cf->ws_bytes > 0 ? cf->ws_bytes : 64);
    }
    int status = 0;
    for (int op = 0; op < BENCH_NUM_OPS && status == 0; op++) {
        if (!plan->ops[op])
            continue;
        /* a backward needs its forward's statistics (and, fused, its workspace) */
        if (bench_op_is_backward(op)) {
            run_ctx f = {.stream = stream};
            const char *why;
            if (setup_op(&f, op == OP_BACKWARD ? OP_TRAIN : OP_TRAIN_RELU, &d, cf, engine, &why) == 0)
                run(&f);
            release(&f);
        }
        run_ctx r = {.stream = stream};
        const char *why = NULL;
        if (setup_op(&r, op, &d, cf, engine, &why) != 0) {
            if (!said[op]++)
                printf("# skipped: %s %s %s %s: %s\n", impl, layout, bench_dtype_names[dtype],
                       bench_op_names[op], why);
            release(&r);
            continue;
        }
        const_dnnl_primitive_desc_t pd;
        dnnl_primitive_get_primitive_desc(r.prim, &pd);
        printf("# onednn %s %s %s %s %s threads %d: implementation %s\n", impl, sh->text, layout,
               bench_dtype_names[dtype], bench_op_names[op], threads, impl_info(pd));
        for (int cache = 0; cache < BENCH_NUM_CACHES; cache++) {
            if (!plan->caches[cache])
                continue;
            bench_timed t = {.fn = run, .ctx = &r, .buffers = &r.buffers};
            double ns;
            bench_time_group(&t, 1, plan, cache, &ns);
            if (r.status != dnnl_success) {
                fprintf(stderr, "onednn_bench: %s %s: execution failed: %s\n", sh->text,
                        bench_op_names[op], dnnl_status2str(r.status));
                status = 1;
                break;
            }
            bench_print_row(sh, layout, bench_dtype_names[dtype], bench_op_names[op], impl,
                            threads, cache, ns);
        }
        release(&r);
    }
    descs_free(&d);
    return status;
}

/* The plain tag of a rank, and oneDNN's blocked one (16 channels with AVX-512, else 8). */
static dnnl_format_tag_t tag_of(int fmt, int rank, int block16) {
    static const dnnl_format_tag_t nchw[] = {0, 0, dnnl_nc, dnnl_ncw, dnnl_nchw, dnnl_ncdhw};
    static const dnnl_format_tag_t nhwc[] = {0, 0, dnnl_nc, dnnl_nwc, dnnl_nhwc, dnnl_ndhwc};
    static const dnnl_format_tag_t b16[] = {0, 0, dnnl_format_tag_undef, dnnl_nCw16c, dnnl_nChw16c,
                                            dnnl_nCdhw16c};
    static const dnnl_format_tag_t b8[] = {0, 0, dnnl_format_tag_undef, dnnl_nCw8c, dnnl_nChw8c,
                                           dnnl_nCdhw8c};
    return fmt == FMT_NCHW ? nchw[rank] : fmt == FMT_NHWC ? nhwc[rank]
                                        : (block16 ? b16 : b8)[rank];
}

int main(int argc, char **argv) {
    bench_plan plan;
    int parsed = bench_parse_plan(&plan, argc, argv, usage, NULL);
    if (parsed != 0)
        return parsed == 1 ? 0 : 2;
    const dnnl_version_t *v = dnnl_version();
    const int block16 = __builtin_cpu_supports("avx512f");
    const char *blocked = block16 ? "onednn-nChw16c" : "onednn-nChw8c";
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    printf("# onednn_bench: oneDNN %d.%d.%d, cpu runtime %s, effective ISA %s; blocked layout %s;"
           " median of %d rounds of >= %.0f ms (warm), cold calls flushed with %s\n",
           v->major, v->minor, v->patch, v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "not OpenMP",
           dnnl_cpu_isa2str(isa), blocked + 7, plan.rounds, (double)plan.min_round_ns / 1e6,
           bench_flush_instruction());
    printf("shape,layout,dtype,op,impl,threads,cache,median_ns\n");
    fflush(stdout);

    dnnl_engine_t engine;
    dnnl_stream_t stream;
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
        fprintf(stderr, "onednn_bench: cannot create a CPU engine and stream\n");
        return 1;
    }
    static const dnnl_data_type_t dts[BENCH_NUM_DTYPES] = {dnnl_f32, dnnl_bf16, dnnl_f16};
    int said[NUM_FMTS][BENCH_NUM_DTYPES][BENCH_NUM_OPS] = {{{0}}};
    int status = 0;
    for (int si = 0; si < plan.num_shapes && status == 0; si++) {
        const bench_shape *sh = &plan.shapes[si];
        for (int fmt = 0; fmt < NUM_FMTS && status == 0; fmt++) {
            /* the blocked layout stands beside nchw: it is asked for with nchw */
            const int layout = fmt == FMT_NHWC ? LAYOUT_NHWC : LAYOUT_NCHW;
            if (!plan.layouts[layout])
                continue;
            const char *impl = fmt == FMT_BLOCKED ? blocked : "onednn";
            for (int d = 0; d < BENCH_NUM_DTYPES && status == 0; d++) {
                if (!plan.dtypes[d])
                    continue;
                config cf;
                if (config_init(&cf, sh, tag_of(fmt, sh->rank, block16), dts[d]) != 0) {
                    if (!said[fmt][d][0]++)
                        printf("# skipped: %s %s %s: cannot describe or allocate the tensors\n",
                               impl, bench_layout_names[layout], bench_dtype_names[d]);
                    config_free(&cf);
                    continue;
                }
                for (int t = 0; t < plan.num_threads && status == 0; t++) {
                    omp_set_num_threads(plan.threads[t]);
                    status = run_config(sh, &plan, d, plan.threads[t], engine, stream, &cf,
                                        bench_layout_names[layout], impl, said[fmt][d]);
                }
                config_free(&cf);
            }
        }
    }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
    return status;
}
