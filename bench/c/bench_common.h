/*
 * Shared by the C benchmark harnesses (native_bench, onednn_bench, stream_bench): the options
 * every peer of scripts/bench.sh accepts, the clock, the two cache modes and the timing rule:
 *
 *   warm  warm up, pick a repeat count k so that one round of k back-to-back calls lasts at
 *         least --min-round-ms, run --rounds rounds, report the median over rounds of the mean
 *         time per call. The same tensors every call: they stay in whatever cache holds them.
 *   cold  the same, but before every call the op's tensors are flushed from every cache level
 *         (clflushopt over each 64-byte line, then a fence: benchdnn's cold-cache mode), and
 *         only the calls are timed, each on its own.
 *
 * Rows go to stdout as CSV `shape,layout,dtype,op,impl,threads,cache,median_ns`; lines starting
 * with '#' are comments for the reader, and `# skipped: ...` lines name what could not run.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flush.h"

#define BENCH_MAX_DIMS 5
#define BENCH_MAX_LIST 16
#define BENCH_MAX_ROUNDS 1024
/* The full suite's shapes: five large ones (ResNet-50 and smaller nets' activations) and a tiny one. */
#define BENCH_DEFAULT_SHAPES "32x64x56x56,256x512x7x7,64x256x14x14,8x32x112x112,128x16x32x32,1x8x4x4"

/* The ops of the suite; the fused ones are PyTorch's compositions relu(bn(x)) and
 * relu(bn(x) + z) and their backward from the fused forward's output y. */
enum {
    OP_TRAIN,
    OP_EVAL,
    OP_BACKWARD,
    OP_TRAIN_RELU,
    OP_TRAIN_ADD_RELU,
    OP_BACKWARD_RELU,
    OP_BACKWARD_ADD_RELU,
    BENCH_NUM_OPS
};
static const char *const bench_op_names[BENCH_NUM_OPS] = {
    "forward_train", "forward_eval",          "backward",         "forward_train_relu",
    "forward_train_add_relu", "backward_relu", "backward_add_relu"};

/* Epilogue of an op: 0 none, 1 ReLU, 2 Add+ReLU (the library's BN_ACT_* values). */
static inline int bench_op_act(int op) {
    return op == OP_TRAIN_RELU || op == OP_BACKWARD_RELU           ? 1
           : op == OP_TRAIN_ADD_RELU || op == OP_BACKWARD_ADD_RELU ? 2
                                                                   : 0;
}

static inline int bench_op_is_backward(int op) {
    return op == OP_BACKWARD || op == OP_BACKWARD_RELU || op == OP_BACKWARD_ADD_RELU;
}

enum { LAYOUT_NCHW, LAYOUT_NHWC, BENCH_NUM_LAYOUTS };
static const char *const bench_layout_names[BENCH_NUM_LAYOUTS] = {"nchw", "nhwc"};

enum { DTYPE_F32, DTYPE_BF16, DTYPE_F16, BENCH_NUM_DTYPES };
static const char *const bench_dtype_names[BENCH_NUM_DTYPES] = {"f32", "bf16", "f16"};
static const int bench_dtype_size[BENCH_NUM_DTYPES] = {4, 2, 2};

enum { CACHE_WARM, CACHE_COLD, BENCH_NUM_CACHES };
static const char *const bench_cache_names[BENCH_NUM_CACHES] = {"warm", "cold"};

typedef struct {
    int rank;
    int64_t dims[BENCH_MAX_DIMS];
    int64_t n, c, s; /* the (N, C, S) view: S is the product of the spatial dims */
    char text[64];   /* as given, e.g. "32x64x56x56" */
} bench_shape;

/* What to run: every harness runs the cross product of the lists it supports. */
typedef struct {
    bench_shape shapes[BENCH_MAX_LIST];
    int num_shapes;
    int threads[BENCH_MAX_LIST];
    int num_threads;
    int ops[BENCH_NUM_OPS], layouts[BENCH_NUM_LAYOUTS], dtypes[BENCH_NUM_DTYPES];
    int caches[BENCH_NUM_CACHES]; /* flags: 1 = asked for */
    int rounds;
    int warmup;
    int64_t min_round_ns;
} bench_plan;

static inline int64_t bench_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* "1,2,4" -> {1, 2, 4}; returns the count, or -1 on a malformed list. */
static inline int bench_parse_int_list(int *out, int max, const char *text) {
    int count = 0;
    const char *p = text;
    while (*p != '\0') {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 1 || v > 1024 || count == max) {
            return -1;
        }
        out[count++] = (int)v;
        if (*end == ',') {
            end++;
        } else if (*end != '\0') {
            return -1;
        }
        p = end;
    }
    return count;
}

/* "forward_train,backward" against names[0..count) -> flags[i] = 1 for each named; -1 when a
 * name is unknown, else the number named. */
static inline int bench_parse_names(int *flags, const char *const *names, int count,
                                    const char *text) {
    memset(flags, 0, (size_t)count * sizeof flags[0]);
    int named = 0;
    char item[64];
    for (const char *p = text; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item) {
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        int found = -1;
        for (int i = 0; i < count; i++) {
            if (strcmp(item, names[i]) == 0) {
                found = i;
            }
        }
        if (found < 0) {
            return -1;
        }
        named += !flags[found];
        flags[found] = 1;
        p += len + (p[len] == ',');
    }
    return named;
}

/* "32x64x56x56" -> rank 4, N=32, C=64, S=56*56; returns 0, or -1 on a malformed shape. */
static inline int bench_parse_shape(bench_shape *shape, const char *text) {
    memset(shape, 0, sizeof *shape);
    if (strlen(text) >= sizeof shape->text) {
        return -1;
    }
    strcpy(shape->text, text);
    const char *p = text;
    while (*p != '\0') {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno != 0 || v < 1 || shape->rank == BENCH_MAX_DIMS) {
            return -1;
        }
        shape->dims[shape->rank++] = (int64_t)v;
        if (*end == 'x') {
            end++;
        } else if (*end != '\0') {
            return -1;
        }
        p = end;
    }
    if (shape->rank < 2) {
        return -1;
    }
    shape->n = shape->dims[0];
    shape->c = shape->dims[1];
    shape->s = 1;
    for (int i = 2; i < shape->rank; i++) {
        shape->s *= shape->dims[i];
    }
    return 0;
}

/* "32x64x56x56,1x8x4x4" -> plan->shapes; 0, or -1 on a malformed list. */
static inline int bench_parse_shapes(bench_plan *plan, const char *text) {
    plan->num_shapes = 0;
    char item[64];
    for (const char *p = text; *p != '\0';) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item || plan->num_shapes == BENCH_MAX_LIST) {
            return -1;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        if (bench_parse_shape(&plan->shapes[plan->num_shapes++], item) != 0) {
            return -1;
        }
        p += len + (p[len] == ',');
    }
    return plan->num_shapes > 0 ? 0 : -1;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..count), count >= 1 (sorts v). */
static inline double bench_median(double *v, int count) {
    qsort(v, (size_t)count, sizeof v[0], bench_cmp_double);
    return count % 2 == 1 ? v[count / 2] : 0.5 * (v[count / 2 - 1] + v[count / 2]);
}

/* The buffers one call touches, flushed before each call in cold mode. */
typedef struct {
    const void *ptr[16];
    int64_t bytes[16];
    int count;
} bench_buffers;

static inline void bench_buffers_add(bench_buffers *b, const void *ptr, int64_t bytes) {
    if (ptr != NULL && bytes > 0 && b->count < 16) {
        b->ptr[b->count] = ptr;
        b->bytes[b->count++] = bytes;
    }
}

static inline void bench_buffers_flush(const bench_buffers *b) {
    for (int i = 0; i < b->count; i++) {
        bench_flush(b->ptr[i], b->bytes[i]);
    }
}

/*
 * One timed call: fn(ctx), its buffers, and its repeat count. Harnesses that time several
 * implementations side by side interleave their rounds (bench_time_group), so that all see the
 * same machine load and their ratios stay meaningful on a shared machine.
 */
typedef struct {
    void (*fn)(void *);
    void *ctx;
    const bench_buffers *buffers;
    int64_t reps;
    double ns[BENCH_MAX_ROUNDS];
} bench_timed;

/* k calls of t, flushing before each in cold mode; returns the ns the calls took. */
static inline int64_t bench_round(bench_timed *t, int64_t k, int cache) {
    if (cache == CACHE_WARM) {
        int64_t t0 = bench_now_ns();
        for (int64_t i = 0; i < k; i++) {
            t->fn(t->ctx);
        }
        return bench_now_ns() - t0;
    }
    int64_t total = 0;
    for (int64_t i = 0; i < k; i++) {
        bench_buffers_flush(t->buffers);
        int64_t t0 = bench_now_ns();
        t->fn(t->ctx);
        total += bench_now_ns() - t0;
    }
    return total;
}

/*
 * Times count implementations side by side: each warms up and calibrates its repeat count, then
 * the rounds interleave (round r of every implementation, then round r + 1), each round starting
 * with one untimed call so that it sees the cache state its own calls leave, not the previous
 * implementation's. medians[i] gets implementation i's median over rounds of ns per call.
 */
static inline void bench_time_group(bench_timed *group, int count, const bench_plan *plan,
                                    int cache, double *medians) {
    for (int g = 0; g < count; g++) {
        bench_timed *t = &group[g];
        for (int i = 0; i < plan->warmup; i++) {
            t->fn(t->ctx);
        }
        t->reps = 1;
        while (bench_round(t, t->reps, cache) < plan->min_round_ns && t->reps < (INT64_C(1) << 30)) {
            t->reps *= 2;
        }
    }
    for (int r = 0; r < plan->rounds; r++) {
        for (int g = 0; g < count; g++) {
            bench_timed *t = &group[g];
            t->fn(t->ctx);
            t->ns[r] = (double)bench_round(t, t->reps, cache) / (double)t->reps;
        }
    }
    for (int g = 0; g < count; g++) {
        medians[g] = bench_median(group[g].ns, plan->rounds);
    }
}

static inline void bench_print_row(const bench_shape *shape, const char *layout,
                                   const char *dtype, const char *op, const char *impl,
                                   int threads, int cache, double ns) {
    printf("%s,%s,%s,%s,%s,%d,%s,%.0f\n", shape->text, layout, dtype, op, impl, threads,
           bench_cache_names[cache], ns);
    fflush(stdout);
}

#define BENCH_PLAN_USAGE                                                                       \
    "  --shapes 32x64x56x56,1x8x4x4    NxC[xD][xH]xW, rank 2..5\n"                             \
    "  --layouts nchw,nhwc --dtypes f32,bf16,f16 --caches warm,cold\n"                         \
    "  --ops forward_train,forward_eval,backward,forward_train_relu,forward_train_add_relu,\n" \
    "        backward_relu,backward_add_relu\n"                                                \
    "  --threads 1,2 --rounds R --warmup W --min-round-ms T\n"

/*
 * Parses the options every harness shares; `extra` gets each other "--key value" pair (return
 * nonzero to reject it). Defaults: the suite's six shapes, every op, layout, dtype and cache mode;
 * threads 1,2; 15 rounds of >= 20 ms after 3 warm-up calls. Returns 0, 1 after printing the usage for --help, or 2
 * after a usage error.
 */
static inline int bench_parse_plan(bench_plan *plan, int argc, char **argv, const char *usage,
                                   int (*extra)(const char *key, const char *value)) {
    memset(plan, 0, sizeof *plan);
    plan->threads[0] = 1;
    plan->threads[1] = 2;
    plan->num_threads = 2;
    for (int i = 0; i < BENCH_NUM_OPS; i++) {
        plan->ops[i] = 1;
    }
    plan->layouts[0] = plan->layouts[1] = 1;
    plan->dtypes[0] = plan->dtypes[1] = plan->dtypes[2] = 1;
    plan->caches[0] = plan->caches[1] = 1;
    plan->rounds = 15;
    plan->warmup = 3;
    plan->min_round_ns = 20000000;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        } else if (v == NULL) {
            bad = 1;
        } else if (strcmp(a, "--shapes") == 0) {
            bad = bench_parse_shapes(plan, v) != 0;
        } else if (strcmp(a, "--threads") == 0) {
            plan->num_threads = bench_parse_int_list(plan->threads, BENCH_MAX_LIST, v);
            bad = plan->num_threads < 1;
        } else if (strcmp(a, "--ops") == 0) {
            bad = bench_parse_names(plan->ops, bench_op_names, BENCH_NUM_OPS, v) < 1;
        } else if (strcmp(a, "--layouts") == 0) {
            bad = bench_parse_names(plan->layouts, bench_layout_names, BENCH_NUM_LAYOUTS, v) < 1;
        } else if (strcmp(a, "--dtypes") == 0) {
            bad = bench_parse_names(plan->dtypes, bench_dtype_names, BENCH_NUM_DTYPES, v) < 1;
        } else if (strcmp(a, "--caches") == 0) {
            bad = bench_parse_names(plan->caches, bench_cache_names, BENCH_NUM_CACHES, v) < 1;
        } else if (strcmp(a, "--rounds") == 0) {
            plan->rounds = atoi(v);
            bad = plan->rounds < 1 || plan->rounds > BENCH_MAX_ROUNDS;
        } else if (strcmp(a, "--warmup") == 0) {
            plan->warmup = atoi(v);
            bad = plan->warmup < 0;
        } else if (strcmp(a, "--min-round-ms") == 0) {
            plan->min_round_ns = (int64_t)(atof(v) * 1e6);
            bad = plan->min_round_ns < 0;
        } else {
            bad = extra == NULL || extra(a, v) != 0;
        }
        if (bad) {
            fprintf(stderr, "bad or incomplete argument '%s%s%s'\n%s", a, v ? " " : "",
                    v ? v : "", usage);
            return 2;
        }
    }
    if (plan->num_shapes == 0) {
        bench_parse_shapes(plan, BENCH_DEFAULT_SHAPES);
    }
    return 0;
}

#endif /* BENCH_COMMON_H */
