/*
 * How fast can a training forward be on this machine? Probes for issue 3's "training within 1.3x
 * of eval" target, timed beside libbatchnorm's eval and train in one process, rounds rotating.
 *
 * Two probes do the work of a training forward without its dependency: they read x once,
 * accumulate the statistics in double (sums of deviations and of their squares, four accumulator
 * pairs, the library's lanes) and write y = a*x + b with the library's store policy, all in the
 * same loop, although a real training forward must finish a channel's statistics before it can
 * write the channel's first output. No real kernel moves less data or does less arithmetic:
 *   one-read-channels  channel by channel, each thread a range of channels
 *   one-read-rows      in memory order, per-channel sums kept per thread, masked segment ends
 *                      (so it also covers short rows, where a channel's walk jumps through memory)
 * Two schedules keep the dependency and still read x from memory once, channel by channel, each
 * thread a range of channels; the re-read comes from the core's cache (a channel of the default
 * shapes is 50-524 KB, the L2 is 1 MiB):
 *   fused-pipelined    statistics of channel ch in lockstep with the normalize of channel ch-1
 *   fused-pipelined-4rows  the same, four rows of each channel side by side
 *   fused-sequential   statistics of channel ch, then its normalize
 * They are the library's fused per-channel pass (normalize_moments) in its simplest form: no
 * weight, bias or running statistics, no fallbacks, no prefetching.
 * Three reads of x, nothing written, show what a channel-by-channel walk costs by itself:
 *   read-memory-order    each thread a contiguous run
 *   read-channels        each thread a range of channels, a row (S values) at a time
 *   read-channels-4rows  the same with four rows of a channel read side by side
 *
 * Rows go to stdout as `shape,threads,impl,median_ns` and a ratio to libbatchnorm's eval.
 * With --sets K, x and y have K copies that successive calls take in turn (as in native_bench):
 * with K copies bigger than the last-level cache, every call reads x from memory.
 *
 *   target/native/bench/native_train_bound [--threads T] [--rounds R] [--sets K] [SHAPE...]
 *   (default: 32x64x56x56 8x32x112x112 128x16x32x32 64x256x14x14), built by
 *   `cmake --build target/native --target native_train_bound` after a Maven build.
 * Needs AVX-512F and VL (it says so and exits 0 without them): the probes use the same lanes as
 * the library's AVX-512 kernels.
 */
#define _POSIX_C_SOURCE 200809L

#include <immintrin.h>
#include <math.h>
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

/* 8 floats to q: streamed when the output is big and the row keeps 32-byte alignment */
__attribute__((target("avx2"))) static inline void put8(float *q, __m256 v, int stream) {
    if (stream)
        _mm256_stream_ps(q, v);
    else
        _mm256_storeu_ps(q, v);
}

// x, y are (N,C,S); one pass per channel: statistics of x in double lanes, y = 0.5x + 1
__attribute__((target("avx512f,avx2,fma"))) static double
one_read_channels(float *y, const float *x, int64_t n, int64_t c, int64_t s, int stream) {
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int64_t ch = 0; ch < c; ch++) {
        const __m512d k = _mm512_set1_pd(1.0);
        const __m256 a = _mm256_set1_ps(0.5f), b = _mm256_set1_ps(1.0f);
        __m512d s0 = _mm512_setzero_pd(), s1 = s0, s2 = s0, s3 = s0, q0 = s0, q1 = s0, q2 = s0,
                q3 = s0;
        double tail = 0.0;
        for (int64_t r = 0; r < n; r++) {
            const float *p = x + (r * c + ch) * s;
            float *q = y + (r * c + ch) * s;
            int64_t i = 0;
            for (; i + 32 <= s; i += 32) {
                __m256 u0 = _mm256_loadu_ps(p + i), u1 = _mm256_loadu_ps(p + i + 8);
                __m256 u2 = _mm256_loadu_ps(p + i + 16), u3 = _mm256_loadu_ps(p + i + 24);
                __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(u0), k);
                __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(u1), k);
                __m512d d2 = _mm512_sub_pd(_mm512_cvtps_pd(u2), k);
                __m512d d3 = _mm512_sub_pd(_mm512_cvtps_pd(u3), k);
                s0 = _mm512_add_pd(s0, d0), q0 = _mm512_fmadd_pd(d0, d0, q0);
                s1 = _mm512_add_pd(s1, d1), q1 = _mm512_fmadd_pd(d1, d1, q1);
                s2 = _mm512_add_pd(s2, d2), q2 = _mm512_fmadd_pd(d2, d2, q2);
                s3 = _mm512_add_pd(s3, d3), q3 = _mm512_fmadd_pd(d3, d3, q3);
                put8(q + i, _mm256_fmadd_ps(u0, a, b), stream);
                put8(q + i + 8, _mm256_fmadd_ps(u1, a, b), stream);
                put8(q + i + 16, _mm256_fmadd_ps(u2, a, b), stream);
                put8(q + i + 24, _mm256_fmadd_ps(u3, a, b), stream);
            }
            for (; i < s; i++) {
                double d = (double)p[i] - 1.0;
                tail += d + d * d;
                q[i] = 0.5f * p[i] + 1.0f;
            }
        }
        total += tail + _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s0, s1),
                                                           _mm512_add_pd(s2, s3))) +
                 _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(q0, q1), _mm512_add_pd(q2, q3)));
    }
    _mm_sfence();
    return total;
}

// x, y are (N,C,S); acc is (threads, C, 16)
/* the same work in memory order: each thread takes a contiguous run of (row, channel) segments,
 * keeps per-channel sums in acc (8 sums and 8 squares per channel per thread) and ends each
 * segment with masked vectors, so short rows pay no scalar tail */
__attribute__((target("avx512f,avx512vl,avx2,fma"))) static double
one_read_rows(float *y, const float *x, int64_t n, int64_t c, int64_t s, int stream, double *acc) {
    double total = 0.0;
#pragma omp parallel reduction(+ : total)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t first = n * c * t / nt, last = n * c * (t + 1) / nt;
        double *my = acc + t * c * 16;
        memset(my, 0, (size_t)c * 16 * sizeof(double));
        const __m512d k = _mm512_set1_pd(1.0);
        const __m256 a = _mm256_set1_ps(0.5f), b = _mm256_set1_ps(1.0f);
        for (int64_t g = first; g < last; g++) {
            const float *p = x + g * s;
            float *q = y + g * s;
            double *m = my + (g % c) * 16;
            __m512d s0 = _mm512_load_pd(m), q0 = _mm512_load_pd(m + 8), s1 = _mm512_setzero_pd(),
                    q1 = s1;
            int64_t i = 0;
            for (; i + 16 <= s; i += 16) {
                __m256 u0 = _mm256_loadu_ps(p + i), u1 = _mm256_loadu_ps(p + i + 8);
                __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(u0), k);
                __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(u1), k);
                s0 = _mm512_add_pd(s0, d0), q0 = _mm512_fmadd_pd(d0, d0, q0);
                s1 = _mm512_add_pd(s1, d1), q1 = _mm512_fmadd_pd(d1, d1, q1);
                put8(q + i, _mm256_fmadd_ps(u0, a, b), stream);
                put8(q + i + 8, _mm256_fmadd_ps(u1, a, b), stream);
            }
            for (; i < s; i += 8) {
                __mmask8 mk = (__mmask8)(s - i >= 8 ? 0xff : (1u << (s - i)) - 1);
                __m256 u = _mm256_maskz_loadu_ps(mk, p + i);
                __m512d d = _mm512_maskz_sub_pd(mk, _mm512_cvtps_pd(u), k);
                s1 = _mm512_add_pd(s1, d), q1 = _mm512_fmadd_pd(d, d, q1);
                _mm256_mask_storeu_ps(q + i, mk, _mm256_fmadd_ps(u, a, b));
            }
            _mm512_store_pd(m, _mm512_add_pd(s0, s1));
            _mm512_store_pd(m + 8, _mm512_add_pd(q0, q1));
        }
        for (int64_t j = 0; j < c * 16; j++)
            total += my[j];
    }
    _mm_sfence();
    return total;
}

/* Sum of len floats into four float accumulators (a read, with no chain to wait on). */
__attribute__((target("avx2"))) static inline void read_run(__m256 acc[4], const float *p,
                                                            int64_t len) {
    int64_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int j = 0; j < 4; j++)
            acc[j] = _mm256_add_ps(acc[j], _mm256_loadu_ps(p + i + 8 * j));
    for (; i < len; i++)
        acc[0] = _mm256_add_ps(acc[0], _mm256_set1_ps(p[i]));
}

// x is (N,C,S); reads it all: in memory order (each thread a contiguous run), or channel by
// channel (each thread a range of channels), a row at a time or four rows side by side
enum { WALK_MEMORY, WALK_CHANNELS, WALK_CHANNELS_4ROWS };
__attribute__((target("avx2"))) static double read_walk(const float *x, int64_t n, int64_t c,
                                                       int64_t s, int walk) {
    double total = 0.0;
#pragma omp parallel reduction(+ : total)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                         _mm256_setzero_ps()};
        if (walk == WALK_MEMORY) {
            const int64_t first = n * c * s * t / nt, last = n * c * s * (t + 1) / nt;
            read_run(acc, x + first, last - first);
        } else {
            for (int64_t ch = c * t / nt; ch < c * (t + 1) / nt; ch++) {
                int64_t r = 0;
                /* four rows side by side: one accumulator each, 8 values of each per step */
                for (; walk == WALK_CHANNELS_4ROWS && r + 4 <= n; r += 4) {
                    const float *p = x + (r * c + ch) * s;
                    int64_t i = 0;
                    for (; i + 8 <= s; i += 8)
                        for (int j = 0; j < 4; j++)
                            acc[j] = _mm256_add_ps(acc[j], _mm256_loadu_ps(p + j * c * s + i));
                    for (int j = 0; j < 4; j++)
                        read_run(acc, p + j * c * s + i, s - i);
                }
                for (; r < n; r++)
                    read_run(acc, x + (r * c + ch) * s, s);
            }
        }
        float f[8];
        _mm256_storeu_ps(f, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]),
                                          _mm256_add_ps(acc[2], acc[3])));
        for (int j = 0; j < 8; j++)
            total += f[j];
    }
    return total;
}

/* The fused schedules' statistics: four pairs of double accumulators, and scalar tails. */
typedef struct {
    __m512d s0, s1, s2, s3, q0, q1, q2, q3;
    double ts, tq;
} probe_acc;

__attribute__((target("avx512f,avx2,fma"))) static inline void probe_stats(probe_acc *a,
                                                                          const float *p,
                                                                          int64_t len) {
    const __m512d k = _mm512_set1_pd(1.0);
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m512d d0 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(p + i)), k);
        __m512d d1 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(p + i + 8)), k);
        __m512d d2 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(p + i + 16)), k);
        __m512d d3 = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(p + i + 24)), k);
        a->s0 = _mm512_add_pd(a->s0, d0), a->q0 = _mm512_fmadd_pd(d0, d0, a->q0);
        a->s1 = _mm512_add_pd(a->s1, d1), a->q1 = _mm512_fmadd_pd(d1, d1, a->q1);
        a->s2 = _mm512_add_pd(a->s2, d2), a->q2 = _mm512_fmadd_pd(d2, d2, a->q2);
        a->s3 = _mm512_add_pd(a->s3, d3), a->q3 = _mm512_fmadd_pd(d3, d3, a->q3);
    }
    for (; i < len; i++) {
        double d = (double)p[i] - 1.0;
        a->ts += d;
        a->tq += d * d;
    }
}

/* y = (x - mean) * alpha + 0.25 over len values, the mean as a float pair like the library */
__attribute__((target("avx512f,avx2,fma"))) static inline void
probe_norm(float *q, const float *p, int64_t len, double mean, double alpha, int stream) {
    const float mhf = (float)mean, mlf = (float)(mean - (double)mhf), af = (float)alpha;
    const __m256 mh = _mm256_set1_ps(mhf), ml = _mm256_set1_ps(mlf), al = _mm256_set1_ps(af);
    const __m256 be = _mm256_set1_ps(0.25f);
    int64_t i = 0;
    for (; i + 32 <= len; i += 32)
        for (int j = 0; j < 32; j += 8) {
            __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i + j), mh), ml);
            put8(q + i + j, _mm256_fmadd_ps(d, al, be), stream);
        }
    for (; i < len; i++)
        q[i] = fmaf((p[i] - mhf) - mlf, af, 0.25f);
}

__attribute__((target("avx512f,avx2,fma"))) static inline void
probe_finish(const probe_acc *a, double count, double *mean, double *alpha) {
    double sd = a->ts + _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a->s0, a->s1),
                                                           _mm512_add_pd(a->s2, a->s3)));
    double sq = a->tq + _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a->q0, a->q1),
                                                           _mm512_add_pd(a->q2, a->q3)));
    double d = sd / count;
    *mean = 1.0 + d;
    *alpha = 1.0 / sqrt(sq / count - d * d + 1e-5);
}

// x, y are (N,C,S); per thread a range of channels. Pipelined: the statistics of channel ch in
// lockstep, 32 values at a time, with the normalize of channel ch-1 (cached since its statistics;
// the library's fused_seg steps alike), a row at a time or, with rows4, four rows side by side;
// otherwise the statistics of ch, then its normalize.
__attribute__((target("avx512f,avx2,fma"))) static double
fused(float *y, const float *x, int64_t n, int64_t c, int64_t s, int stream, int pipelined,
      int rows4) {
    double total = 0.0;
#pragma omp parallel reduction(+ : total)
    {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t c0 = c * t / nt, c1 = c * (t + 1) / nt;
        double mean = 0.0, alpha = 1.0; /* of the channel before ch, when pipelined */
        for (int64_t ch = c0; ch < c1 + pipelined; ch++) {
            probe_acc a = {0};
            if (pipelined) {
                const int64_t step = rows4 ? 4 : 1;
                for (int64_t r = 0; r < n; r += step) {
                    const int64_t rows = n - r < step ? n - r : step;
                    for (int64_t i = 0; i < s; i += 32) {
                        int64_t len = s - i < 32 ? s - i : 32;
                        for (int64_t j = 0; j < rows; j++) {
                            const int64_t o = ((r + j) * c + ch) * s + i;
                            if (ch < c1)
                                probe_stats(&a, x + o, len);
                            if (ch > c0)
                                probe_norm(y + o - s, x + o - s, len, mean, alpha, stream);
                        }
                    }
                }
                probe_finish(&a, (double)(n * s), &mean, &alpha);
            } else {
                for (int64_t r = 0; r < n; r++)
                    probe_stats(&a, x + (r * c + ch) * s, s);
                probe_finish(&a, (double)(n * s), &mean, &alpha);
                for (int64_t r = 0; r < n; r++)
                    probe_norm(y + (r * c + ch) * s, x + (r * c + ch) * s, s, mean, alpha, stream);
            }
            total += mean;
        }
    }
    _mm_sfence();
    return total;
}

#define MAX_SETS 64

static void run_shape(const char *text, int threads, int rounds, int sets) {
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
    float *xs[MAX_SETS], *ys[MAX_SETS];
    int have_sets = 1;
    for (int q = 0; q < sets; q++) {
        xs[q] = aligned_alloc(64, bytes), ys[q] = aligned_alloc(64, bytes);
        have_sets &= xs[q] != NULL && ys[q] != NULL;
    }
    float *w = malloc((size_t)c * sizeof(float)), *b = malloc((size_t)c * sizeof(float));
    float *rm = malloc((size_t)c * sizeof(float)), *rv = malloc((size_t)c * sizeof(float));
    double *sm = malloc((size_t)c * sizeof(double)), *si = malloc((size_t)c * sizeof(double));
    double *acc = aligned_alloc(64, (size_t)(omp_get_max_threads() * c * 16) * sizeof(double));
    if (!have_sets || !w || !b || !rm || !rv || !sm || !si || !acc) {
        fprintf(stderr, "native_train_bound: out of memory for %s\n", text);
        exit(1);
    }
    for (int q = 0; q < sets; q++)
        for (int64_t i = 0; i < n * c * s; i++)
            xs[q][i] = (float)(i % 1009) * 0.01f, ys[q][i] = 0.0f;
    for (int64_t i = 0; i < c; i++)
        w[i] = 1.0f, b[i] = 0.0f, rm[i] = 0.0f, rv[i] = 1.0f;
    /* the library's rule (bn_make_rows), and rows that keep 32-byte alignment */
    int stream = bytes >= ((size_t)16 << 20) && s >= 64 && s % 8 == 0;
    enum {
        EVAL,
        TRAIN,
        ONE_READ_CHANNELS,
        ONE_READ_ROWS,
        FUSED_PIPELINED,
        FUSED_PIPELINED_4ROWS,
        FUSED_SEQUENTIAL,
        READ_MEMORY,
        READ_CHANNELS,
        READ_CHANNELS_4ROWS,
        IMPLS
    };
    static const char *names[IMPLS] = {
        "panama-batchnorm-c-eval", "panama-batchnorm-c-train", "one-read-channels",
        "one-read-rows",           "fused-pipelined",          "fused-pipelined-4rows",
        "fused-sequential",        "read-memory-order",        "read-channels",
        "read-channels-4rows"};
    static int64_t t[IMPLS][MAX_ROUNDS];
    volatile double sink = 0.0;
    int calls = (int)(20000000 / (n * c * s)) + 2, next = 0;
    for (int r = -1; r < rounds; r++) /* round -1 warms up */
        for (int k = 0; k < IMPLS; k++) {
            int impl = (k + r + 1) % IMPLS; /* rotate, so no impl always follows the same one */
            int64_t t0 = now_ns();
            for (int i = 0; i < calls; i++) {
                float *x = xs[next], *y = ys[next];
                next = (next + 1) % sets;
                if (impl == EVAL)
                    bn_forward_eval_f32(y, x, w, b, rm, rv, n, c, s, BN_LAYOUT_NCS, 1e-5);
                else if (impl == TRAIN)
                    bn_forward_train_f32(y, sm, si, rm, rv, x, w, b, n, c, s, BN_LAYOUT_NCS, 1e-5,
                                         0.1);
                else if (impl == ONE_READ_CHANNELS)
                    sink += one_read_channels(y, x, n, c, s, stream);
                else if (impl == ONE_READ_ROWS)
                    sink += one_read_rows(y, x, n, c, s, stream, acc);
                else if (impl == FUSED_PIPELINED || impl == FUSED_PIPELINED_4ROWS ||
                         impl == FUSED_SEQUENTIAL)
                    sink += fused(y, x, n, c, s, stream, impl != FUSED_SEQUENTIAL,
                                  impl == FUSED_PIPELINED_4ROWS);
                else
                    sink += read_walk(x, n, c, s,
                                      impl == READ_MEMORY     ? WALK_MEMORY
                                      : impl == READ_CHANNELS ? WALK_CHANNELS
                                                              : WALK_CHANNELS_4ROWS);
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
    for (int q = 0; q < sets; q++)
        free(xs[q]), free(ys[q]);
    free(w), free(b), free(rm), free(rv), free(sm), free(si), free(acc);
}

int main(int argc, char **argv) {
    int threads = 2, rounds = 15, sets = 1, first_shape = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--sets") == 0 && i + 1 < argc)
            sets = atoi(argv[++i]);
        else {
            first_shape = i;
            break;
        }
    }
    if (threads < 1 || rounds < 1 || rounds > MAX_ROUNDS || sets < 1 || sets > MAX_SETS) {
        fprintf(stderr,
                "usage: native_train_bound [--threads T] [--rounds 1..%d] [--sets 1..%d] "
                "[SHAPE...]\n",
                MAX_ROUNDS, MAX_SETS);
        return 2;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512vl")) {
        printf("skipped: native_train_bound: this CPU has no AVX-512F and VL\n");
        return 0;
    }
    bn_set_num_threads(threads);
    omp_set_num_threads(threads);
    printf("# shape,threads,impl,median_ns; %d rounds, medians; %d set(s) of x and y\n", rounds,
           sets);
    static const char *defaults[] = {"32x64x56x56", "8x32x112x112", "128x16x32x32",
                                     "64x256x14x14"};
    if (first_shape < argc)
        for (int i = first_shape; i < argc; i++)
            run_shape(argv[i], threads, rounds, sets);
    else
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            run_shape(defaults[i], threads, rounds, sets);
    return 0;
}
