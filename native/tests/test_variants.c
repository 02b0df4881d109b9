/*
 * Layouts, element types, epilogues and the statistics phases against a long-double reference:
 * every entry point of batchnorm.h on random shapes in both layouts and all three element types,
 * with and without the fused ReLU / Add+ReLU, in place and out of place; a batch split into shards
 * through the phases against one whole call; bit-identical results for 1..4 threads.
 *
 * Tolerances: outputs are rounded once from double, so an output is within half an ulp of its
 * type plus the error of the statistics it uses. We allow 2 ulps of the type at the output's
 * scale (|xhat*w| + |b| + |z|) for float16/bfloat16, and 4 ulps for float32, whose statistics'
 * error is not negligible against its ulp. Statistics accumulate in double: 1e-12 relative.
 */
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/elem.h"
#include "batchnorm.h"
#include "test_util.h"

static rng g_rng = {7771u};

typedef struct {
    int64_t n, c, s;
    int32_t layout, dtype, act;
} problem;

static const char *dtype_name[] = {"f32", "bf16", "f16"};

static int64_t esize(int32_t dt) {
    return dt == BN_F32 ? 4 : 2;
}

static int64_t index_of(const problem *p, int64_t n, int64_t ch, int64_t i) {
    return p->layout == BN_LAYOUT_NCS ? (n * p->c + ch) * p->s + i : (n * p->s + i) * p->c + ch;
}

static double get(const problem *p, const void *t, int64_t k) {
    if (p->dtype == BN_F32)
        return ((const float *)t)[k];
    uint16_t h = ((const uint16_t *)t)[k];
    return p->dtype == BN_BF16 ? bn_bf16_to_float(h) : bn_f16_to_float(h);
}

static void put(const problem *p, void *t, int64_t k, double v) {
    if (p->dtype == BN_F32)
        ((float *)t)[k] = (float)v;
    else if (p->dtype == BN_BF16)
        ((uint16_t *)t)[k] = bn_float_to_bf16((float)v);
    else
        ((uint16_t *)t)[k] = bn_float_to_f16((float)v);
}

/* The spacing of the type's subnormals: an absolute floor under every relative tolerance. */
static double tiny(int32_t dt) {
    return dt == BN_F16 ? 0x1p-24 : dt == BN_BF16 ? 0x1p-133 : 0x1p-149;
}

/* The type's unit roundoff: half an ulp, relative. */
static double unit(int32_t dt) {
    return dt == BN_F32 ? 1.0 / 16777216.0 : dt == BN_BF16 ? 1.0 / 256.0 : 1.0 / 2048.0;
}

static void *tensor(const problem *p) {
    return malloc((size_t)(p->n * p->c * p->s > 0 ? p->n * p->c * p->s : 1) * (size_t)esize(p->dtype));
}

/* Per channel: a mean (sometimes large against the spread) and a spread. */
static void fill(const problem *p, void *x, double big) {
    for (int64_t ch = 0; ch < p->c; ch++) {
        double mean = big * (rng_uniform(&g_rng) - 0.5), sd = 0.2 + 2.0 * rng_uniform(&g_rng);
        for (int64_t n = 0; n < p->n; n++)
            for (int64_t i = 0; i < p->s; i++)
                put(p, x, index_of(p, n, ch, i), mean + sd * rng_normal(&g_rng));
    }
}

static void fill_uniform(const problem *p, void *t, double lo, double hi) {
    for (int64_t k = 0; k < p->n * p->c * p->s; k++)
        put(p, t, k, lo + (hi - lo) * rng_uniform(&g_rng));
}

static void fill_floats(float *v, int64_t c, double lo, double hi) {
    for (int64_t i = 0; i < c; i++)
        v[i] = (float)(lo + (hi - lo) * rng_uniform(&g_rng));
}

static long double ref_mean(const problem *p, const void *x, int64_t ch, long double *var) {
    int64_t m = p->n * p->s;
    long double sum = 0, sq = 0;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t i = 0; i < p->s; i++)
            sum += get(p, x, index_of(p, n, ch, i));
    long double mean = sum / m;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t i = 0; i < p->s; i++) {
            long double d = get(p, x, index_of(p, n, ch, i)) - mean;
            sq += d * d;
        }
    *var = sq / m;
    return mean;
}

static void describe(char *buf, size_t len, const problem *p) {
    snprintf(buf, len, "(%lld,%lld,%lld) %s %s act %d", (long long)p->n, (long long)p->c,
             (long long)p->s, p->layout == BN_LAYOUT_NCS ? "ncs" : "nsc", dtype_name[p->dtype],
             p->act);
}

/* Training forward and backward against the reference; in place (inplace 1: y = x, dx = dy;
 * inplace 2: y = x, dz = dy) or not. */
static void check_train(const problem *p, int inplace, double big) {
    char what[96];
    describe(what, sizeof what, p);
    int64_t c = p->c, total = p->n * c * p->s, m = p->n * p->s;
    void *x = tensor(p), *z = tensor(p), *x0 = tensor(p), *y, *dy = tensor(p), *dx, *dz;
    float *w = malloc((size_t)c * 4), *b = malloc((size_t)c * 4), *rm = malloc((size_t)c * 4),
          *rv = malloc((size_t)c * 4), *dw = malloc((size_t)c * 4), *db = malloc((size_t)c * 4);
    double *sm = malloc((size_t)c * 8), *si = malloc((size_t)c * 8);
    fill(p, x, big);
    fill_uniform(p, z, -1.0, 1.0);
    fill_uniform(p, dy, -1.0, 1.0);
    memcpy(x0, x, (size_t)(total * esize(p->dtype)));
    fill_floats(w, c, -2.0, 2.0);
    fill_floats(b, c, -1.0, 1.0);
    for (int64_t ch = 0; ch < c; ch++) {
        rm[ch] = 0.5f;
        rv[ch] = 2.0f;
    }
    y = inplace ? x : tensor(p);
    double eps = 1e-5, f = 0.1;
    int32_t st = bn_forward_train(y, sm, si, rm, rv, x, z, w, b, p->n, c, p->s, p->layout,
                                  p->dtype, p->act, eps, f, 0);
    CHECK(st == BN_OK, "%s: forward_train status %d", what, st);
    long double *mean = malloc((size_t)c * sizeof(long double)),
                *inv = malloc((size_t)c * sizeof(long double));
    for (int64_t ch = 0; ch < c; ch++) {
        long double var;
        mean[ch] = ref_mean(p, x0, ch, &var);
        inv[ch] = 1.0L / sqrtl(var + eps);
        long double sd = sqrtl(var);
        CHECK(close_to(sm[ch], (double)mean[ch], (double)(1e-12L * (fabsl(mean[ch]) + sd))),
              "%s: save_mean[%lld] %.17g want %.17Lg", what, (long long)ch, sm[ch], mean[ch]);
        CHECK(close_to(si[ch], (double)inv[ch], (double)(1e-10L * inv[ch])),
              "%s: save_invstd[%lld] %.17g want %.17Lg", what, (long long)ch, si[ch], inv[ch]);
        long double urv = 1.8L + 0.1L * var * m / (m - 1), urm = 0.45L + 0.1L * mean[ch];
        CHECK(close_to(rm[ch], (double)urm, 2 * U_F32 * (double)fabsl(urm) + 1e-12),
              "%s: running_mean[%lld] %.9g want %.12Lg", what, (long long)ch, rm[ch], urm);
        CHECK(close_to(rv[ch], (double)urv, 4 * U_F32 * (double)urv),
              "%s: running_var[%lld] %.9g want %.12Lg", what, (long long)ch, rv[ch], urv);
        for (int64_t n = 0; n < p->n; n++)
            for (int64_t i = 0; i < p->s; i++) {
                int64_t k = index_of(p, n, ch, i);
                long double xh = (get(p, x0, k) - mean[ch]) * inv[ch];
                long double want = xh * w[ch] + b[ch], scale = fabsl(xh * w[ch]) + fabsl(b[ch]);
                if (p->act == BN_ACT_ADD_RELU) {
                    want += get(p, z, k);
                    scale += fabsl((long double)get(p, z, k));
                }
                if (p->act != BN_ACT_NONE && want < 0)
                    want = 0;
                double tol = (p->dtype == BN_F32 ? 8 : 4) * unit(p->dtype) * (double)scale + tiny(p->dtype);
                CHECK(close_to(get(p, y, k), (double)want, tol), "%s: y[%lld] %.9g want %.12Lg",
                      what, (long long)k, get(p, y, k), want);
            }
    }
    /* backward of the same forward */
    dx = inplace == 1 ? dy : tensor(p);
    dz = inplace == 2 ? dy : tensor(p);
    void *dy0 = tensor(p);
    memcpy(dy0, dy, (size_t)(total * esize(p->dtype)));
    st = bn_backward_train(dx, dz, dw, db, dy, y, x0, w, sm, si, p->n, c, p->s, p->layout,
                           p->dtype, p->act);
    CHECK(st == BN_OK, "%s: backward_train status %d", what, st);
    for (int64_t ch = 0; ch < c; ch++) {
        long double sg = 0, sgx = 0, ag = 0, agx = 0;
        for (int64_t n = 0; n < p->n; n++)
            for (int64_t i = 0; i < p->s; i++) {
                int64_t k = index_of(p, n, ch, i);
                long double g = get(p, dy0, k);
                if (p->act != BN_ACT_NONE && !(get(p, y, k) > 0))
                    g = 0;
                long double xh = (get(p, x0, k) - mean[ch]) * inv[ch];
                sg += g;
                sgx += g * xh;
                ag += fabsl(g);
                agx += fabsl(g * xh);
            }
        CHECK(close_to(db[ch], (double)sg, 2 * U_F32 * (double)fabsl(sg) + 1e-12 * (double)ag),
              "%s: dbias[%lld] %.9g want %.12Lg", what, (long long)ch, db[ch], sg);
        CHECK(close_to(dw[ch], (double)sgx, 2 * U_F32 * (double)fabsl(sgx) + 1e-9 * (double)agx),
              "%s: dweight[%lld] %.9g want %.12Lg", what, (long long)ch, dw[ch], sgx);
        for (int64_t n = 0; n < p->n; n++)
            for (int64_t i = 0; i < p->s; i++) {
                int64_t k = index_of(p, n, ch, i);
                long double g = get(p, dy0, k);
                if (p->act != BN_ACT_NONE && !(get(p, y, k) > 0))
                    g = 0;
                long double xh = (get(p, x0, k) - mean[ch]) * inv[ch];
                long double want = w[ch] * inv[ch] * (g - sg / m - xh * sgx / m);
                long double scale = fabsl(w[ch] * inv[ch]) * (fabsl(g) + fabsl(sg / m) +
                                                               fabsl(xh * sgx / m));
                double tol = (p->dtype == BN_F32 ? 8 : 4) * unit(p->dtype) * (double)scale + tiny(p->dtype);
                CHECK(close_to(get(p, dx, k), (double)want, tol), "%s: dx[%lld] %.9g want %.12Lg",
                      what, (long long)k, get(p, dx, k), want);
                if (p->act == BN_ACT_ADD_RELU)
                    CHECK(get(p, dz, k) == (double)g, "%s: dz[%lld] %.9g want %.9Lg", what,
                          (long long)k, get(p, dz, k), g);
            }
    }
    free(dy0);
    if (!inplace)
        free(y);
    if (inplace != 1)
        free(dx);
    if (inplace != 2)
        free(dz);
    free(x), free(z), free(x0), free(dy), free(w), free(b), free(rm), free(rv);
    free(dw), free(db), free(sm), free(si), free(mean), free(inv);
}

/* Eval forward and backward against the reference. */
static void check_eval(const problem *p) {
    char what[96];
    describe(what, sizeof what, p);
    int64_t c = p->c, total = p->n * c * p->s;
    void *x = tensor(p), *z = tensor(p), *y = tensor(p), *dy = tensor(p), *dx = tensor(p),
         *dz = tensor(p);
    float *w = malloc((size_t)c * 4), *b = malloc((size_t)c * 4), *rm = malloc((size_t)c * 4),
          *rv = malloc((size_t)c * 4), *dw = malloc((size_t)c * 4), *db = malloc((size_t)c * 4);
    fill(p, x, 10.0);
    fill_uniform(p, z, -1.0, 1.0);
    fill_uniform(p, dy, -1.0, 1.0);
    fill_floats(w, c, -2.0, 2.0);
    fill_floats(b, c, -1.0, 1.0);
    fill_floats(rm, c, -5.0, 5.0);
    fill_floats(rv, c, 0.5, 4.0);
    double eps = 1e-3;
    int32_t st = bn_forward_eval(y, x, z, w, b, rm, rv, p->n, c, p->s, p->layout, p->dtype,
                                 p->act, eps);
    CHECK(st == BN_OK, "%s: forward_eval status %d", what, st);
    st = bn_backward_eval(dx, dz, dw, db, dy, y, x, w, rm, rv, p->n, c, p->s, p->layout, p->dtype,
                          p->act, eps);
    CHECK(st == BN_OK, "%s: backward_eval status %d", what, st);
    for (int64_t ch = 0; ch < c; ch++) {
        long double inv = 1.0L / sqrtl((long double)rv[ch] + eps), sg = 0, sgx = 0, ag = 0;
        for (int64_t k0 = 0; k0 < p->n * p->s; k0++) {
            int64_t k = index_of(p, k0 / p->s, ch, k0 % p->s);
            long double xh = (get(p, x, k) - (long double)rm[ch]) * inv;
            long double want = xh * w[ch] + b[ch], scale = fabsl(xh * w[ch]) + fabsl(b[ch]);
            if (p->act == BN_ACT_ADD_RELU) {
                want += get(p, z, k);
                scale += fabsl((long double)get(p, z, k));
            }
            if (p->act != BN_ACT_NONE && want < 0)
                want = 0;
            double tol = (p->dtype == BN_F32 ? 8 : 4) * unit(p->dtype) * (double)scale + tiny(p->dtype);
            CHECK(close_to(get(p, y, k), (double)want, tol), "%s: eval y[%lld] %.9g want %.12Lg",
                  what, (long long)k, get(p, y, k), want);
            long double g = get(p, dy, k);
            if (p->act != BN_ACT_NONE && !(get(p, y, k) > 0))
                g = 0;
            sg += g;
            sgx += g * xh;
            ag += fabsl(g * xh);
            long double dxw = g * w[ch] * inv;
            CHECK(close_to(get(p, dx, k), (double)dxw, 2 * unit(p->dtype) * (double)fabsl(dxw) + tiny(p->dtype)),
                  "%s: eval dx[%lld] %.9g want %.12Lg", what, (long long)k, get(p, dx, k), dxw);
            if (p->act == BN_ACT_ADD_RELU)
                CHECK(get(p, dz, k) == (double)g, "%s: eval dz[%lld]", what, (long long)k);
        }
        CHECK(close_to(db[ch], (double)sg, 2 * U_F32 * (double)fabsl(sg) + 1e-9),
              "%s: eval dbias[%lld] %.9g want %.12Lg", what, (long long)ch, db[ch], sg);
        CHECK(close_to(dw[ch], (double)sgx, 2 * U_F32 * (double)fabsl(sgx) + 1e-9 * (double)ag),
              "%s: eval dweight[%lld] %.9g want %.12Lg", what, (long long)ch, dw[ch], sgx);
    }
    (void)total;
    free(x), free(z), free(y), free(dy), free(dx), free(dz), free(w), free(b), free(rm),
        free(rv), free(dw), free(db);
}

/* A tensor view of rows [n0, n0+nn) of a batch (both layouts keep the batch outermost). */
static const void *rows_of(const problem *p, const void *t, int64_t n0) {
    return (const char *)t + n0 * p->c * p->s * esize(p->dtype);
}

/*
 * A batch split into k shards (uneven, one empty) through the phases equals one whole call:
 * statistics, running statistics, y, the backward sums and dx.
 */
static void check_shards(const problem *p, int k) {
    char what[96];
    describe(what, sizeof what, p);
    int64_t c = p->c, total = p->n * c * p->s;
    void *x = tensor(p), *z = tensor(p), *dy = tensor(p);
    void *y1 = tensor(p), *yk = tensor(p), *dx1 = tensor(p), *dxk = tensor(p);
    float *w = malloc((size_t)c * 4), *b = malloc((size_t)c * 4);
    float *rm1 = malloc((size_t)c * 4), *rv1 = malloc((size_t)c * 4), *rmk = malloc((size_t)c * 4),
          *rvk = malloc((size_t)c * 4), *dw1 = malloc((size_t)c * 4), *db1 = malloc((size_t)c * 4);
    double *sm1 = malloc((size_t)c * 8), *si1 = malloc((size_t)c * 8), *smk = malloc((size_t)c * 8),
           *sik = malloc((size_t)c * 8);
    int64_t counts[8];
    double *means = malloc((size_t)(k * c) * 8), *m2s = malloc((size_t)(k * c) * 8);
    double *mean = malloc((size_t)c * 8), *m2 = malloc((size_t)c * 8);
    double *sdy = malloc((size_t)(k * c) * 8), *sdx = malloc((size_t)(k * c) * 8);
    double *tdy = malloc((size_t)c * 8), *tdx = malloc((size_t)c * 8);
    fill(p, x, 1e4);
    fill_uniform(p, z, -1.0, 1.0);
    fill_uniform(p, dy, -1.0, 1.0);
    fill_floats(w, c, -2.0, 2.0);
    fill_floats(b, c, -1.0, 1.0);
    for (int64_t ch = 0; ch < c; ch++)
        rm1[ch] = rmk[ch] = 0.25f, rv1[ch] = rvk[ch] = 1.5f;
    CHECK(bn_forward_train(y1, sm1, si1, rm1, rv1, x, z, w, b, p->n, c, p->s, p->layout,
                           p->dtype, p->act, 1e-5, 0.1, 0) == BN_OK, "%s: whole forward", what);
    CHECK(bn_backward_train(dx1, NULL, dw1, db1, dy, y1, x, w, sm1, si1, p->n, c, p->s, p->layout,
                            p->dtype, p->act) == BN_OK, "%s: whole backward", what);
    /* shard sizes: uneven, shard 1 empty when k > 1 */
    int64_t n0[9], left = p->n;
    n0[0] = 0;
    for (int i = 0; i < k; i++) {
        int64_t share = i == k - 1 ? left : i == 1 ? 0 : rng_int(&g_rng, 0, left);
        counts[i] = share * p->s;
        n0[i + 1] = n0[i] + share;
        left -= share;
    }
    for (int i = 0; i < k; i++)
        CHECK(bn_stats(means + i * c, m2s + i * c, rows_of(p, x, n0[i]), n0[i + 1] - n0[i], c,
                       p->s, p->layout, p->dtype) == BN_OK, "%s: stats", what);
    int64_t count;
    CHECK(bn_merge_stats(&count, mean, m2, counts, means, m2s, k, c) == BN_OK, "%s: merge", what);
    CHECK(count == p->n * p->s, "%s: merged count %lld", what, (long long)count);
    for (int i = 0; i < k; i++) {
        int64_t nn = n0[i + 1] - n0[i];
        float rmi[64], rvi[64];
        memcpy(rmi, rmk, (size_t)c * 4);
        memcpy(rvi, rvk, (size_t)c * 4);
        CHECK(bn_forward_from_stats((void *)rows_of(p, yk, n0[i]),
                                    smk, sik, rmi, rvi, rows_of(p, x, n0[i]), rows_of(p, z, n0[i]),
                                    w, b, mean, m2, count, nn, c, p->s, p->layout, p->dtype,
                                    p->act, 1e-5, 0.1, 0) == BN_OK, "%s: from_stats", what);
        if (i == k - 1)
            memcpy(rmk, rmi, (size_t)c * 4), memcpy(rvk, rvi, (size_t)c * 4);
    }
    for (int i = 0; i < k; i++)
        CHECK(bn_backward_reduce(sdy + i * c, sdx + i * c, NULL, NULL, rows_of(p, dy, n0[i]),
                                 rows_of(p, yk, n0[i]), rows_of(p, x, n0[i]), smk, sik,
                                 n0[i + 1] - n0[i], c, p->s, p->layout, p->dtype,
                                 p->act) == BN_OK, "%s: backward_reduce", what);
    for (int64_t ch = 0; ch < c; ch++) {
        tdy[ch] = tdx[ch] = 0.0;
        for (int i = 0; i < k; i++)
            tdy[ch] += sdy[i * c + ch], tdx[ch] += sdx[i * c + ch];
    }
    for (int i = 0; i < k; i++)
        CHECK(bn_backward_from_sums((void *)rows_of(p, dxk, n0[i]), NULL,
                                    rows_of(p, dy, n0[i]), rows_of(p, yk, n0[i]),
                                    rows_of(p, x, n0[i]), w, smk, sik, tdy, tdx, count,
                                    n0[i + 1] - n0[i], c, p->s, p->layout, p->dtype,
                                    p->act) == BN_OK, "%s: from_sums", what);
    for (int64_t ch = 0; ch < c; ch++) {
        double sd = 1.0 / si1[ch];
        CHECK(close_to(smk[ch], sm1[ch], 1e-12 * (fabs(sm1[ch]) + sd)), "%s k=%d: mean[%lld] %.17g vs %.17g",
              what, k, (long long)ch, smk[ch], sm1[ch]);
        CHECK(close_to(sik[ch], si1[ch], 1e-10 * si1[ch]), "%s k=%d: invstd[%lld]", what, k, (long long)ch);
        CHECK(close_to(rmk[ch], rm1[ch], 2 * U_F32 * fabs(rm1[ch])), "%s k=%d: running_mean", what, k);
        CHECK(close_to(rvk[ch], rv1[ch], 2 * U_F32 * fabs(rv1[ch])), "%s k=%d: running_var", what, k);
        CHECK(close_to(tdy[ch], db1[ch], 2 * U_F32 * fabs(db1[ch]) + 1e-9), "%s k=%d: sum_dy", what, k);
        CHECK(close_to(tdx[ch], dw1[ch], 2 * U_F32 * fabs(dw1[ch]) + 1e-7), "%s k=%d: sum_dy_xhat", what, k);
    }
    /* outputs: within one rounding of the type (the statistics agree to ~1e-12) */
    for (int64_t i = 0; i < total; i++) {
        double a = get(p, y1, i), bb = get(p, yk, i);
        CHECK(close_to(bb, a, 2 * unit(p->dtype) * fabs(a) + 1e-6), "%s k=%d: y[%lld] %.9g vs %.9g",
              what, k, (long long)i, bb, a);
        a = get(p, dx1, i), bb = get(p, dxk, i);
        CHECK(close_to(bb, a, 2 * unit(p->dtype) * fabs(a) + 1e-6), "%s k=%d: dx[%lld] %.9g vs %.9g",
              what, k, (long long)i, bb, a);
    }
    free(x), free(z), free(dy), free(y1), free(yk), free(dx1), free(dxk), free(w), free(b);
    free(rm1), free(rv1), free(rmk), free(rvk), free(dw1), free(db1), free(sm1), free(si1);
    free(smk), free(sik), free(means), free(m2s), free(mean), free(m2), free(sdy), free(sdx);
    free(tdy), free(tdx);
}

/* Results bit-identical for 1..4 threads (tensors big enough to run on a team). */
static void check_threads(const problem *p) {
    char what[96];
    describe(what, sizeof what, p);
    int64_t c = p->c, bytes = p->n * c * p->s * esize(p->dtype);
    void *x = tensor(p), *z = tensor(p), *dy = tensor(p), *y[4], *dx[4], *dz[4];
    double *sm[4], *si[4];
    float *dw[4], *db[4];
    fill(p, x, 1e3);
    fill_uniform(p, z, -1.0, 1.0);
    fill_uniform(p, dy, -1.0, 1.0);
    for (int t = 0; t < 4; t++) {
        y[t] = tensor(p);
        dx[t] = tensor(p);
        dz[t] = p->act == BN_ACT_ADD_RELU ? tensor(p) : NULL;
        sm[t] = malloc((size_t)c * 8);
        si[t] = malloc((size_t)c * 8);
        dw[t] = malloc((size_t)c * 4);
        db[t] = malloc((size_t)c * 4);
        bn_set_num_threads(t + 1);
        CHECK(bn_forward_train(y[t], sm[t], si[t], NULL, NULL, x, z, NULL, NULL, p->n, c, p->s,
                               p->layout, p->dtype, p->act, 1e-5, 0.1, 0) == BN_OK, "%s", what);
        CHECK(bn_backward_train(dx[t], dz[t], dw[t], db[t], dy, y[t], x, NULL, sm[t], si[t], p->n,
                                c, p->s, p->layout, p->dtype, p->act) == BN_OK, "%s", what);
    }
    for (int t = 1; t < 4; t++) {
        CHECK(memcmp(sm[t], sm[0], (size_t)c * 8) == 0 && memcmp(si[t], si[0], (size_t)c * 8) == 0,
              "%s: statistics differ between 1 and %d threads", what, t + 1);
        CHECK(memcmp(dw[t], dw[0], (size_t)c * 4) == 0 && memcmp(db[t], db[0], (size_t)c * 4) == 0,
              "%s: gradients differ between 1 and %d threads", what, t + 1);
        CHECK(memcmp(y[t], y[0], (size_t)bytes) == 0 && memcmp(dx[t], dx[0], (size_t)bytes) == 0,
              "%s: outputs differ between 1 and %d threads", what, t + 1);
        CHECK(!dz[0] || memcmp(dz[t], dz[0], (size_t)bytes) == 0,
              "%s: dz differs between 1 and %d threads", what, t + 1);
    }
    bn_set_num_threads(2);
    for (int t = 0; t < 4; t++)
        free(y[t]), free(dx[t]), free(dz[t]), free(sm[t]), free(si[t]), free(dw[t]), free(db[t]);
    free(x), free(z), free(dy);
}

int main(void) {
    static const int64_t shapes[][3] = {{2, 3, 5},  {4, 16, 1}, {3, 5, 49}, {2, 20, 17},
                                        {1, 7, 40}, {5, 33, 4}, {6, 2, 130}, {9, 64, 9},
                                        {2, 1, 33}, {17, 40, 1}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int32_t layout = 0; layout < 2; layout++)
            for (int32_t dt = 0; dt < 3; dt++)
                for (int32_t act = 0; act < 3; act++) {
                    problem p = {shapes[si][0], shapes[si][1], shapes[si][2], layout, dt, act};
                    check_train(&p, 0, 10.0);
                    check_train(&p, 1, dt == BN_F32 ? 1e5 : 50.0);
                    if (act == BN_ACT_ADD_RELU)
                        check_train(&p, 2, 10.0);
                    check_eval(&p);
                    for (int k = 1; k <= 5; k++)
                        check_shards(&p, k);
                }
    /* big enough for a team, in both schedules of each layout; 64x24x196's Add+ReLU backward
     * narrows its channels-first groups to fit a 2 MiB L2; channels-last rows of 3, 5, 12 and 24
     * channels are walked as one run of values */
    static const int64_t big[][3] = {{8, 64, 700},  {16, 3, 2048}, {4000, 48, 1},
                                     {64, 300, 16}, {512, 5, 49},  {40, 1100, 3},
                                     {64, 520, 49}, {64, 24, 196}, {2048, 12, 9}};
    for (size_t si = 0; si < sizeof big / sizeof big[0]; si++)
        for (int32_t layout = 0; layout < 2; layout++)
            for (int32_t dt = 0; dt < 3; dt += 1)
                for (int32_t act = 0; act < 3; act += 2) {
                    problem p = {big[si][0], big[si][1], big[si][2], layout, dt, act};
                    check_threads(&p);
                    check_eval(&p);
                    if (act == BN_ACT_ADD_RELU) {
                        check_train(&p, 0, 10.0);
                        check_train(&p, 2, 10.0);
                    }
                }
    return finish("test_variants");
}
