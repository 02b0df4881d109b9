/*
 * libbatchnorm against a plain two-pass OpenMP C kernel (REFERENCE.md section 6), in one
 * process, float32 NCHW. Timing rule (the one every peer in scripts/bench.sh follows): warm up,
 * pick a repeat count k so that one round lasts at least --min-round-ms, run --rounds rounds of
 * k calls, report the median over rounds of the mean time per call. The two implementations'
 * rounds alternate, so that both see the same machine load and their ratio stays meaningful on
 * a shared machine.
 *
 *   forward_train  statistics, running-stat update (factor 0.1), y; weight and bias present
 *   forward_eval   y from the running statistics
 *   backward       training backward from the saved statistics: dx, dweight, dbias
 *
 * Rows go to stdout as CSV `shape,layout,op,impl,threads,median_ns` (impl panama-batchnorm-c or
 * plain-c); lines starting with '#' are comments.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchnorm.h"

static const char *usage =
    "usage: native_bench [--threads 1,2] [--rounds R] [--warmup W] [--min-round-ms T]\n"
    "                    [--ops forward_train,forward_eval,backward] [SHAPE...]\n"
    "  SHAPE: NxCxHxW (rank 2..5); default: 32x64x56x56 256x512x7x7 64x256x14x14\n"
    "         8x32x112x112 128x16x32x32 1x8x4x4\n";

static const char *default_shapes[] = {"32x64x56x56", "256x512x7x7", "64x256x14x14",
                                       "8x32x112x112", "128x16x32x32", "1x8x4x4"};
static const char *op_names[] = {"forward_train", "forward_eval", "backward"};

#define MAX_LIST 16
#define MAX_ROUNDS 1024
#define EPS 1e-5
#define MOMENTUM 0.1

typedef struct {
    int64_t n, c, s;
    char text[64];
} shape;

/* One shape's buffers: x, y, dy, dx are (N,C,S), the rest (C). */
typedef struct {
    shape sh;
    float *x, *y, *dy, *dx, *w, *b, *rm, *rv, *dw, *db;
    double *sm, *si;
    int threads;
    int op;
} bench_case;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* ---- the plain two-pass OpenMP kernel (REFERENCE.md section 6): per channel, the mean, then
 * the variance (both accumulated in double), then y; rows walked contiguously, inner loops left
 * to the compiler's vectoriser (omp simd allows it to reorder the double sums). ---- */

// x, y are (N,C,S)
static void plain_forward_train(bench_case *k) {
    const int64_t n = k->sh.n, c = k->sh.c, s = k->sh.s, m = n * s;
    const float *restrict x = k->x, *restrict w = k->w, *restrict b = k->b;
    float *restrict y = k->y, *restrict rm = k->rm, *restrict rv = k->rv;
    double *restrict sm = k->sm, *restrict si = k->si;
#pragma omp parallel for num_threads(k->threads) schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const float *row = x + (i * c + ch) * s;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < s; j++)
                sum += row[j];
        }
        double mean = sum / (double)m, sq = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const float *row = x + (i * c + ch) * s;
#pragma omp simd reduction(+ : sq)
            for (int64_t j = 0; j < s; j++) {
                double d = row[j] - mean;
                sq += d * d;
            }
        }
        double invstd = 1.0 / sqrt(sq / (double)m + EPS);
        sm[ch] = mean;
        si[ch] = invstd;
        rm[ch] = (float)((1 - MOMENTUM) * rm[ch] + MOMENTUM * mean);
        rv[ch] = (float)((1 - MOMENTUM) * rv[ch] + MOMENTUM * sq / (double)(m - 1));
        const float a = (float)(invstd * w[ch]), fm = (float)mean, bc = b[ch];
        for (int64_t i = 0; i < n; i++) {
            const float *row = x + (i * c + ch) * s;
            float *out = y + (i * c + ch) * s;
            for (int64_t j = 0; j < s; j++)
                out[j] = (row[j] - fm) * a + bc;
        }
    }
}

// x, y are (N,C,S)
static void plain_forward_eval(bench_case *k) {
    const int64_t n = k->sh.n, c = k->sh.c, s = k->sh.s;
    const float *restrict x = k->x, *restrict w = k->w, *restrict b = k->b;
    const float *restrict rm = k->rm, *restrict rv = k->rv;
    float *restrict y = k->y;
#pragma omp parallel for num_threads(k->threads) schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        const float a = w[ch] / sqrtf(rv[ch] + (float)EPS), mc = rm[ch], bc = b[ch];
        for (int64_t i = 0; i < n; i++) {
            const float *row = x + (i * c + ch) * s;
            float *out = y + (i * c + ch) * s;
            for (int64_t j = 0; j < s; j++)
                out[j] = (row[j] - mc) * a + bc;
        }
    }
}

// dx, dy, x are (N,C,S)
static void plain_backward(bench_case *k) {
    const int64_t n = k->sh.n, c = k->sh.c, s = k->sh.s, m = n * s;
    const float *restrict x = k->x, *restrict dy = k->dy, *restrict w = k->w;
    const double *restrict sm = k->sm, *restrict si = k->si;
    float *restrict dx = k->dx, *restrict dw = k->dw, *restrict db = k->db;
#pragma omp parallel for num_threads(k->threads) schedule(static)
    for (int64_t ch = 0; ch < c; ch++) {
        double mean = sm[ch], invstd = si[ch], sdy = 0.0, sdyx = 0.0;
        for (int64_t i = 0; i < n; i++) {
            const float *g = dy + (i * c + ch) * s, *row = x + (i * c + ch) * s;
#pragma omp simd reduction(+ : sdy, sdyx)
            for (int64_t j = 0; j < s; j++) {
                sdy += g[j];
                sdyx += g[j] * (row[j] - mean);
            }
        }
        db[ch] = (float)sdy;
        dw[ch] = (float)(sdyx * invstd);
        const float gm = (float)(sdy / (double)m), kk = (float)(sdyx * invstd * invstd / (double)m);
        const float a = (float)(invstd * w[ch]), fm = (float)mean;
        for (int64_t i = 0; i < n; i++) {
            const float *g = dy + (i * c + ch) * s, *row = x + (i * c + ch) * s;
            float *out = dx + (i * c + ch) * s;
            for (int64_t j = 0; j < s; j++)
                out[j] = (g[j] - gm - (row[j] - fm) * kk) * a;
        }
    }
}

/* ---- libbatchnorm ---- */

static void ours_forward_train(bench_case *k) {
    bn_forward_train_f32(k->y, k->sm, k->si, k->rm, k->rv, k->x, k->w, k->b, k->sh.n, k->sh.c,
                         k->sh.s, BN_LAYOUT_NCS, EPS, MOMENTUM);
}

static void ours_forward_eval(bench_case *k) {
    bn_forward_eval_f32(k->y, k->x, k->w, k->b, k->rm, k->rv, k->sh.n, k->sh.c, k->sh.s,
                        BN_LAYOUT_NCS, EPS);
}

static void ours_backward(bench_case *k) {
    bn_backward_train_f32(k->dx, k->dw, k->db, k->dy, k->x, k->w, k->sm, k->si, k->sh.n, k->sh.c,
                          k->sh.s, BN_LAYOUT_NCS);
}

typedef void (*kernel)(bench_case *);
static const kernel ours[] = {ours_forward_train, ours_forward_eval, ours_backward};
static const kernel plain[] = {plain_forward_train, plain_forward_eval, plain_backward};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int count) {
    qsort(v, (size_t)count, sizeof v[0], cmp_double);
    return count % 2 ? v[count / 2] : 0.5 * (v[count / 2 - 1] + v[count / 2]);
}

/* Calls per round so that one round lasts at least min_ns. */
static int64_t calibrate(kernel f, bench_case *k, int warmup, int64_t min_ns) {
    for (int i = 0; i < warmup; i++)
        f(k);
    for (int64_t reps = 1;; reps *= 2) {
        int64_t t0 = now_ns();
        for (int64_t i = 0; i < reps; i++)
            f(k);
        if (now_ns() - t0 >= min_ns || reps >= ((int64_t)1 << 30))
            return reps;
    }
}

static double round_ns(kernel f, bench_case *k, int64_t reps) {
    int64_t t0 = now_ns();
    for (int64_t i = 0; i < reps; i++)
        f(k);
    return (double)(now_ns() - t0) / (double)reps;
}

static int parse_shape(shape *sh, const char *text) {
    int64_t dims[5];
    int rank = 0;
    const char *p = text;
    if (strlen(text) >= sizeof sh->text)
        return -1;
    while (*p) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 1 || rank == 5)
            return -1;
        dims[rank++] = v;
        if (*end == 'x')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    if (rank < 2)
        return -1;
    sh->n = dims[0];
    sh->c = dims[1];
    sh->s = 1;
    for (int i = 2; i < rank; i++)
        sh->s *= dims[i];
    strcpy(sh->text, text);
    return 0;
}

static int parse_list(int *out, const char *text) {
    int count = 0;
    for (const char *p = text; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 1024 || count == MAX_LIST)
            return -1;
        out[count++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return count;
}

static float *alloc_floats(int64_t count) {
    size_t bytes = ((size_t)count * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes);
}

int main(int argc, char **argv) {
    int threads[MAX_LIST] = {1, 2}, num_threads = 2, rounds = 15, warmup = 3;
    int64_t min_round_ns = 20000000;
    int ops[3] = {1, 1, 1};
    int i = 1;
    for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--threads"))
            num_threads = parse_list(threads, v);
        else if (!strcmp(a, "--rounds"))
            rounds = atoi(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atoi(v);
        else if (!strcmp(a, "--min-round-ms"))
            min_round_ns = (int64_t)(atof(v) * 1e6);
        else if (!strcmp(a, "--ops")) {
            for (int o = 0; o < 3; o++)
                ops[o] = strstr(v, op_names[o]) != NULL;
        } else
            break;
    }
    if (i < argc && !strncmp(argv[i], "-", 1)) {
        fputs(usage, strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? stderr : stdout);
        return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
    }
    if (num_threads < 1 || rounds < 1 || rounds > MAX_ROUNDS || warmup < 0 || min_round_ns < 0) {
        fprintf(stderr, "bad --threads, --rounds (1..%d), --warmup or --min-round-ms\n%s",
                MAX_ROUNDS, usage);
        return 2;
    }
    const char **shape_texts = (const char **)(argv + i);
    int num_shapes = argc - i;
    if (num_shapes == 0) {
        shape_texts = default_shapes;
        num_shapes = (int)(sizeof default_shapes / sizeof default_shapes[0]);
    }
    printf("# native_bench: libbatchnorm vs plain two-pass OpenMP C, float32 nchw, median of %d "
           "rounds of >= %.0f ms\n",
           rounds, (double)min_round_ns / 1e6);
    printf("shape,layout,op,impl,threads,median_ns\n");
    for (int si = 0; si < num_shapes; si++) {
        bench_case k;
        memset(&k, 0, sizeof k);
        if (parse_shape(&k.sh, shape_texts[si])) {
            fprintf(stderr, "native_bench: bad shape '%s'\n%s", shape_texts[si], usage);
            return 2;
        }
        int64_t total = k.sh.n * k.sh.c * k.sh.s, c = k.sh.c;
        k.x = alloc_floats(total), k.y = alloc_floats(total);
        k.dy = alloc_floats(total), k.dx = alloc_floats(total);
        k.w = alloc_floats(c), k.b = alloc_floats(c), k.rm = alloc_floats(c), k.rv = alloc_floats(c);
        k.dw = alloc_floats(c), k.db = alloc_floats(c);
        k.sm = malloc((size_t)c * sizeof(double)), k.si = malloc((size_t)c * sizeof(double));
        if (!k.x || !k.y || !k.dy || !k.dx || !k.w || !k.b || !k.rm || !k.rv || !k.dw || !k.db ||
            !k.sm || !k.si) {
            fprintf(stderr, "native_bench: cannot allocate buffers for %s\n", k.sh.text);
            return 1;
        }
        uint64_t state = 12345;
        for (int64_t j = 0; j < total; j++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            float u = (float)(state >> 40) * (1.0f / 16777216.0f);
            k.x[j] = 3.0f * u - 1.0f + (float)((j / k.sh.s) % c) * 0.01f;
            k.dy[j] = u - 0.5f;
            k.y[j] = k.dx[j] = 0.0f;
        }
        for (int64_t ch = 0; ch < c; ch++) {
            k.w[ch] = 1.0f + 0.001f * (float)ch, k.b[ch] = 0.01f * (float)ch;
            k.rm[ch] = 0.5f, k.rv[ch] = 0.75f;
            k.sm[ch] = 0.5, k.si[ch] = 1.0 / sqrt(0.75 + EPS);
        }
        for (int o = 0; o < 3; o++) {
            if (!ops[o])
                continue;
            k.op = o;
            for (int t = 0; t < num_threads; t++) {
                k.threads = threads[t];
                bn_set_num_threads(threads[t]);
                int64_t reps_ours = calibrate(ours[o], &k, warmup, min_round_ns);
                int64_t reps_plain = calibrate(plain[o], &k, warmup, min_round_ns);
                double t_ours[MAX_ROUNDS], t_plain[MAX_ROUNDS];
                for (int r = 0; r < rounds; r++) {
                    t_ours[r] = round_ns(ours[o], &k, reps_ours);
                    t_plain[r] = round_ns(plain[o], &k, reps_plain);
                }
                double mo = median(t_ours, rounds), mp = median(t_plain, rounds);
                printf("# %s %s threads %d: min ns %.0f (panama-batchnorm-c) %.0f (plain-c)\n",
                       k.sh.text, op_names[o], threads[t], t_ours[0], t_plain[0]);
                printf("%s,nchw,%s,panama-batchnorm-c,%d,%.0f\n", k.sh.text, op_names[o],
                       threads[t], mo);
                printf("%s,nchw,%s,plain-c,%d,%.0f\n", k.sh.text, op_names[o], threads[t], mp);
                fflush(stdout);
            }
        }
        free(k.x), free(k.y), free(k.dy), free(k.dx), free(k.w), free(k.b), free(k.rm);
        free(k.rv), free(k.dw), free(k.db), free(k.sm), free(k.si);
    }
    return 0;
}
