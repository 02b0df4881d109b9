/*
 * oneDNN's batch normalization, plain nchw (Debian's libdnnl-dev, oneDNN 2.6), timed the way
 * every peer in scripts/bench.sh is (see bench_common.h).
 *
 *   forward_train  dnnl_forward_training, scale+shift, batch statistics out (mean, biased
 *                  variance), then the running-statistics update PyTorch does (over C values,
 *                  negligible next to the primitive, but part of the op users call)
 *   forward_eval   dnnl_forward_inference with global statistics, scale+shift
 *   backward       dnnl_backward from the training statistics: diff_src, diff_scale, diff_shift
 *
 * Debian builds oneDNN with the OpenMP runtime (DNNL_CPU_RUNTIME == DNNL_RUNTIME_OMP, linked to
 * libgomp), so the thread count is omp_set_num_threads, set before the primitives are created.
 *
 * Build: gcc -O2 -fopenmp -o onednn_bench onednn_bench.c -ldnnl
 */
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "bench_common.h"

static const char *usage =
    "usage: onednn_bench [--threads 1,2] [--rounds R] [--warmup W] [--min-round-ms T]\n"
    "                    [--ops forward_train,forward_eval,backward] SHAPE...\n"
    "  SHAPE: NxCxHxW (rank 2..5), e.g. 32x64x56x56\n";

#define TRY(call)                                                                   \
    do {                                                                            \
        dnnl_status_t st_ = (call);                                                 \
        if (st_ != dnnl_success) {                                                  \
            fprintf(stderr, "onednn_bench: %s failed: %s\n", #call, dnnl_status2str(st_)); \
            return 1;                                                               \
        }                                                                           \
    } while (0)

static const double eps = 1e-5;
static const double momentum = 0.1;

/* Host buffers for one shape: x, y, dy, dx are (N,C,S), the rest (C). */
typedef struct {
    float *x, *y, *dy, *dx;
    float *scale, *shift, *mean, *var, *dscale, *dshift, *running_mean, *running_var;
} buffers;

typedef struct {
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    int nargs;
    dnnl_exec_arg_t args[12];
    dnnl_memory_t mems[12];
    /* forward_train only: the running-statistics update after the primitive */
    const buffers *buf;
    int64_t c, m;
    dnnl_status_t status; /* the first failure of an execution, checked after timing */
} run_ctx;

static void run_primitive(void *p) {
    run_ctx *r = p;
    dnnl_status_t st = dnnl_primitive_execute(r->prim, r->stream, r->nargs, r->args);
    if (st == dnnl_success) {
        st = dnnl_stream_wait(r->stream);
    }
    if (st != dnnl_success && r->status == dnnl_success) {
        r->status = st;
    }
}

// running_mean, running_var, mean, var are (C)
static void update_running_stats(const buffers *b, int64_t c, int64_t m) {
    const double unbias = (double)m / (double)(m - 1);
    for (int64_t k = 0; k < c; k++) {
        b->running_mean[k] = (float)((1 - momentum) * b->running_mean[k] + momentum * b->mean[k]);
        b->running_var[k] =
            (float)((1 - momentum) * b->running_var[k] + momentum * b->var[k] * unbias);
    }
}

static void run_train(void *p) {
    run_ctx *r = p;
    run_primitive(r);
    update_running_stats(r->buf, r->c, r->m);
}

static float *alloc_floats(int64_t count, float value) {
    size_t bytes = ((size_t)count * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (p != NULL) {
        for (int64_t i = 0; i < count; i++) {
            p[i] = value;
        }
    }
    return p;
}

// v is (count): deterministic values in [-2, 2)
static void fill_pseudo_random(float *v, int64_t count, uint32_t seed) {
    uint32_t state = seed;
    for (int64_t i = 0; i < count; i++) {
        state = state * 1664525u + 1013904223u;
        v[i] = (float)(state >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
    }
}

static int alloc_buffers(buffers *b, int64_t total, int64_t c) {
    memset(b, 0, sizeof *b);
    b->x = alloc_floats(total, 0);
    b->y = alloc_floats(total, 0);
    b->dy = alloc_floats(total, 0);
    b->dx = alloc_floats(total, 0);
    b->scale = alloc_floats(c, 1.5f);
    b->shift = alloc_floats(c, 0.25f);
    b->mean = alloc_floats(c, 0);
    b->var = alloc_floats(c, 1);
    b->dscale = alloc_floats(c, 0);
    b->dshift = alloc_floats(c, 0);
    b->running_mean = alloc_floats(c, 0);
    b->running_var = alloc_floats(c, 1);
    float *all[] = {b->x, b->y, b->dy, b->dx, b->scale, b->shift, b->mean, b->var,
                    b->dscale, b->dshift, b->running_mean, b->running_var};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (all[i] == NULL) {
            return 1;
        }
    }
    fill_pseudo_random(b->x, total, 1);
    fill_pseudo_random(b->dy, total, 2);
    return 0;
}

static void free_buffers(buffers *b) {
    float *all[] = {b->x, b->y, b->dy, b->dx, b->scale, b->shift, b->mean, b->var,
                    b->dscale, b->dshift, b->running_mean, b->running_var};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(all[i]);
    }
}

/* Binds host buffer `data` as execution argument `arg` of the primitive, with the memory
 * descriptor the primitive expects for it (checked to be exactly `bytes` long). */
static int bind(run_ctx *r, dnnl_primitive_desc_t pd, dnnl_engine_t engine, int arg, void *data,
                size_t bytes) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    if (md == NULL || dnnl_memory_desc_get_size(md) != bytes) {
        fprintf(stderr, "onednn_bench: argument %d has an unexpected layout or size\n", arg);
        return 1;
    }
    TRY(dnnl_memory_create(&r->mems[r->nargs], md, engine, data));
    r->args[r->nargs].arg = arg;
    r->args[r->nargs].memory = r->mems[r->nargs];
    r->nargs++;
    return 0;
}

static void release(run_ctx *r) {
    for (int i = 0; i < r->nargs; i++) {
        dnnl_memory_destroy(r->mems[i]);
    }
    if (r->prim != NULL) {
        dnnl_primitive_destroy(r->prim);
    }
    r->nargs = 0;
    r->prim = NULL;
}

static int print_row(const bench_shape *shape, const char *op, int threads, double ns,
                     dnnl_primitive_desc_t pd, const run_ctx *r) {
    if (r->status != dnnl_success) {
        fprintf(stderr, "onednn_bench: %s %s: execution failed: %s\n", shape->text, op,
                dnnl_status2str(r->status));
        return 1;
    }
    const char *impl = "?";
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
    printf("# onednn %s %s threads %d: implementation %s\n", shape->text, op, threads, impl);
    printf("%s,nchw,%s,onednn,%d,%.0f\n", shape->text, op, threads, ns);
    fflush(stdout);
    return 0;
}

static int bench_shape_ops(const bench_shape *shape, const bench_plan *plan, int threads,
                           const char *ops, dnnl_engine_t engine, dnnl_stream_t stream,
                           buffers *b) {
    static const dnnl_format_tag_t tags[] = {dnnl_format_tag_undef, dnnl_format_tag_undef,
                                             dnnl_nc, dnnl_ncw, dnnl_nchw, dnnl_ncdhw};
    dnnl_dims_t dims;
    for (int i = 0; i < shape->rank; i++) {
        dims[i] = shape->dims[i];
    }
    dnnl_memory_desc_t data_md;
    TRY(dnnl_memory_desc_init_by_tag(&data_md, shape->rank, dims, dnnl_f32, tags[shape->rank]));
    const size_t data_bytes = (size_t)(shape->n * shape->c * shape->s) * sizeof(float);
    const size_t chan_bytes = (size_t)shape->c * sizeof(float);
    const unsigned affine = dnnl_use_scale | dnnl_use_shift;

    dnnl_batch_normalization_desc_t train_d, eval_d, back_d;
    dnnl_primitive_desc_t train_pd, eval_pd, back_pd;
    TRY(dnnl_batch_normalization_forward_desc_init(&train_d, dnnl_forward_training, &data_md,
                                                   (float)eps, affine));
    TRY(dnnl_primitive_desc_create(&train_pd, &train_d, NULL, engine, NULL));
    TRY(dnnl_batch_normalization_forward_desc_init(&eval_d, dnnl_forward_inference, &data_md,
                                                   (float)eps, affine | dnnl_use_global_stats));
    TRY(dnnl_primitive_desc_create(&eval_pd, &eval_d, NULL, engine, NULL));
    TRY(dnnl_batch_normalization_backward_desc_init(&back_d, dnnl_backward, &data_md, &data_md,
                                                    (float)eps, affine));
    TRY(dnnl_primitive_desc_create(&back_pd, &back_d, NULL, engine, train_pd));

    run_ctx r = {.stream = stream, .buf = b, .c = shape->c, .m = shape->n * shape->s};

    /* Training forward always runs once, so that backward has its statistics. */
    TRY(dnnl_primitive_create(&r.prim, train_pd));
    if (bind(&r, train_pd, engine, DNNL_ARG_SRC, b->x, data_bytes) ||
        bind(&r, train_pd, engine, DNNL_ARG_DST, b->y, data_bytes) ||
        bind(&r, train_pd, engine, DNNL_ARG_MEAN, b->mean, chan_bytes) ||
        bind(&r, train_pd, engine, DNNL_ARG_VARIANCE, b->var, chan_bytes) ||
        bind(&r, train_pd, engine, DNNL_ARG_SCALE, b->scale, chan_bytes) ||
        bind(&r, train_pd, engine, DNNL_ARG_SHIFT, b->shift, chan_bytes)) {
        return 1;
    }
    run_train(&r);
    if (strstr(ops, "forward_train") != NULL) {
        double ns = bench_time(run_train, &r, plan);
        if (print_row(shape, "forward_train", threads, ns, train_pd, &r) != 0) {
            return 1;
        }
    }
    release(&r);

    if (strstr(ops, "forward_eval") != NULL) {
        TRY(dnnl_primitive_create(&r.prim, eval_pd));
        if (bind(&r, eval_pd, engine, DNNL_ARG_SRC, b->x, data_bytes) ||
            bind(&r, eval_pd, engine, DNNL_ARG_DST, b->y, data_bytes) ||
            bind(&r, eval_pd, engine, DNNL_ARG_MEAN, b->running_mean, chan_bytes) ||
            bind(&r, eval_pd, engine, DNNL_ARG_VARIANCE, b->running_var, chan_bytes) ||
            bind(&r, eval_pd, engine, DNNL_ARG_SCALE, b->scale, chan_bytes) ||
            bind(&r, eval_pd, engine, DNNL_ARG_SHIFT, b->shift, chan_bytes)) {
            return 1;
        }
        double ns = bench_time(run_primitive, &r, plan);
        if (print_row(shape, "forward_eval", threads, ns, eval_pd, &r) != 0) {
            return 1;
        }
        release(&r);
    }

    if (strstr(ops, "backward") != NULL) {
        TRY(dnnl_primitive_create(&r.prim, back_pd));
        if (bind(&r, back_pd, engine, DNNL_ARG_SRC, b->x, data_bytes) ||
            bind(&r, back_pd, engine, DNNL_ARG_DIFF_DST, b->dy, data_bytes) ||
            bind(&r, back_pd, engine, DNNL_ARG_MEAN, b->mean, chan_bytes) ||
            bind(&r, back_pd, engine, DNNL_ARG_VARIANCE, b->var, chan_bytes) ||
            bind(&r, back_pd, engine, DNNL_ARG_SCALE, b->scale, chan_bytes) ||
            bind(&r, back_pd, engine, DNNL_ARG_SHIFT, b->shift, chan_bytes) ||
            bind(&r, back_pd, engine, DNNL_ARG_DIFF_SRC, b->dx, data_bytes) ||
            bind(&r, back_pd, engine, DNNL_ARG_DIFF_SCALE, b->dscale, chan_bytes) ||
            bind(&r, back_pd, engine, DNNL_ARG_DIFF_SHIFT, b->dshift, chan_bytes)) {
            return 1;
        }
        double ns = bench_time(run_primitive, &r, plan);
        if (print_row(shape, "backward", threads, ns, back_pd, &r) != 0) {
            return 1;
        }
        release(&r);
    }

    dnnl_primitive_desc_destroy(train_pd);
    dnnl_primitive_desc_destroy(eval_pd);
    dnnl_primitive_desc_destroy(back_pd);
    return 0;
}

int main(int argc, char **argv) {
    bench_plan plan;
    int i = bench_parse_plan(&plan, argc, argv, usage);
    if (i < 0) {
        return 2;
    }
    const char *ops = "forward_train,forward_eval,backward";
    if (i + 1 < argc && strcmp(argv[i], "--ops") == 0) {
        ops = argv[i + 1];
        i += 2;
    }
    if (i == argc) {
        fputs(usage, stderr);
        return 2;
    }
    for (int k = i; k < argc; k++) {
        bench_shape shape;
        if (bench_parse_shape(&shape, argv[k]) != 0) {
            fprintf(stderr, "onednn_bench: bad shape '%s'\n%s", argv[k], usage);
            return 2;
        }
    }

    const dnnl_version_t *v = dnnl_version();
    printf("# onednn_bench: oneDNN %d.%d.%d, cpu runtime %s, layout nchw\n", v->major, v->minor,
           v->patch, v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "not OpenMP");
    printf("shape,layout,op,impl,threads,median_ns\n");
    fflush(stdout);

    dnnl_engine_t engine;
    dnnl_stream_t stream;
    TRY(dnnl_engine_create(&engine, dnnl_cpu, 0));
    TRY(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    int status = 0;
    for (int k = i; k < argc && status == 0; k++) {
        bench_shape shape;
        bench_parse_shape(&shape, argv[k]);
        buffers b;
        if (alloc_buffers(&b, shape.n * shape.c * shape.s, shape.c) != 0) {
            fprintf(stderr, "onednn_bench: cannot allocate buffers for %s\n", shape.text);
            status = 1;
        }
        for (int t = 0; t < plan.num_threads && status == 0; t++) {
            omp_set_num_threads(plan.threads[t]);
            status = bench_shape_ops(&shape, &plan, plan.threads[t], ops, engine, stream, &b);
        }
        free_buffers(&b);
    }
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
    return status;
}
