/*
 * libbatchnorm against a plain two-pass OpenMP C kernel (REFERENCE.md section 6), in one
 * process, float32 NCHW. Timing rule (the one every peer in scripts/bench.sh follows): warm up,
 * pick a repeat count k so that one round lasts at least --min-round-ms, run --rounds rounds of
 * k calls, report the median over rounds of the mean time per call. The implementations' rounds
 * alternate, so that all see the same machine load and their ratios stay meaningful on a shared
 * machine; each round starts with one untimed call (see round_ns).
 *
 *   forward_train  statistics, running-stat update (factor 0.1), y; weight and bias present
 *   forward_eval   y from the running statistics
 *   backward       training backward from the saved statistics: dx, dweight, dbias
 *   copy           y = x: the bytes forward_eval must move at least, the per-shape roofline
 *   read           the sum of x, nothing written: the traffic of a statistics pass alone
 *   add            dx = dy + x: the bytes backward must move at least (two tensors in, one out)
 *   read2          the sums of dy and of x: the traffic of backward's reduction pass alone
 *
 * The copy runs in forward_eval's rounds (alone with --ops copy and no forward_eval), so that it
 * sees the same buffers, cache state and machine load. It is timed with two store kinds, and the
 * faster counts: regular stores (y passes through the caches, which wins while the buffers fit
 * in them) and non-temporal stores (y bypasses the caches and is not read for ownership, which
 * wins once they don't). The read runs in the same rounds: a training forward that takes two
 * passes over x costs at least a read plus a copy. The add (both store kinds, the faster counts)
 * and read2 run likewise in backward's rounds when the copy is asked for: backward's two inputs
 * are twice the copy's, and where the copy's input stays in the cache between calls they may not,
 * so 1.5 copies can understate backward's least time. A backward that reads dy and x twice (sums,
 * then dx) costs at least a read2 plus an add.
 *
 * Our forward_eval also runs in forward_train's rounds (no row of its own there): a comment line
 * gives training over eval with both timed in the same rounds, the ratio issue 3 sets a target
 * for, free of the drift between the groups of rounds.
 *
 * --sets K (default 1) gives every tensor K copies, and successive calls take them in turn, so
 * that with K copies bigger than the last-level cache every call starts with its inputs in
 * memory, not in the cache the previous call left them in. The copy, read, add and read2 rotate
 * alike.
 *
 * Rows go to stdout as CSV `shape,layout,op,impl,threads,median_ns` (impl panama-batchnorm-c,
 * plain-c, stream-copy for the copy, stream-read for the reads, stream-add for the add); lines
 * starting with '#' are comments.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <immintrin.h>
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
    "                    [--sets K] [--ops forward_train,forward_eval,backward,copy] [SHAPE...]\n"
    "  SHAPE: NxCxHxW (rank 2..5); default: 32x64x56x56 256x512x7x7 64x256x14x14\n"
    "         8x32x112x112 128x16x32x32 1x8x4x4\n";

static const char *default_shapes[] = {"32x64x56x56", "256x512x7x7", "64x256x14x14",
                                       "8x32x112x112", "128x16x32x32", "1x8x4x4"};
enum { OP_TRAIN, OP_EVAL, OP_BACKWARD, OP_COPY, NUM_OPS };
static const char *op_names[] = {"forward_train", "forward_eval", "backward", "copy"};

#define MAX_LIST 16
#define MAX_ROUNDS 1024
#define MAX_SETS 64
#define EPS 1e-5
#define MOMENTUM 0.1
/* The library's threshold: smaller tensors run on the calling thread, and so does the copy. */
#define PARALLEL_MIN_ELEMENTS 65536

typedef struct {
    int64_t n, c, s;
    char text[64];
} shape;

/* One shape's buffers: x, y, dy, dx are (N,C,S), the rest (C). x, y, dy, dx point into set
 * `next` of the `sets` copies of them (--sets). */
typedef struct {
    shape sh;
    float *x, *y, *dy, *dx, *w, *b, *rm, *rv, *dw, *db;
    double *sm, *si;
    float *set[MAX_SETS][4]; /* x, y, dy, dx */
    int sets, next;
    int threads;
    volatile float sum; /* the read's result, kept so the compiler keeps the reads */
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

/* ---- the copy: x into y in 8-float vectors, AVX2 when the CPU has it, SSE (every x86-64 has
 * it) otherwise. Buffers are 64-byte aligned. ---- */

// x, y are (count): vectors [first, last)
__attribute__((target("avx2"))) static void copy_store_avx2(float *restrict y,
                                                            const float *restrict x,
                                                            int64_t first, int64_t last) {
    for (int64_t i = first; i < last; i++)
        _mm256_store_ps(y + 8 * i, _mm256_load_ps(x + 8 * i));
}

// x, y are (count): vectors [first, last)
__attribute__((target("avx2"))) static void copy_stream_avx2(float *restrict y,
                                                             const float *restrict x,
                                                             int64_t first, int64_t last) {
    for (int64_t i = first; i < last; i++)
        _mm256_stream_ps(y + 8 * i, _mm256_load_ps(x + 8 * i));
    _mm_sfence(); // orders this thread's non-temporal stores before the team's barrier
}

// x, y are (count): vectors [first, last)
static void copy_store_sse(float *restrict y, const float *restrict x, int64_t first,
                           int64_t last) {
    for (int64_t i = first; i < last; i++) {
        _mm_store_ps(y + 8 * i, _mm_load_ps(x + 8 * i));
        _mm_store_ps(y + 8 * i + 4, _mm_load_ps(x + 8 * i + 4));
    }
}

// x, y are (count): vectors [first, last)
static void copy_stream_sse(float *restrict y, const float *restrict x, int64_t first,
                            int64_t last) {
    for (int64_t i = first; i < last; i++) {
        _mm_stream_ps(y + 8 * i, _mm_load_ps(x + 8 * i));
        _mm_stream_ps(y + 8 * i + 4, _mm_load_ps(x + 8 * i + 4));
    }
    _mm_sfence();
}

typedef void (*copy_range)(float *restrict, const float *restrict, int64_t, int64_t);

/* Splits the vectors evenly over the threads, like the kernels; below the library's parallel
 * threshold the calling thread copies alone, without entering an OpenMP region (even a team of
 * one costs about a microsecond). */
// x, y are (N,C,S)
static void copy_tensor(bench_case *k, copy_range range) {
    const int64_t total = k->sh.n * k->sh.c * k->sh.s, vectors = total / 8;
    if (total < PARALLEL_MIN_ELEMENTS) {
        range(k->y, k->x, 0, vectors);
    } else {
#pragma omp parallel num_threads(k->threads)
        {
            const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            range(k->y, k->x, vectors * t / nt, vectors * (t + 1) / nt);
        }
    }
    for (int64_t i = 8 * vectors; i < total; i++)
        k->y[i] = k->x[i];
}

static void copy_store(bench_case *k) {
    copy_tensor(k, __builtin_cpu_supports("avx2") ? copy_store_avx2 : copy_store_sse);
}

static void copy_stream(bench_case *k) {
    copy_tensor(k, __builtin_cpu_supports("avx2") ? copy_stream_avx2 : copy_stream_sse);
}

/* ---- the read: the sum of x in 8-float lanes, split over the threads like the copy ---- */

// x is (count): vectors [first, last)
__attribute__((target("avx2"))) static float read_avx2(const float *x, int64_t first,
                                                       int64_t last) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = first;
    for (; i + 2 <= last; i += 2) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps(x + 8 * i));
        a1 = _mm256_add_ps(a1, _mm256_load_ps(x + 8 * i + 8));
    }
    if (i < last)
        a0 = _mm256_add_ps(a0, _mm256_load_ps(x + 8 * i));
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(a0, a1));
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

// x is (count): vectors [first, last)
static float read_sse(const float *x, int64_t first, int64_t last) {
    __m128 a0 = _mm_setzero_ps(), a1 = a0;
    for (int64_t i = first; i < last; i++) {
        a0 = _mm_add_ps(a0, _mm_load_ps(x + 8 * i));
        a1 = _mm_add_ps(a1, _mm_load_ps(x + 8 * i + 4));
    }
    float lanes[4];
    _mm_storeu_ps(lanes, _mm_add_ps(a0, a1));
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

/* The sum of a, and of b when given: each thread reads its part of a, then the same part of b. */
// a, b are (N,C,S)
static void read_buffers(bench_case *k, const float *a, const float *b) {
    float (*range)(const float *, int64_t, int64_t) =
        __builtin_cpu_supports("avx2") ? read_avx2 : read_sse;
    const int64_t total = k->sh.n * k->sh.c * k->sh.s, vectors = total / 8;
    float sum = 0.0f;
    if (total < PARALLEL_MIN_ELEMENTS) {
        sum = range(a, 0, vectors) + (b ? range(b, 0, vectors) : 0.0f);
    } else {
#pragma omp parallel num_threads(k->threads) reduction(+ : sum)
        {
            const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            const int64_t first = vectors * t / nt, last = vectors * (t + 1) / nt;
            sum += range(a, first, last) + (b ? range(b, first, last) : 0.0f);
        }
    }
    for (int64_t i = 8 * vectors; i < total; i++)
        sum += a[i] + (b ? b[i] : 0.0f);
    k->sum = sum;
}

// x is (N,C,S)
static void read_tensor(bench_case *k) {
    read_buffers(k, k->x, NULL);
}

/* ---- backward's rooflines: dx = dy + x, and the sums of dy and x ---- */

// dx, dy, x are (count): vectors [first, last)
__attribute__((target("avx2"))) static void add_avx2(float *restrict dx, const float *restrict dy,
                                                     const float *restrict x, int64_t first,
                                                     int64_t last, int stream) {
    if (stream) {
        for (int64_t i = first; i < last; i++)
            _mm256_stream_ps(dx + 8 * i,
                             _mm256_add_ps(_mm256_load_ps(dy + 8 * i), _mm256_load_ps(x + 8 * i)));
        _mm_sfence();
    } else {
        for (int64_t i = first; i < last; i++)
            _mm256_store_ps(dx + 8 * i,
                            _mm256_add_ps(_mm256_load_ps(dy + 8 * i), _mm256_load_ps(x + 8 * i)));
    }
}

// dx, dy, x are (count): vectors [first, last)
static void add_sse(float *restrict dx, const float *restrict dy, const float *restrict x,
                    int64_t first, int64_t last, int stream) {
    for (int64_t i = 8 * first; i < 8 * last; i += 4) {
        __m128 v = _mm_add_ps(_mm_load_ps(dy + i), _mm_load_ps(x + i));
        if (stream)
            _mm_stream_ps(dx + i, v);
        else
            _mm_store_ps(dx + i, v);
    }
    if (stream)
        _mm_sfence();
}

/* Split over the threads like the copy. */
// dx, dy, x are (N,C,S)
static void add_tensor(bench_case *k, int stream) {
    void (*range)(float *restrict, const float *restrict, const float *restrict, int64_t,
                  int64_t, int) = __builtin_cpu_supports("avx2") ? add_avx2 : add_sse;
    const int64_t total = k->sh.n * k->sh.c * k->sh.s, vectors = total / 8;
    if (total < PARALLEL_MIN_ELEMENTS) {
        range(k->dx, k->dy, k->x, 0, vectors, stream);
    } else {
#pragma omp parallel num_threads(k->threads)
        {
            const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            range(k->dx, k->dy, k->x, vectors * t / nt, vectors * (t + 1) / nt, stream);
        }
    }
    for (int64_t i = 8 * vectors; i < total; i++)
        k->dx[i] = k->dy[i] + k->x[i];
}

static void add_store(bench_case *k) {
    add_tensor(k, 0);
}

static void add_stream(bench_case *k) {
    add_tensor(k, 1);
}

// dy, x are (N,C,S)
static void read_pair(bench_case *k) {
    read_buffers(k, k->dy, k->x);
}

typedef void (*kernel)(bench_case *);
static const kernel ours[] = {ours_forward_train, ours_forward_eval, ours_backward};
static const kernel plain[] = {plain_forward_train, plain_forward_eval, plain_backward};

/* One kernel of a group timed side by side: its rounds alternate with the others'. */
typedef struct {
    kernel f;
    const char *name;
    int64_t reps;
    double t[MAX_ROUNDS];
} timed;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int count) {
    qsort(v, (size_t)count, sizeof v[0], cmp_double);
    return count % 2 ? v[count / 2] : 0.5 * (v[count / 2 - 1] + v[count / 2]);
}

/* f on the next set of tensors. */
static void call(kernel f, bench_case *k) {
    float **t = k->set[k->next];
    k->next = (k->next + 1) % k->sets;
    k->x = t[0], k->y = t[1], k->dy = t[2], k->dx = t[3];
    f(k);
}

/* Calls per round so that one round lasts at least min_ns. */
static int64_t calibrate(kernel f, bench_case *k, int warmup, int64_t min_ns) {
    for (int i = 0; i < warmup; i++)
        call(f, k);
    for (int64_t reps = 1;; reps *= 2) {
        int64_t t0 = now_ns();
        for (int64_t i = 0; i < reps; i++)
            call(f, k);
        if (now_ns() - t0 >= min_ns || reps >= ((int64_t)1 << 30))
            return reps;
    }
}

/* The untimed first call gives every round the cache state the kernel itself leaves, not the one
 * the previous kernel left (the non-temporal copy leaves y out of the caches). */
static double round_ns(kernel f, bench_case *k, int64_t reps) {
    call(f, k);
    int64_t t0 = now_ns();
    for (int64_t i = 0; i < reps; i++)
        call(f, k);
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

/*
 * The rows of a roofline timed at the end of a group: roof[0] and roof[1] the op with regular and
 * with non-temporal stores (the faster counts), roof[2] its read; med their medians.
 */
static void print_roofline(const char *text, int threads, const timed *roof, const double *med,
                           const char *op, const char *impl, const char *read_op,
                           const char *isa) {
    const int won = med[1] < med[0] ? 1 : 0;
    printf("# %s %s threads %d: median ns %.0f (%s) %.0f (%s): %s%s won\n", text, op, threads,
           med[0], roof[0].name, med[1], roof[1].name, isa, roof[won].name);
    printf("%s,nchw,%s,%s,%d,%.0f\n", text, op, impl, threads, med[won]);
    printf("%s,nchw,%s,stream-read,%d,%.0f\n", text, read_op, threads, med[2]);
}

int main(int argc, char **argv) {
    int threads[MAX_LIST] = {1, 2}, num_threads = 2, rounds = 15, warmup = 3, sets = 1;
    int64_t min_round_ns = 20000000;
    int ops[NUM_OPS] = {1, 1, 1, 1};
    int i = 1;
    for (; i + 1 < argc && !strncmp(argv[i], "--", 2); i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--threads"))
            num_threads = parse_list(threads, v);
        else if (!strcmp(a, "--rounds"))
            rounds = atoi(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atoi(v);
        else if (!strcmp(a, "--sets"))
            sets = atoi(v);
        else if (!strcmp(a, "--min-round-ms"))
            min_round_ns = (int64_t)(atof(v) * 1e6);
        else if (!strcmp(a, "--ops")) {
            for (int o = 0; o < NUM_OPS; o++)
                ops[o] = strstr(v, op_names[o]) != NULL;
        } else
            break;
    }
    if (i < argc && !strncmp(argv[i], "-", 1)) {
        fputs(usage, strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? stderr : stdout);
        return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
    }
    if (num_threads < 1 || rounds < 1 || rounds > MAX_ROUNDS || warmup < 0 || min_round_ns < 0 ||
        sets < 1 || sets > MAX_SETS) {
        fprintf(stderr,
                "bad --threads, --rounds (1..%d), --warmup, --min-round-ms or --sets (1..%d)\n%s",
                MAX_ROUNDS, MAX_SETS, usage);
        return 2;
    }
    const char **shape_texts = (const char **)(argv + i);
    int num_shapes = argc - i;
    if (num_shapes == 0) {
        shape_texts = default_shapes;
        num_shapes = (int)(sizeof default_shapes / sizeof default_shapes[0]);
    }
    const int avx2 = __builtin_cpu_supports("avx2");
    printf("# native_bench: libbatchnorm vs plain two-pass OpenMP C, float32 nchw, median of %d "
           "rounds of >= %.0f ms, %d set(s) of tensors\n",
           rounds, (double)min_round_ns / 1e6, sets);
    printf("shape,layout,op,impl,threads,median_ns\n");
    for (int si = 0; si < num_shapes; si++) {
        bench_case k;
        memset(&k, 0, sizeof k);
        if (parse_shape(&k.sh, shape_texts[si])) {
            fprintf(stderr, "native_bench: bad shape '%s'\n%s", shape_texts[si], usage);
            return 2;
        }
        int64_t total = k.sh.n * k.sh.c * k.sh.s, c = k.sh.c;
        k.sets = sets;
        int have_sets = 1;
        for (int j = 0; j < sets; j++)
            for (int b = 0; b < 4; b++)
                have_sets &= (k.set[j][b] = alloc_floats(total)) != NULL;
        k.x = k.set[0][0], k.y = k.set[0][1], k.dy = k.set[0][2], k.dx = k.set[0][3];
        k.w = alloc_floats(c), k.b = alloc_floats(c), k.rm = alloc_floats(c), k.rv = alloc_floats(c);
        k.dw = alloc_floats(c), k.db = alloc_floats(c);
        k.sm = malloc((size_t)c * sizeof(double)), k.si = malloc((size_t)c * sizeof(double));
        if (!have_sets || !k.w || !k.b || !k.rm || !k.rv || !k.dw || !k.db || !k.sm || !k.si) {
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
        for (int j = 1; j < sets; j++)
            for (int b = 0; b < 4; b++)
                memcpy(k.set[j][b], k.set[0][b], (size_t)total * sizeof(float));
        for (int64_t ch = 0; ch < c; ch++) {
            k.w[ch] = 1.0f + 0.001f * (float)ch, k.b[ch] = 0.01f * (float)ch;
            k.rm[ch] = 0.5f, k.rv[ch] = 0.75f;
            k.sm[ch] = 0.5, k.si[ch] = 1.0 / sqrt(0.75 + EPS);
        }
        for (int o = 0; o < NUM_OPS; o++) {
            if (!ops[o] || (o == OP_COPY && ops[OP_EVAL]))
                continue;
            const int with_copy = ops[OP_COPY] && (o == OP_EVAL || o == OP_COPY);
            const int with_add = ops[OP_COPY] && o == OP_BACKWARD;
            for (int t = 0; t < num_threads; t++) {
                k.threads = threads[t];
                bn_set_num_threads(threads[t]);
                timed group[5];
                int count = 0;
                if (o != OP_COPY) {
                    group[count++] = (timed){.f = ours[o], .name = "panama-batchnorm-c"};
                    group[count++] = (timed){.f = plain[o], .name = "plain-c"};
                }
                if (o == OP_TRAIN)
                    group[count++] =
                        (timed){.f = ours[OP_EVAL], .name = "panama-batchnorm-c eval"};
                if (with_copy) {
                    group[count++] = (timed){.f = copy_store, .name = "regular stores"};
                    group[count++] = (timed){.f = copy_stream, .name = "non-temporal stores"};
                    group[count++] = (timed){.f = read_tensor, .name = "read"};
                }
                if (with_add) {
                    group[count++] = (timed){.f = add_store, .name = "regular stores"};
                    group[count++] = (timed){.f = add_stream, .name = "non-temporal stores"};
                    group[count++] = (timed){.f = read_pair, .name = "read2"};
                }
                for (int g = 0; g < count; g++)
                    group[g].reps = calibrate(group[g].f, &k, warmup, min_round_ns);
                for (int r = 0; r < rounds; r++)
                    for (int g = 0; g < count; g++)
                        group[g].t[r] = round_ns(group[g].f, &k, group[g].reps);
                double med[5];
                printf("# %s %s threads %d: min ns", k.sh.text, op_names[o], threads[t]);
                for (int g = 0; g < count; g++) {
                    med[g] = median(group[g].t, rounds); // sorts: t[0] is the minimum
                    printf(" %.0f (%s)", group[g].t[0], group[g].name);
                }
                printf("\n");
                if (o == OP_TRAIN)
                    printf("# %s threads %d: forward_train / forward_eval %.2fx, both in the same "
                           "rounds (panama-batchnorm-c)\n",
                           k.sh.text, threads[t], med[0] / med[2]);
                for (int g = 0; o != OP_COPY && g < 2; g++)
                    printf("%s,nchw,%s,%s,%d,%.0f\n", k.sh.text, op_names[o], group[g].name,
                           threads[t], med[g]);
                if (with_copy)
                    print_roofline(k.sh.text, threads[t], group + count - 3, med + count - 3,
                                   "copy", "stream-copy", "read", avx2 ? "AVX2 " : "SSE ");
                if (with_add)
                    print_roofline(k.sh.text, threads[t], group + count - 3, med + count - 3,
                                   "add", "stream-add", "read2", "");
                fflush(stdout);
            }
        }
        for (int j = 0; j < sets; j++)
            for (int b = 0; b < 4; b++)
                free(k.set[j][b]);
        free(k.w), free(k.b), free(k.rm);
        free(k.rv), free(k.dw), free(k.db), free(k.sm), free(k.si);
    }
    return 0;
}
