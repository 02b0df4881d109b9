/*
 * A STREAM-like DRAM bandwidth probe: the roofline that BatchNorm, a memory-bound op, is
 * measured against in scripts/bench.sh.
 *
 *   copy:  c[i] = a[i]            16 bytes per element moved (read a, write c)
 *   triad: a[i] = b[i] + q*c[i]   24 bytes per element moved (read b and c, write a)
 *
 * Bytes are counted the STREAM way (no write-allocate traffic), the same convention the suite
 * uses for BatchNorm's minimal traffic. Arrays are double, far larger than the caches.
 * Rows: shape = elements per array, layout "-", op copy|triad, impl stream-copy|stream-triad.
 *
 * Build: gcc -O3 -fopenmp -o stream_bench stream_bench.c
 */
#include <omp.h>

#include "bench_common.h"

static const char *usage =
    "usage: stream_bench [--threads 1,2] [--rounds R] [--warmup W] [--min-round-ms T] [--mib M]\n"
    "  M: MiB per array (three arrays), default 128\n";

typedef struct {
    double *a, *b, *c;
    int64_t len;
} arrays;

// a, c are (len)
static void copy_kernel(void *ctx) {
    arrays *v = ctx;
    double *restrict c = v->c;
    const double *restrict a = v->a;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < v->len; i++) {
        c[i] = a[i];
    }
}

// a, b, c are (len)
static void triad_kernel(void *ctx) {
    arrays *v = ctx;
    double *restrict a = v->a;
    const double *restrict b = v->b;
    const double *restrict c = v->c;
    const double q = 3.0;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < v->len; i++) {
        a[i] = b[i] + q * c[i];
    }
}

// a, b, c are (len): first touch under the same static split the kernels use
static void fill(arrays *v) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < v->len; i++) {
        v->a[i] = 1.0;
        v->b[i] = 2.0;
        v->c[i] = 0.0;
    }
}

int main(int argc, char **argv) {
    bench_plan plan;
    int i = bench_parse_plan(&plan, argc, argv, usage);
    if (i < 0) {
        return 2;
    }
    double mib = 128;
    for (; i < argc; i += 2) {
        if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc && atof(argv[i + 1]) > 0) {
            mib = atof(argv[i + 1]);
        } else {
            fprintf(stderr, "unknown or incomplete argument '%s'\n%s", argv[i], usage);
            return 2;
        }
    }
    arrays v;
    v.len = (int64_t)(mib * 1024 * 1024 / sizeof(double));
    size_t bytes = (size_t)v.len * sizeof(double);
    v.a = aligned_alloc(64, bytes);
    v.b = aligned_alloc(64, bytes);
    v.c = aligned_alloc(64, bytes);
    if (v.a == NULL || v.b == NULL || v.c == NULL) {
        fprintf(stderr, "stream_bench: cannot allocate 3 x %.0f MiB\n", mib);
        return 1;
    }
    fill(&v);

    printf("# stream_bench: 3 arrays of %lld doubles (%.0f MiB each); copy 16 B/elem, triad 24 B/elem\n",
           (long long)v.len, mib);
    printf("shape,layout,op,impl,threads,median_ns\n");
    for (int t = 0; t < plan.num_threads; t++) {
        omp_set_num_threads(plan.threads[t]);
        double copy_ns = bench_time(copy_kernel, &v, &plan);
        printf("%lld,-,copy,stream-copy,%d,%.0f\n", (long long)v.len, plan.threads[t], copy_ns);
        double triad_ns = bench_time(triad_kernel, &v, &plan);
        printf("%lld,-,triad,stream-triad,%d,%.0f\n", (long long)v.len, plan.threads[t], triad_ns);
        printf("# threads %d: copy %.1f GB/s, triad %.1f GB/s\n", plan.threads[t],
               16.0 * (double)v.len / copy_ns, 24.0 * (double)v.len / triad_ns);
        fflush(stdout);
    }
    free(v.a);
    free(v.b);
    free(v.c);
    return 0;
}
