/*
 * The core's floor under a two-pass training forward (issue 3's train/eval target on short rows).
 *
 * Training in two passes reads x for its statistics, then normalizes it as eval does. With the
 * statistics in double, their arithmetic can cost more than the read: on rows of 49 values it
 * does even with x in L1. This tool measures that arithmetic with the library's own row kernel
 * (moments_rows of the kernel set the library picks on this CPU, built into the tool from the
 * same sources), on a tile of the shape's rows that stays in the L1 cache (the L2 for rows of
 * more than 6K values), on one thread. Then, in one process and in alternating rounds, it times
 * the library's eval and training of the whole shape, warm, as native_bench does.
 *
 * Per shape it prints the statistics at the core's speed split over the threads, and
 *   floor = (eval + statistics at L1 speed) / eval,
 * the lowest train/eval ratio a training forward in two passes can reach with this kernel,
 * beside the ratio training measured. It is that floor only for shapes the library trains in two
 * passes in memory order: not for the one-read schedule (rows of 1024-8191 values in outputs of
 * 16 MiB and more), nor for small tensors and rows of one value, which take paths of their own.
 *
 *   target/native/bench/native_stats_core [--threads T] [--rounds R] [SHAPE...]
 *   (default: the three target shapes), built by
 *   `cmake --build target/native --target native_stats_core` after a Maven build.
 */
#define _POSIX_C_SOURCE 200809L

#include "batchnorm.h"
#include "bench_common.h"
#include "bn_internal.h"

#define MAX_ROUNDS 101

typedef struct {
    const bn_kernels *kern;
    bn_row_state *st;
    const float *tile;
    const double *k;
    int64_t rows, c, s;
} stats_tile;

static void stats_call(void *p) {
    const stats_tile *t = p;
    t->kern->moments_rows(t->st, t->tile, t->rows, t->s, t->c, t->k);
}

/* Two rows (the short-row kernel's pairs need two) of enough channels for about 16 KB, timed by
 * bench_time's rule in rounds of at least 2 ms. */
// tile is (2, c, s)
static double stats_ns_per_value(int64_t s, int rounds) {
    const int64_t rows = 2, c = s >= 2048 ? 1 : 2048 / s, count = rows * c * s;
    float *tile = aligned_alloc(64, (size_t)count * sizeof(float));
    bn_row_state *st = calloc((size_t)c, sizeof(bn_row_state));
    double *k = malloc((size_t)c * sizeof(double));
    if (!tile || !st || !k) {
        fprintf(stderr, "native_stats_core: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < count; i++)
        tile[i] = 3.0f + (float)(i % 1009) * 0.004f;
    for (int64_t j = 0; j < c; j++)
        k[j] = tile[j * s];
    stats_tile t = {bn_kernels_select(), st, tile, k, rows, c, s};
    bench_plan plan = {.rounds = rounds, .warmup = 3, .min_round_ns = 2000000};
    double ns = bench_time(stats_call, &t, &plan) / (double)count;
    free(tile), free(st), free(k);
    return ns;
}

static void run_shape(const char *text, int threads, int rounds) {
    bench_shape shape;
    if (bench_parse_shape(&shape, text) != 0) {
        fprintf(stderr, "native_stats_core: bad shape '%s' (want NxCxHxW)\n", text);
        return;
    }
    const int64_t n = shape.n, c = shape.c, s = shape.s;
    const int64_t count = n * c * s;
    float *x = aligned_alloc(64, (size_t)count * sizeof(float));
    float *y = aligned_alloc(64, (size_t)count * sizeof(float));
    float *w = malloc((size_t)c * sizeof(float)), *b = malloc((size_t)c * sizeof(float));
    float *rm = malloc((size_t)c * sizeof(float)), *rv = malloc((size_t)c * sizeof(float));
    double *sm = malloc((size_t)c * sizeof(double)), *si = malloc((size_t)c * sizeof(double));
    if (!x || !y || !w || !b || !rm || !rv || !sm || !si) {
        fprintf(stderr, "native_stats_core: out of memory for %s\n", text);
        exit(1);
    }
    for (int64_t i = 0; i < count; i++)
        x[i] = (float)(i % 1009) * 0.01f, y[i] = 0.0f;
    for (int64_t i = 0; i < c; i++)
        w[i] = 1.0f, b[i] = 0.0f, rm[i] = 0.0f, rv[i] = 1.0f;

    double per_value = stats_ns_per_value(s, rounds);
    double eval[MAX_ROUNDS], train[MAX_ROUNDS];
    const int calls = (int)(20000000 / count) + 2;
    for (int r = -1; r < rounds; r++) /* round -1 warms up; the order alternates */
        for (int k = 0; k < 2; k++) {
            int is_train = (k + r) % 2 != 0;
            int64_t t0 = bench_now_ns();
            for (int i = 0; i < calls; i++) {
                int32_t status =
                    is_train ? bn_forward_train_f32(y, sm, si, rm, rv, x, w, b, n, c, s,
                                                    BN_LAYOUT_NCS, 1e-5, 0.1)
                             : bn_forward_eval_f32(y, x, w, b, rm, rv, n, c, s, BN_LAYOUT_NCS,
                                                   1e-5);
                if (status != BN_OK) {
                    fprintf(stderr, "native_stats_core: %s\n", bn_status_message(status));
                    exit(1);
                }
            }
            if (r >= 0)
                (is_train ? train : eval)[r] = (double)(bench_now_ns() - t0) / calls;
        }
    double ev = bench_median(eval, rounds), tr = bench_median(train, rounds);
    double stats = per_value * (double)count / threads;
    printf("%s,%d,%.4f,%.1f,%.1f,%.1f,%.2f,%.2f\n", text, threads, per_value, stats / 1e3,
           ev / 1e3, tr / 1e3, (ev + stats) / ev, tr / ev);
    free(x), free(y), free(w), free(b), free(rm), free(rv), free(sm), free(si);
}

int main(int argc, char **argv) {
    int threads = 2, rounds = 11, first_shape = argc;
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
        fprintf(stderr, "usage: native_stats_core [--threads T] [--rounds 1..%d] [SHAPE...]\n",
                MAX_ROUNDS);
        return 2;
    }
    int32_t status = bn_set_num_threads(threads);
    if (status != BN_OK) {
        fprintf(stderr, "native_stats_core: --threads %d: %s\n", threads, bn_status_message(status));
        return 2;
    }
    printf("# shape,threads,stats_ns_per_value_l1,stats_l1_us,eval_us,train_us,floor,train_ratio;"
           " %d rounds, medians\n",
           rounds);
    printf("# stats_l1_us = the statistics at L1 speed split over the threads; floor = (eval + "
           "stats_l1) / eval\n");
    static const char *defaults[] = {"32x64x56x56", "256x512x7x7", "64x256x14x14"};
    if (first_shape < argc)
        for (int i = first_shape; i < argc; i++)
            run_shape(argv[i], threads, rounds);
    else
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
            run_shape(defaults[i], threads, rounds);
    return 0;
}
