/*
 * How fast can a training forward be on this machine? A probe for the bound that issue 3's
 * "training within 1.3x of eval" target runs into, measured beside libbatchnorm in one process.
 *
 * The probe loop is not a BatchNorm: per channel it reads x once, accumulates the statistics a
 * training forward needs (sum and sum of squares of deviations) and writes y = a*x + b with
 * the library's store policy (non-temporal for outputs of 16 MiB and more), in one pass. That is
 * the least memory traffic a training forward can
 * have (one read, one write: the traffic of eval) plus its arithmetic, so no real kernel, which
 * must finish a channel's statistics before it can normalize it, can beat it by walking channel
 * by channel. That is the order for long rows (S >= 1024, where libbatchnorm fuses its passes);
 * for short rows a channel's walk jumps through memory and the probe bounds nothing (there the
 * library walks memory in address order, twice). Two flavours:
 *   bound-double  statistics accumulated in double, as libbatchnorm does (the accuracy rule)
 *   bound-float   statistics accumulated in float lanes (what the accuracy rule forbids)
 * Rows go to stdout as `shape,threads,impl,median_ns` and a ratio to libbatchnorm's eval.
 *
 *   target/native/bench/native_train_bound [--threads T] [--rounds R] [SHAPE...]  (default:
 *   32x64x56x56 8x32x112x112 128x16x32x32), built by `cmake --build target/native --target
 *   native_train_bound` after a Maven build.
 * Needs AVX-512F (it says so and exits 0 without it): the probe uses the same lanes as the
 * library's AVX-512 kernels.
 */
#define _POSIX_C_SOURCE 200809L

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchnorm.h"

#define MAX_ROUNDS 101

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int by_value(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

// x, y are (N,C,S); one pass per channel: statistics of x in double lanes, y = 0.5x + 1
/* 8 floats to q: streamed when the output is big and the row keeps 32-byte alignment */
__attribute__((target("avx2"))) static inline void put8(float *q, __m256 v, int stream) {
    if (stream)
        _mm256_stream_ps(q, v);
    else
        _mm256_storeu_ps(q, v);
}

__attribute__((target("avx512f,avx2,fma"))) static double bound_double(float *y, const float *x,
                                                                      int64_t n, int64_t c,
                                                                      int64_t s, int stream) {
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int64_t ch = 0; ch < c; ch++) {
        const __m512d k = _mm512_set1_pd(1.0);
        const __m256 a = _mm256_set1_ps(0.5f), b = _mm256_set1_ps(1.0f);
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, q0 = s0, q1 = s0;
        double tail = 0.0;
        for (int64_t r = 0; r < n; r++) {
            const float *p = x + (r * c + ch) * s;
            float *q = y + (r * c + ch) * s;
            for (int64_t i = 0; i + 16 <= s; i += 16) {
                __m256 u0 = _mm256_loadu_ps(p + i), u1 = _mm256_loadu_ps(p + i + 8);
                __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(u0), k);
                __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(u1), k);
                s0 = _mm512_add_pd(s0, d0);
                q0 = _mm512_fmadd_pd(d0, d0, q0);
                s1 = _mm512_add_pd(s1, d1);
                q1 = _mm512_fmadd_pd(d1, d1, q1);
                put8(q + i, _mm256_fmadd_ps(u0, a, b), stream);
                put8(q + i + 8, _mm256_fmadd_ps(u1, a, b), stream);
            }
            for (int64_t i = s / 16 * 16; i < s; i++) {
                double d = (double)p[i] - 1.0;
                tail += d + d * d;
                q[i] = 0.5f * p[i] + 1.0f;
            }
        }
        total += tail + _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1),
                                                           _mm512_add_pd(q0, q1)));
    }
    _mm_sfence();
    return total;
}

// the same, statistics in float lanes
__attribute__((target("avx512f,avx2,fma"))) static double bound_float(float *y, const float *x,
                                                                     int64_t n, int64_t c,
                                                                     int64_t s, int stream) {
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int64_t ch = 0; ch < c; ch++) {
        const __m512 k = _mm512_set1_ps(1.0f);
        const __m256 a = _mm256_set1_ps(0.5f), b = _mm256_set1_ps(1.0f);
        __m512 s0 = _mm512_setzero_ps(), q0 = s0;
        float tail = 0.0f;
        for (int64_t r = 0; r < n; r++) {
            const float *p = x + (r * c + ch) * s;
            float *q = y + (r * c + ch) * s;
            for (int64_t i = 0; i + 16 <= s; i += 16) {
                __m512 d = _mm512_sub_ps(_mm512_loadu_ps(p + i), k);
                s0 = _mm512_add_ps(s0, d);
                q0 = _mm512_fmadd_ps(d, d, q0);
                put8(q + i, _mm256_fmadd_ps(_mm256_loadu_ps(p + i), a, b), stream);
                put8(q + i + 8, _mm256_fmadd_ps(_mm256_loadu_ps(p + i + 8), a, b), stream);
            }
            for (int64_t i = s / 16 * 16; i < s; i++) {
                float d = p[i] - 1.0f;
                tail += d + d * d;
                q[i] = 0.5f * p[i] + 1.0f;
            }
        }
        total += (double)(tail + _mm512_reduce_add_ps(_mm512_add_ps(s0, q0)));
    }
    _mm_sfence();
    return total;
}

static void run_shape(const char *text, int threads, int rounds) {
    long long dims[5];
    int rank = 0;
    const char *p = text;
    while (rank < 5 && sscanf(p, "%lld", &dims[rank]) == 1) {
        rank++;
        p = strchr(p, 'x');
        if (p == NULL)
            break;
        p++;
    }
    if (rank < 3) {
        fprintf(stderr, "native_train_bound: bad shape '%s' (want NxCxHxW)\n", text);
        return;
    }
    int64_t n = dims[0], c = dims[1], s = 1;
    for (int i = 2; i < rank; i++)
        s *= dims[i];
    size_t bytes = (size_t)(n * c * s) * sizeof(float);
    float *x = aligned_alloc(64, bytes), *y = aligned_alloc(64, bytes);
    float *w = malloc((size_t)c * sizeof(float)), *b = malloc((size_t)c * sizeof(float));
    float *rm = malloc((size_t)c * sizeof(float)), *rv = malloc((size_t)c * sizeof(float));
    double *sm = malloc((size_t)c * sizeof(double)), *si = malloc((size_t)c * sizeof(double));
    if (!x || !y || !w || !b || !rm || !rv || !sm || !si) {
        fprintf(stderr, "native_train_bound: out of memory for %s\n", text);
        exit(1);
    }
    for (int64_t i = 0; i < n * c * s; i++)
        x[i] = (float)(i % 1009) * 0.01f, y[i] = 0.0f;
    for (int64_t i = 0; i < c; i++)
        w[i] = 1.0f, b[i] = 0.0f, rm[i] = 0.0f, rv[i] = 1.0f;
    /* the library's rule (bn_make_rows), and rows that keep 32-byte alignment */
    int stream = bytes >= ((size_t)16 << 20) && s >= 64 && s % 8 == 0;
    enum { EVAL, TRAIN, BOUND_DOUBLE, BOUND_FLOAT, IMPLS };
    static const char *names[IMPLS] = {"panama-batchnorm-c-eval", "panama-batchnorm-c-train",
                                       "bound-double", "bound-float"};
    static int64_t t[IMPLS][MAX_ROUNDS];
    volatile double sink = 0.0;
    int calls = (int)(20000000 / (n * c * s)) + 2;
    for (int r = -1; r < rounds; r++) /* round -1 warms up */
        for (int k = 0; k < IMPLS; k++) {
            int impl = (k + r + 1) % IMPLS; /* rotate, so no impl always follows the same one */
            int64_t t0 = now_ns();
            for (int i = 0; i < calls; i++) {
                if (impl == EVAL)
                    bn_forward_eval_f32(y, x, w, b, rm, rv, n, c, s, BN_LAYOUT_NCS, 1e-5);
                else if (impl == TRAIN)
                    bn_forward_train_f32(y, sm, si, rm, rv, x, w, b, n, c, s, BN_LAYOUT_NCS, 1e-5,
                                         0.1);
                else if (impl == BOUND_DOUBLE)
                    sink += bound_double(y, x, n, c, s, stream);
                else
                    sink += bound_float(y, x, n, c, s, stream);
            }
            if (r >= 0)
                t[impl][r] = (now_ns() - t0) / calls;
        }
    int64_t med[IMPLS];
    for (int k = 0; k < IMPLS; k++) {
        qsort(t[k], (size_t)rounds, sizeof(int64_t), by_value);
        med[k] = t[k][rounds / 2];
    }
    for (int k = 0; k < IMPLS; k++)
        printf("%s,%d,%s,%lld  (%.2fx eval)\n", text, threads, names[k], (long long)med[k],
               (double)med[k] / (double)med[EVAL]);
    free(x), free(y), free(w), free(b), free(rm), free(rv), free(sm), free(si);
}

int main(int argc, char **argv) {
    int threads = 2, rounds = 15, first_shape = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else {
            first_shape = i;
            break;
        }
    }
    if (threads < 1 || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: native_train_bound [--threads T] [--rounds 1..%d] [SHAPE...]\n",
                MAX_ROUNDS);
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f")) {
        printf("skipped: native_train_bound: this CPU has no AVX-512F\n");
        return 0;
    }
    bn_set_num_threads(threads);
    omp_set_num_threads(threads);
    printf("# shape,threads,impl,median_ns; %d rounds, medians\n", rounds);
    static const char *defaults[] = {"32x64x56x56", "8x32x112x112", "128x16x32x32"};
    if (first_shape < argc)
        for (int i = first_shape; i < argc; i++)
            run_shape(argv[i], threads, rounds);
    else
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            run_shape(defaults[i], threads, rounds);
    return 0;
}
