/*
 * A STREAM-like DRAM bandwidth probe: the roofline that BatchNorm, a memory-bound op, is
 * measured against in scripts/bench.sh.
 *
 *   copy:  c[i] = a[i]            16 bytes per element moved (read a, write c)
 *   triad: a[i] = b[i] + q*c[i]   24 bytes per element moved (read b and c, write a)
 *
 * Bytes are counted the STREAM way (no write-allocate traffic), the same convention the suite
 * uses for BatchNorm's minimal traffic. Arrays are double; scripts/bench.sh sizes them past the
 * last-level cache the OS reports. Only --threads, --rounds, --warmup and --min-round-ms of the
 * common options apply; rows: shape = elements per array, layout "-", dtype f64, op copy|triad,
 * impl stream, cache "-".
 */
#include <omp.h>

#include "bench_common.h"

static const char *usage =
    "usage: stream_bench [--threads 1,2] [--rounds R] [--warmup W] [--min-round-ms T] [--mib M]\n"
    "  M: MiB per array (three arrays), default 128\n";

static double mib = 128;

static int parse_mib(const char *key, const char *value) {
    if (strcmp(key, "--mib") != 0 || atof(value) <= 0) {
        return 1;
    }
    mib = atof(value);
    return 0;
}

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
    int parsed = bench_parse_plan(&plan, argc, argv, usage, parse_mib);
    if (parsed != 0) {
        return parsed == 1 ? 0 : 2;
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
    printf("shape,layout,dtype,op,impl,threads,cache,median_ns\n");
    for (int t = 0; t < plan.num_threads; t++) {
        omp_set_num_threads(plan.threads[t]);
        bench_timed group[2] = {{.fn = copy_kernel, .ctx = &v}, {.fn = triad_kernel, .ctx = &v}};
        double ns[2];
        bench_time_group(group, 2, &plan, CACHE_WARM, ns);
        const double copy_ns = ns[0], triad_ns = ns[1];
        printf("%lld,-,f64,copy,stream,%d,-,%.0f\n", (long long)v.len, plan.threads[t], copy_ns);
        printf("%lld,-,f64,triad,stream,%d,-,%.0f\n", (long long)v.len, plan.threads[t], triad_ns);
        printf("# threads %d: copy %.1f GB/s, triad %.1f GB/s\n", plan.threads[t],
               16.0 * (double)v.len / copy_ns, 24.0 * (double)v.len / triad_ns);
        fflush(stdout);
    }
    free(v.a);
    free(v.b);
    free(v.c);
    return 0;
}
