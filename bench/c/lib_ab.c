/*
 * Two builds of libbatchnorm side by side in one process: the way to tell whether a kernel
 * change is faster on a shared, noisy machine. Both libraries are loaded (dlopen, RTLD_LOCAL),
 * and for every shape and op their rounds alternate, the order swapping every round, so that
 * load drifts hit both alike. Each round is one untimed call, then enough calls to last about
 * 20 ms; the medians over rounds are compared.
 *
 * The order of loading matters: on identical code, the library loaded second measured 3-9%
 * faster on this machine. scripts/lib_ab.sh therefore runs this twice, once in each order, and
 * reports the geometric mean of the two ratios; use it rather than this program alone.
 *
 *   native_lib_ab FIRST.so SECOND.so [--threads T] [--rounds R] [--offset B]
 *                 [--dtype f32|bf16|f16] [--layout nchw|nhwc] [--act none|relu|add_relu]
 *                 [SHAPE...]
 *
 * The tensors start on 64-byte boundaries, or B bytes past one with --offset B (a multiple of 4
 * below 64): Java's large segments, and glibc's malloc of large blocks, start 16 bytes past a
 * page, and the kernels' stores depend on the alignment.
 *
 * Rows go to stdout as `shape,op,first_ns,second_ns,second/first` (medians); lines starting with
 * '#' are comments. Ops: forward_train, forward_eval, backward (from the saved statistics), with
 * the epilogue --act names (the residual z is dy; the backward's y is the training forward's).
 */
#define _GNU_SOURCE

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

#define MAX_ROUNDS 101
#define ROUND_NS 20000000

/* batchnorm.h's bn_forward_train, bn_forward_eval, bn_backward_train */
typedef int32_t (*train_fn)(void *, double *, double *, float *, float *, const void *,
                            const void *, const float *, const float *, int64_t, int64_t,
                            int64_t, int32_t, int32_t, int32_t, double, double, int32_t);
typedef int32_t (*eval_fn)(void *, const void *, const void *, const float *, const float *,
                           const float *, const float *, int64_t, int64_t, int64_t, int32_t,
                           int32_t, int32_t, double);
typedef int32_t (*backward_fn)(void *, void *, float *, float *, const void *, const void *,
                               const void *, const float *, const double *, const double *,
                               int64_t, int64_t, int64_t, int32_t, int32_t, int32_t);
typedef int32_t (*threads_fn)(int32_t);

/* One build's entry points. */
typedef struct {
    train_fn train;
    eval_fn eval;
    backward_fn backward;
} library;

/* One shape's buffers, shared by both libraries: x, y, dy, dx are (N,C,S) of g_dtype in
 * g_layout, the rest (C). */
typedef struct {
    int64_t n, c, s;
    void *x, *y, *dy, *dx, *dz;
    float *w, *b, *rm, *rv, *dw, *db;
    double *sm, *si;
} tensors;

/* Bytes past a 64-byte boundary where the (N,C,S) tensors start (--offset). */
static int64_t g_offset;
/* The tensors' element type, layout and epilogue (batchnorm.h's BN_F32.., BN_LAYOUT_..,
 * BN_ACT_..). */
static int32_t g_dtype, g_layout, g_act;

/* bench_common.h's first three ops: forward_train, forward_eval, backward */
enum { NUM_OPS = OP_BACKWARD + 1 };
static const char *const *op_names = bench_op_names;

static int load(library *lib, const char *path, int threads) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "native_lib_ab: %s\n", dlerror());
        return -1;
    }
    lib->train = (train_fn)dlsym(h, "bn_forward_train");
    lib->eval = (eval_fn)dlsym(h, "bn_forward_eval");
    lib->backward = (backward_fn)dlsym(h, "bn_backward_train");
    threads_fn set_threads = (threads_fn)dlsym(h, "bn_set_num_threads");
    if (!lib->train || !lib->eval || !lib->backward || !set_threads) {
        fprintf(stderr, "native_lib_ab: %s lacks the libbatchnorm entry points\n", path);
        return -1;
    }
    set_threads(threads);
    return 0;
}

static void call(const library *lib, int op, tensors *t) {
    if (op == OP_TRAIN)
        lib->train(t->y, t->sm, t->si, t->rm, t->rv, t->x, g_act == 2 ? t->dy : NULL, t->w, t->b,
                   t->n, t->c, t->s, g_layout, g_dtype, g_act, 1e-5, 0.1, 0);
    else if (op == OP_EVAL)
        lib->eval(t->y, t->x, g_act == 2 ? t->dy : NULL, t->w, t->b, t->rm, t->rv, t->n, t->c,
                  t->s, g_layout, g_dtype, g_act, 1e-5);
    else
        lib->backward(t->dx, g_act == 2 ? t->dz : NULL, t->dw, t->db, t->dy, g_act ? t->y : NULL,
                      t->x, t->w, t->sm, t->si, t->n, t->c, t->s, g_layout, g_dtype, g_act);
}

/* Mean ns per call over `reps` calls, after one untimed call. */
static double round_ns(const library *lib, int op, tensors *t, int64_t reps) {
    call(lib, op, t);
    int64_t t0 = bench_now_ns();
    for (int64_t i = 0; i < reps; i++)
        call(lib, op, t);
    return (double)(bench_now_ns() - t0) / (double)reps;
}

/* count elements of `size` bytes, `offset` bytes past a 64-byte boundary; free with
 * free_elems(p, offset) */
static void *elems(int64_t count, int64_t size, int64_t offset) {
    char *p = aligned_alloc(64, (size_t)((count * size + offset + 63) / 64 * 64));
    return p ? p + offset : NULL;
}

static float *floats(int64_t count, int64_t offset) {
    return elems(count, 4, offset);
}

static void free_elems(void *p, int64_t offset) {
    if (p)
        free((char *)p - offset);
}

/* Element i of a tensor of g_dtype set to v (16-bit types: v truncated, near enough here). */
static void put(void *p, int64_t i, float v) {
    if (g_dtype == 0) {
        ((float *)p)[i] = v;
        return;
    }
    uint32_t bits;
    memcpy(&bits, &v, 4);
    if (g_dtype == 1) {
        ((uint16_t *)p)[i] = (uint16_t)(bits >> 16);
        return;
    }
    /* float16 of a value in [-2, 2]: sign, exponent rebiased, 10 bits of fraction */
    uint32_t sign = (bits >> 16) & 0x8000u, e = (bits >> 23) & 0xffu, f = (bits >> 13) & 0x3ffu;
    ((uint16_t *)p)[i] = (uint16_t)(e < 113 ? sign : sign | ((e - 112) << 10) | f);
}

static int alloc_tensors(tensors *t, const bench_shape *sh) {
    int64_t total = sh->n * sh->c * sh->s, c = sh->c;
    int64_t o = g_offset, es = g_dtype == 0 ? 4 : 2;
    *t = (tensors){sh->n, c, sh->s, elems(total, es, o), elems(total, es, o),
                   elems(total, es, o), elems(total, es, o), elems(total, es, o),
                   floats(c, 0), floats(c, 0),
                   floats(c, 0), floats(c, 0), floats(c, 0), floats(c, 0),
                   malloc((size_t)c * sizeof(double)), malloc((size_t)c * sizeof(double))};
    if (!t->x || !t->y || !t->dy || !t->dx || !t->dz || !t->w || !t->b || !t->rm || !t->rv ||
        !t->dw || !t->db || !t->sm || !t->si)
        return -1;
    uint64_t state = 12345;
    for (int64_t i = 0; i < total; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)(state >> 40) * (1.0f / 16777216.0f);
        put(t->x, i, 4.0f * u - 2.0f), put(t->dy, i, u - 0.5f);
        put(t->y, i, 0.0f), put(t->dx, i, 0.0f), put(t->dz, i, 0.0f);
    }
    for (int64_t ch = 0; ch < c; ch++)
        t->w[ch] = 1.5f, t->b[ch] = 0.25f, t->rm[ch] = 0.0f, t->rv[ch] = 1.0f;
    return 0;
}

static void free_tensors(tensors *t) {
    int64_t o = g_offset;
    free_elems(t->x, o), free_elems(t->y, o), free_elems(t->dy, o), free_elems(t->dx, o);
    free_elems(t->dz, o);
    free(t->w), free(t->b), free(t->rm), free(t->rv), free(t->dw), free(t->db);
    free(t->sm), free(t->si);
}

int main(int argc, char **argv) {
    static const char *usage =
        "usage: native_lib_ab FIRST.so SECOND.so [--threads T] [--rounds 1..101]\n"
        "                     [--offset 0..60, a multiple of 4] [--dtype f32|bf16|f16]\n"
        "                     [--layout nchw|nhwc] [--act none|relu|add_relu] [SHAPE...]\n";
    if (argc < 3) {
        fputs(usage, stderr);
        return 2;
    }
    int threads = 2, rounds = 25, first_shape = argc;
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--offset") == 0 && i + 1 < argc) {
            g_offset = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc) {
            const char *d = argv[++i];
            g_dtype = strcmp(d, "f32") == 0 ? 0 : strcmp(d, "bf16") == 0 ? 1
                    : strcmp(d, "f16") == 0 ? 2 : -1;
        } else if (strcmp(argv[i], "--layout") == 0 && i + 1 < argc) {
            const char *l = argv[++i];
            g_layout = strcmp(l, "nchw") == 0 ? 0 : strcmp(l, "nhwc") == 0 ? 1 : -1;
        } else if (strcmp(argv[i], "--act") == 0 && i + 1 < argc) {
            const char *a = argv[++i];
            g_act = strcmp(a, "none") == 0 ? 0 : strcmp(a, "relu") == 0 ? 1
                  : strcmp(a, "add_relu") == 0 ? 2 : -1;
        } else {
            first_shape = i;
            break;
        }
    }
    if (threads < 1 || rounds < 1 || rounds > MAX_ROUNDS || g_offset < 0 || g_offset >= 64 ||
        g_offset % 4 != 0 || g_dtype < 0 || g_layout < 0 || g_act < 0) {
        fputs(usage, stderr);
        return 2;
    }
    library libs[2];
    if (load(&libs[0], argv[1], threads) || load(&libs[1], argv[2], threads))
        return 1;
    static const char *defaults[] = {"32x64x56x56", "256x512x7x7", "64x256x14x14"};
    int count = first_shape < argc ? argc - first_shape : 3;
    static const char *dtypes[] = {"f32", "bf16", "f16"}, *layouts[] = {"nchw", "nhwc"},
                      *acts[] = {"none", "relu", "add_relu"};
    printf("# first %s, second %s, %d threads, medians of %d rounds, %s %s tensors %d bytes past "
           "a 64-byte boundary, epilogue %s\n",
           argv[1], argv[2], threads, rounds, dtypes[g_dtype], layouts[g_layout], (int)g_offset,
           acts[g_act]);
    printf("shape,op,first_ns,second_ns,second/first\n");
    for (int k = 0; k < count; k++) {
        const char *text = first_shape < argc ? argv[first_shape + k] : defaults[k];
        bench_shape sh;
        tensors t;
        if (bench_parse_shape(&sh, text)) {
            fprintf(stderr, "native_lib_ab: bad shape '%s'\n%s", text, usage);
            return 2;
        }
        if (alloc_tensors(&t, &sh)) {
            fprintf(stderr, "native_lib_ab: cannot allocate buffers for %s\n", text);
            return 1;
        }
        call(&libs[0], OP_TRAIN, &t); /* saved statistics for the backward */
        for (int op = 0; op < NUM_OPS; op++) {
            double ns[2][MAX_ROUNDS];
            int64_t one = (int64_t)round_ns(&libs[0], op, &t, 1) + 1;
            int64_t reps = ROUND_NS / one + 1;
            for (int r = 0; r < rounds; r++)
                for (int j = 0; j < 2; j++) {
                    int which = (r % 2) ? 1 - j : j; /* the order swaps every round */
                    ns[which][r] = round_ns(&libs[which], op, &t, reps);
                }
            double first = bench_median(ns[0], rounds), second = bench_median(ns[1], rounds);
            printf("%s,%s,%.0f,%.0f,%.3f\n", text, op_names[op], first, second, second / first);
            fflush(stdout);
        }
        free_tensors(&t);
    }
    return 0;
}
