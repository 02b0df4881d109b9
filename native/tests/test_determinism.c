/*
 * Results must be bit-identical for thread counts 1..4: the reduction tree is a function of the
 * shape alone. Shapes where the split matters: one huge channel, fewer channels than threads,
 * many small channels, rows that cross statistics blocks, short rows (walked as channel groups
 * by one thread and as per-channel blocks by several).
 */
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "test_util.h"

typedef struct {
    int64_t n, c, s;
} shape;

/* Everything the four entry points write for one input. */
typedef struct {
    float *y, *ye, *dx, *dxe, *rm, *rv, *dw, *db, *dwe, *dbe;
    double *sm, *si;
    float *yi, *dxi, *rmi, *rvi; /* in place: y == x, dx == dy */
    double *smi, *sii;
} outputs;

static void run_all(outputs *o, const float *x, const float *dy, const float *w, const float *b,
                    shape sh) {
    int64_t c = sh.c;
    for (int64_t ch = 0; ch < c; ch++) {
        o->rm[ch] = 0.5f;
        o->rv[ch] = 2.0f;
    }
    int32_t st = bn_forward_train_f32(o->y, o->sm, o->si, o->rm, o->rv, x, w, b, sh.n, c, sh.s,
                                      BN_LAYOUT_NCS, 1e-5, 0.1);
    st |= bn_forward_eval_f32(o->ye, x, w, b, o->rm, o->rv, sh.n, c, sh.s, BN_LAYOUT_NCS, 1e-5);
    st |= bn_backward_train_f32(o->dx, o->dw, o->db, dy, x, w, o->sm, o->si, sh.n, c, sh.s,
                                BN_LAYOUT_NCS);
    st |= bn_backward_eval_f32(o->dxe, o->dwe, o->dbe, dy, x, w, o->rm, o->rv, sh.n, c, sh.s,
                               BN_LAYOUT_NCS, 1e-5);
    CHECK(st == BN_OK, "status %d", st);
    int64_t total = sh.n * c * sh.s;
    memcpy(o->yi, x, (size_t)total * sizeof(float));
    memcpy(o->dxi, dy, (size_t)total * sizeof(float));
    memcpy(o->rmi, o->rm, (size_t)c * sizeof(float));
    memcpy(o->rvi, o->rv, (size_t)c * sizeof(float));
    st = bn_forward_train_f32(o->yi, o->smi, o->sii, o->rmi, o->rvi, o->yi, w, b, sh.n, c, sh.s,
                              BN_LAYOUT_NCS, 1e-5, 0.1);
    st |= bn_backward_train_f32(o->dxi, NULL, NULL, o->dxi, x, w, o->sm, o->si, sh.n, c, sh.s,
                                BN_LAYOUT_NCS);
    CHECK(st == BN_OK, "in-place status %d", st);
}

static void alloc(outputs *o, int64_t total, int64_t c) {
    size_t t = (size_t)total * sizeof(float), cf = (size_t)c * sizeof(float);
    o->y = malloc(t), o->ye = malloc(t), o->dx = malloc(t), o->dxe = malloc(t);
    o->rm = malloc(cf), o->rv = malloc(cf), o->dw = malloc(cf), o->db = malloc(cf);
    o->dwe = malloc(cf), o->dbe = malloc(cf);
    o->sm = malloc((size_t)c * sizeof(double)), o->si = malloc((size_t)c * sizeof(double));
    o->yi = malloc(t), o->dxi = malloc(t), o->rmi = malloc(cf), o->rvi = malloc(cf);
    o->smi = malloc((size_t)c * sizeof(double)), o->sii = malloc((size_t)c * sizeof(double));
}

static void release(outputs *o) {
    free(o->y), free(o->ye), free(o->dx), free(o->dxe), free(o->rm), free(o->rv), free(o->dw);
    free(o->db), free(o->dwe), free(o->dbe), free(o->sm), free(o->si);
    free(o->yi), free(o->dxi), free(o->rmi), free(o->rvi), free(o->smi), free(o->sii);
}

#define SAME(field, bytes) \
    CHECK(!memcmp(a->field, b->field, (bytes)), "%s differs with %d threads, shape %lldx%lldx%lld", \
          #field, threads, (long long)sh.n, (long long)sh.c, (long long)sh.s)

static void compare(const outputs *a, const outputs *b, int64_t total, int64_t c, int threads,
                    shape sh) {
    size_t t = (size_t)total * sizeof(float), cf = (size_t)c * sizeof(float);
    SAME(y, t);
    SAME(ye, t);
    SAME(dx, t);
    SAME(dxe, t);
    SAME(rm, cf);
    SAME(rv, cf);
    SAME(dw, cf);
    SAME(db, cf);
    SAME(dwe, cf);
    SAME(dbe, cf);
    SAME(sm, (size_t)c * sizeof(double));
    SAME(si, (size_t)c * sizeof(double));
    SAME(yi, t);
    SAME(dxi, t);
    SAME(rmi, cf);
    SAME(rvi, cf);
    SAME(smi, (size_t)c * sizeof(double));
    SAME(sii, (size_t)c * sizeof(double));
}

/* The training forward is the statistics phase and the forward from its statistics, bit for
 * bit: the fused pass (long rows) and the reduction alone add the same values in the same
 * order. x of mean 0.3 and spread 1, so that its squared deviations carry all 48 bits and a
 * different order of their sums shows in m2, save_invstd and y. The forward runs on x and y as
 * allocated, on both a few elements off it (the fused pass aligns its output, not its reduction),
 * and in place there. */
static void same_bits_as_the_phases(shape sh, const float *w, const float *b, rng *r) {
    int64_t c = sh.c, total = sh.n * c * sh.s;
    size_t cd = (size_t)c * sizeof(double), cf = (size_t)c * sizeof(float);
    double *mean = malloc(cd), *m2 = malloc(cd), *sm = malloc(cd), *si = malloc(cd);
    double *sm1 = malloc(cd), *si1 = malloc(cd);
    float *rm = malloc(cf), *rv = malloc(cf);
    size_t bytes = (size_t)total * sizeof(float);
    float *x = malloc(bytes), *y = malloc(bytes), *y1 = malloc(bytes + 64);
    float *x1 = malloc(bytes + 64);
    for (int64_t i = 0; i < total; i++)
        x[i] = (float)(0.3 + rng_normal(r));
    static const char *how[] = {"", ", x and y 3 and 7 elements past an allocation",
                                ", in place 7 elements past an allocation"};
    for (int run = 0; run < 6; run++) {
        int threads = 1 + run % 2, moved = run / 2;
        float *xr = moved == 0 ? x : moved == 1 ? x1 + 3 : y1 + 7;
        float *yr = moved == 0 ? y1 : y1 + 7;
        if (moved)
            memcpy(xr, x, bytes);
        bn_set_num_threads(threads);
        for (int64_t ch = 0; ch < c; ch++)
            rm[ch] = 0.5f, rv[ch] = 2.0f;
        int32_t st = bn_forward_train_f32(yr, sm1, si1, rm, rv, xr, w, b, sh.n, c, sh.s,
                                          BN_LAYOUT_NCS, 1e-5, 0.1);
        st |= bn_stats(mean, m2, x, sh.n, c, sh.s, BN_LAYOUT_NCS, BN_F32);
        st |= bn_forward_from_stats(y, sm, si, rm, rv, x, NULL, w, b, mean, m2, sh.n * sh.s, sh.n,
                                    c, sh.s, BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE, 1e-5, 0.1, 0);
        CHECK(st == BN_OK, "phases status %d", st);
        CHECK(memcmp(sm, sm1, cd) == 0 && memcmp(si, si1, cd) == 0 && memcmp(y, yr, bytes) == 0,
              "shape %lldx%lldx%lld, %d threads%s: the phases differ from one forward",
              (long long)sh.n, (long long)c, (long long)sh.s, threads, how[moved]);
    }
    free(mean), free(m2), free(sm), free(si), free(sm1), free(si1), free(rm), free(rv);
    free(x), free(x1), free(y), free(y1);
}

int main(void) {
    static const shape shapes[] = {
        {1, 1, 1000003},  /* one huge channel */
        {2, 1, 150001},
        {3, 3, 40000},    /* fewer channels than threads */
        {5, 2, 33333},
        {1000, 300, 1},   /* many small channels */
        {64, 33, 49},     /* short rows: blocks cross rows */
        {8, 5, 12345},
        {7, 4, 4096 * 3 + 1},
        {4000, 5, 7},     /* short rows: channel groups on one thread, block split on more */
        {2000, 7, 3},
        {6, 16, 2000},    /* long rows, by channel: the fused statistics + normalize pass */
        {3, 1100, 20},    /* more channels than a memory-order window */
        {2, 600, 100},    /* short rows: the two-pass schedules */
        {40, 1024, 17},   /* memory-order reductions: C at the window, odd rows */
        {3, 1000, 33},    /* fewer row blocks than threads */
        {300, 64, 49},    /* a shorter last row block */
        {256, 96, 196},
        {360, 256, 47},   /* past 16 MiB with rows of 47: normalize streams lines across channels */
        {16, 70, 4000},   /* past 16 MiB, rows of 1024-8191: by channel, four rows side by side */
        {19, 150, 1501},  /* the same in row blocks of two, rows off 32-byte boundaries */
        {255, 17, 2056},  /* the same with the most row blocks it takes (255) */
    };
    rng r = {7};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        shape sh = shapes[k];
        int64_t total = sh.n * sh.c * sh.s, c = sh.c;
        float *x = malloc((size_t)total * sizeof(float)), *dy = malloc((size_t)total * sizeof(float));
        float *w = malloc((size_t)c * sizeof(float)), *b = malloc((size_t)c * sizeof(float));
        for (int64_t i = 0; i < total; i++) {
            x[i] = (float)(12345.678 + 0.37 * rng_normal(&r) + (double)((i / sh.s) % c));
            dy[i] = (float)(rng_normal(&r) + 0.1);
        }
        for (int64_t ch = 0; ch < c; ch++) {
            w[ch] = (float)(0.5 + rng_uniform(&r));
            b[ch] = (float)(rng_uniform(&r) - 0.5);
        }
        outputs ref, o;
        alloc(&ref, total, c);
        alloc(&o, total, c);
        bn_set_num_threads(1);
        run_all(&ref, x, dy, w, b, sh);
        for (int threads = 2; threads <= 4; threads++) {
            bn_set_num_threads(threads);
            run_all(&o, x, dy, w, b, sh);
            compare(&ref, &o, total, c, threads, sh);
        }
        same_bits_as_the_phases(sh, w, b, &r);
        release(&ref), release(&o);
        free(x), free(dy), free(w), free(b);
    }
    return finish("test_determinism");
}
