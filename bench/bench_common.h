/*
 * Shared by the C benchmark harnesses (stream_bench.c, onednn_bench.c, lib_ab.c, stats_core.c):
 * argument parsing, the clock, and the timing rule every peer in scripts/bench.sh follows:
 *   warm up, pick a repeat count k so that one round lasts at least min_round_ns, run `rounds`
 *   rounds of k calls, report the median over rounds of the mean time per call.
 * Rows go to stdout as CSV `shape,layout,op,impl,threads,median_ns`; lines starting with '#'
 * are comments for the reader.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_DIMS 5
#define BENCH_MAX_LIST 16

typedef struct {
    int rank;
    int64_t dims[BENCH_MAX_DIMS];
    int64_t n, c, s; /* the (N, C, S) view: S is the product of the spatial dims */
    char text[64];   /* as given, e.g. "32x64x56x56" */
} bench_shape;

typedef struct {
    int threads[BENCH_MAX_LIST];
    int num_threads;
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

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..count), count >= 1 (sorts v). */
static inline double bench_median(double *v, int count) {
    qsort(v, (size_t)count, sizeof v[0], bench_cmp_double);
    return count % 2 == 1 ? v[count / 2] : 0.5 * (v[count / 2 - 1] + v[count / 2]);
}

/* Median over rounds of the mean time per call of fn(ctx), in ns (the rule in the header). */
static inline double bench_time(void (*fn)(void *), void *ctx, const bench_plan *plan) {
    for (int i = 0; i < plan->warmup; i++) {
        fn(ctx);
    }
    int64_t reps = 1;
    for (;;) {
        int64_t t0 = bench_now_ns();
        for (int64_t i = 0; i < reps; i++) {
            fn(ctx);
        }
        int64_t elapsed = bench_now_ns() - t0;
        if (elapsed >= plan->min_round_ns || reps >= (INT64_C(1) << 30)) {
            break;
        }
        reps *= 2;
    }
    double per_call[1024];
    int rounds = plan->rounds;
    for (int r = 0; r < rounds; r++) {
        int64_t t0 = bench_now_ns();
        for (int64_t i = 0; i < reps; i++) {
            fn(ctx);
        }
        per_call[r] = (double)(bench_now_ns() - t0) / (double)reps;
    }
    return bench_median(per_call, rounds);
}

/* Parses the options common to every harness (--threads 1,2 --rounds R --warmup W
 * --min-round-ms T) and stops at the first other argument; returns its index, or -1 after
 * printing a usage error. */
static inline int bench_parse_plan(bench_plan *plan, int argc, char **argv, const char *usage) {
    plan->threads[0] = 1;
    plan->threads[1] = 2;
    plan->num_threads = 2;
    plan->rounds = 15;
    plan->warmup = 3;
    plan->min_round_ns = 20000000;
    int i = 1;
    for (; i + 1 < argc; i += 2) {
        const char *a = argv[i];
        const char *v = argv[i + 1];
        if (strcmp(a, "--threads") == 0) {
            plan->num_threads = bench_parse_int_list(plan->threads, BENCH_MAX_LIST, v);
        } else if (strcmp(a, "--rounds") == 0) {
            plan->rounds = atoi(v);
        } else if (strcmp(a, "--warmup") == 0) {
            plan->warmup = atoi(v);
        } else if (strcmp(a, "--min-round-ms") == 0) {
            plan->min_round_ns = (int64_t)(atof(v) * 1e6);
        } else {
            break;
        }
    }
    if (i < argc && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)) {
        fputs(usage, stdout);
        return -1;
    }
    if (plan->num_threads < 1 || plan->rounds < 1 || plan->rounds > 1024 || plan->warmup < 0 ||
        plan->min_round_ns < 0) {
        fprintf(stderr, "bad --threads, --rounds (1..1024), --warmup or --min-round-ms\n%s", usage);
        return -1;
    }
    return i;
}

#endif /* BENCH_COMMON_H */
