/*
 * Every entry point against a long-double reference on random shapes, every combination of
 * optional pointers, factors, eps values, large-mean data and in-place use.
 *
 * Tolerances, in units of U_F32 (float's unit roundoff; k*U_F32 relative is k/2 ulps):
 *  - y (and dx): the kernels subtract the double mean as a float pair and do the rest in float
 *    lanes; each output takes at most ~4 roundings relative to the magnitudes of the terms that
 *    make it up (its scale), plus the invstd error below. We allow 8*U_F32*scale: 4 ulps of the
 *    output's scale.
 *  - save_mean and the sums of backward (dbias, dweight) are accumulated in double: 1e-13 of the
 *    magnitudes summed, far below float precision.
 *  - save_invstd: the squared deviations are summed in float partials of at most 8 terms per
 *    lane (all positive, so no cancellation) and folded into double: at most ~8 roundings
 *    relative, i.e. 4*U_F32 on invstd.
 *  - running buffers are float: 2*U_F32 of their value, plus the invstd error for running_var.
 */
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "test_util.h"

typedef struct {
    int64_t n, c, s;
} shape;

static rng g_rng = {20240611u};
static double g_worst; /* largest err/tol seen: how much margin the tolerances leave */

static int near(double got, long double want, long double tol) {
    if (isfinite((double)want) && tol > 0) {
        double r = (double)(fabsl((long double)got - want) / tol);
        if (r > g_worst)
            g_worst = r;
    }
    return close_to(got, (double)want, (double)tol);
}

static float *floats(int64_t count) {
    return malloc((size_t)(count > 0 ? count : 1) * sizeof(float));
}

/* Data kinds: 0 moderate, 1 large means (1e4..1e6, "ugly" values) with spread 0.01..1,
 * 2 small integers with some constant channels. */
static void fill_x(float *x, shape sh, int kind) {
    for (int64_t ch = 0; ch < sh.c; ch++) {
        double mean, sd;
        if (kind == 0) {
            mean = 6.0 * rng_uniform(&g_rng) - 3.0;
            sd = 0.1 + 3.0 * rng_uniform(&g_rng);
        } else if (kind == 1) {
            mean = pow(10.0, 4.0 + 2.0 * rng_uniform(&g_rng)) * (rng_uniform(&g_rng) < 0.5 ? -1 : 1);
            sd = pow(10.0, -2.0 + 2.0 * rng_uniform(&g_rng));
        } else {
            mean = (double)rng_int(&g_rng, -5, 5);
            sd = ch % 3 == 1 ? 0.0 : 1.0;
        }
        for (int64_t i = 0; i < sh.n; i++)
            for (int64_t j = 0; j < sh.s; j++) {
                double v = kind == 2 ? mean + sd * (double)rng_int(&g_rng, -3, 3)
                                     : mean + sd * rng_normal(&g_rng);
                x[(i * sh.c + ch) * sh.s + j] = (float)v;
            }
    }
}

static void fill(float *p, int64_t count, double lo, double hi) {
    for (int64_t i = 0; i < count; i++)
        p[i] = (float)(lo + (hi - lo) * rng_uniform(&g_rng));
}

static float at(const float *x, shape sh, int64_t ch, int64_t k) {
    return x[((k / sh.s) * sh.c + ch) * sh.s + k % sh.s];
}

// x is (N,C,S); two-pass mean and biased variance of channel ch in long double
static void ref_stats(const float *x, shape sh, int64_t ch, long double *mean, long double *var) {
    int64_t m = sh.n * sh.s;
    long double sum = 0;
    for (int64_t k = 0; k < m; k++)
        sum += at(x, sh, ch, k);
    *mean = sum / m;
    long double sq = 0;
    for (int64_t k = 0; k < m; k++) {
        long double d = at(x, sh, ch, k) - *mean;
        sq += d * d;
    }
    *var = sq / m;
}

static void test_forward_train(shape sh, int kind, unsigned mask, double eps, double factor,
                               int inplace) {
    int64_t total = sh.n * sh.c * sh.s, m = sh.n * sh.s, c = sh.c;
    float *x = floats(total), *y = inplace ? x : floats(total), *x0 = floats(total);
    float *w = floats(c), *b = floats(c), *rm = floats(c), *rv = floats(c);
    float *rm0 = floats(c), *rv0 = floats(c);
    double *sm = malloc((size_t)c * sizeof(double)), *si = malloc((size_t)c * sizeof(double));
    fill_x(x, sh, kind);
    memcpy(x0, x, (size_t)total * sizeof(float));
    fill(w, c, -2.0, 2.0);
    fill(b, c, -1.0, 1.0);
    fill(rm, c, -1.0, 1.0);
    fill(rv, c, 0.5, 2.0);
    memcpy(rm0, rm, (size_t)c * sizeof(float));
    memcpy(rv0, rv, (size_t)c * sizeof(float));
    int has_w = mask & 1, has_b = mask & 2, has_r = mask & 4, has_sm = mask & 8, has_si = mask & 16;

    int32_t st = bn_forward_train_f32(y, has_sm ? sm : NULL, has_si ? si : NULL,
                                      has_r ? rm : NULL, has_r ? rv : NULL, x,
                                      has_w ? w : NULL, has_b ? b : NULL, sh.n, sh.c, sh.s,
                                      BN_LAYOUT_NCS, eps, factor);
    CHECK(st == BN_OK, "forward_train status %d", st);
    for (int64_t ch = 0; ch < c; ch++) {
        long double mean, var;
        ref_stats(x0, sh, ch, &mean, &var);
        /* PyTorch's rule: var == 0 with eps == 0 (a constant channel) gives invstd 0 */
        long double invstd = var == 0 && eps == 0 ? 0.0L : 1.0L / sqrtl(var + eps), sd = sqrtl(var);
        long double wc = has_w ? w[ch] : 1.0L, bc = has_b ? b[ch] : 0.0L;
        if (has_sm)
            CHECK(near(sm[ch], mean, 1e-13L * (fabsl(mean) + sd)),
                  "save_mean ch %lld: %.17g vs %.17Lg", (long long)ch, sm[ch], mean);
        if (has_si)
            CHECK(near(si[ch], invstd, 4 * U_F32 * invstd + 1e-13L * fabsl(mean) * invstd * invstd),
                  "save_invstd ch %lld: %.17g vs %.17Lg", (long long)ch, si[ch], invstd);
        if (has_r) {
            long double f = factor;
            long double a = (1 - f) * rm0[ch], bb = f * mean;
            CHECK(near(rm[ch], a + bb, 2 * U_F32 * fabsl(a + bb) + 1e-13L * (fabsl(a) + fabsl(bb))),
                  "running_mean ch %lld: %.9g vs %.17Lg", (long long)ch, rm[ch], a + bb);
            long double av = (1 - f) * rv0[ch], bv = f * var * m / (m - 1);
            CHECK(near(rv[ch], av + bv, 2 * U_F32 * (av + bv) + 8 * U_F32 * bv),
                  "running_var ch %lld: %.9g vs %.17Lg", (long long)ch, rv[ch], av + bv);
        }
        for (int64_t k = 0; k < m; k++) {
            int64_t idx = ((k / sh.s) * c + ch) * sh.s + k % sh.s;
            long double xh = (x0[idx] - mean) * invstd;
            long double want = xh * wc + bc;
            long double tol = 8 * U_F32 * (fabsl(xh * wc) + fabsl(bc)) +
                              1e-13L * fabsl(wc * invstd) * (fabsl(mean) + sd);
            if (!near(y[idx], want, tol)) {
                CHECK(0, "y[%lld] (ch %lld) shape %lldx%lldx%lld kind %d: %.9g vs %.12Lg", (long long)idx,
                      (long long)ch, (long long)sh.n, (long long)sh.c, (long long)sh.s, kind,
                      y[idx], want);
                break;
            }
        }
    }
    g_checks++;
    if (!has_r)
        CHECK(!memcmp(rm, rm0, (size_t)c * 4) && !memcmp(rv, rv0, (size_t)c * 4), "untouched");
    free(x);
    if (!inplace)
        free(y);
    free(x0), free(w), free(b), free(rm), free(rv), free(rm0), free(rv0), free(sm), free(si);
}

static void test_forward_eval(shape sh, int kind, unsigned mask, double eps, int inplace) {
    int64_t total = sh.n * sh.c * sh.s, m = sh.n * sh.s, c = sh.c;
    float *x = floats(total), *y = inplace ? x : floats(total), *x0 = floats(total);
    float *w = floats(c), *b = floats(c), *rm = floats(c), *rv = floats(c);
    fill_x(x, sh, kind);
    memcpy(x0, x, (size_t)total * sizeof(float));
    fill(w, c, -2.0, 2.0);
    fill(b, c, -1.0, 1.0);
    for (int64_t ch = 0; ch < c; ch++) { /* running stats near the batch's, as after training */
        long double mean, var;
        ref_stats(x0, sh, ch, &mean, &var);
        rm[ch] = (float)(mean + sqrtl(var) * 0.3L * (long double)rng_normal(&g_rng));
        rv[ch] = (float)(var * (0.5L + (long double)rng_uniform(&g_rng)) + 1e-3L);
    }
    int has_w = mask & 1, has_b = mask & 2;
    int32_t st = bn_forward_eval_f32(y, x, has_w ? w : NULL, has_b ? b : NULL, rm, rv, sh.n, sh.c,
                                     sh.s, BN_LAYOUT_NCS, eps);
    CHECK(st == BN_OK, "forward_eval status %d", st);
    for (int64_t ch = 0; ch < c; ch++) {
        long double invstd = 1.0L / sqrtl((long double)rv[ch] + eps);
        long double wc = has_w ? w[ch] : 1.0L, bc = has_b ? b[ch] : 0.0L;
        for (int64_t k = 0; k < m; k++) {
            int64_t idx = ((k / sh.s) * c + ch) * sh.s + k % sh.s;
            long double xh = ((long double)x0[idx] - rm[ch]) * invstd;
            long double want = xh * wc + bc;
            if (!near(y[idx], want, 8 * U_F32 * (fabsl(xh * wc) + fabsl(bc)))) {
                CHECK(0, "eval y[%lld]: %.9g vs %.12Lg", (long long)idx, y[idx], want);
                break;
            }
        }
    }
    g_checks++;
    free(x);
    if (!inplace)
        free(y);
    free(x0), free(w), free(b), free(rm), free(rv);
}

static void test_backward_train(shape sh, int kind, unsigned mask, int inplace) {
    int64_t total = sh.n * sh.c * sh.s, m = sh.n * sh.s, c = sh.c;
    float *x = floats(total), *dy = floats(total), *dy0 = floats(total);
    float *dx = inplace ? dy : floats(total);
    float *w = floats(c), *dw = floats(c), *db = floats(c);
    double *sm = malloc((size_t)c * sizeof(double)), *si = malloc((size_t)c * sizeof(double));
    fill_x(x, sh, kind);
    for (int64_t i = 0; i < total; i++)
        dy[i] = (float)(rng_normal(&g_rng) + 0.3);
    memcpy(dy0, dy, (size_t)total * sizeof(float));
    fill(w, c, -2.0, 2.0);
    for (int64_t ch = 0; ch < c; ch++) {
        long double mean, var;
        ref_stats(x, sh, ch, &mean, &var);
        sm[ch] = (double)mean;
        si[ch] = (double)(1.0L / sqrtl(var + 1e-5L));
    }
    int has_dx = mask & 1, has_dw = mask & 2, has_db = mask & 4, has_w = mask & 8;
    int32_t st = bn_backward_train_f32(has_dx ? dx : NULL, has_dw ? dw : NULL, has_db ? db : NULL,
                                       dy, x, has_w ? w : NULL, sm, si, sh.n, sh.c, sh.s,
                                       BN_LAYOUT_NCS);
    CHECK(st == BN_OK, "backward_train status %d", st);
    for (int64_t ch = 0; ch < c; ch++) {
        long double mean = sm[ch], invstd = si[ch], wc = has_w ? w[ch] : 1.0L;
        long double sdy = 0, sdyx = 0, ady = 0, adyx = 0;
        for (int64_t k = 0; k < m; k++) {
            int64_t idx = ((k / sh.s) * c + ch) * sh.s + k % sh.s;
            long double d = (long double)x[idx] - mean;
            sdy += dy0[idx];
            sdyx += dy0[idx] * d;
            ady += fabsl((long double)dy0[idx]);
            adyx += fabsl(dy0[idx] * d);
        }
        if (has_db)
            CHECK(near(db[ch], sdy, 2 * U_F32 * fabsl(sdy) + 1e-13L * ady), "dbias ch %lld: %.9g vs %.12Lg",
                  (long long)ch, db[ch], sdy);
        if (has_dw)
            CHECK(near(dw[ch], sdyx * invstd, 2 * U_F32 * fabsl(sdyx * invstd) + 1e-13L * adyx * invstd),
                  "dweight ch %lld: %.9g vs %.12Lg", (long long)ch, dw[ch], sdyx * invstd);
        if (!has_dx)
            continue;
        long double gm = sdy / m, k2 = sdyx * invstd * invstd / m, a = wc * invstd;
        for (int64_t k = 0; k < m; k++) {
            int64_t idx = ((k / sh.s) * c + ch) * sh.s + k % sh.s;
            long double d = (long double)x[idx] - mean;
            long double want = (dy0[idx] - gm - d * k2) * a;
            long double tol = 8 * U_F32 * fabsl(a) * (fabsl((long double)dy0[idx]) + fabsl(gm) + fabsl(d * k2));
            if (!near(dx[idx], want, tol)) {
                CHECK(0, "dx[%lld]: %.9g vs %.12Lg", (long long)idx, dx[idx], want);
                break;
            }
        }
    }
    g_checks++;
    free(x), free(dy), free(dy0), free(w), free(dw), free(db), free(sm), free(si);
    if (!inplace)
        free(dx);
}

static void test_backward_eval(shape sh, int kind, unsigned mask, double eps, int inplace) {
    int64_t total = sh.n * sh.c * sh.s, m = sh.n * sh.s, c = sh.c;
    float *x = floats(total), *dy = floats(total), *dy0 = floats(total);
    float *dx = inplace ? dy : floats(total);
    float *w = floats(c), *dw = floats(c), *db = floats(c), *rm = floats(c), *rv = floats(c);
    fill_x(x, sh, kind);
    for (int64_t i = 0; i < total; i++)
        dy[i] = (float)(rng_normal(&g_rng) - 0.2);
    memcpy(dy0, dy, (size_t)total * sizeof(float));
    fill(w, c, -2.0, 2.0);
    for (int64_t ch = 0; ch < c; ch++) {
        long double mean, var;
        ref_stats(x, sh, ch, &mean, &var);
        rm[ch] = (float)(mean + sqrtl(var) * 0.2L);
        rv[ch] = (float)(var * 1.3L + 1e-4L);
    }
    int has_dx = mask & 1, has_dw = mask & 2, has_db = mask & 4, has_w = mask & 8, has_x = mask & 16;
    int32_t st = bn_backward_eval_f32(has_dx ? dx : NULL, has_dw ? dw : NULL, has_db ? db : NULL,
                                      dy, (has_x || has_dw) ? x : NULL, has_w ? w : NULL, rm, rv,
                                      sh.n, sh.c, sh.s, BN_LAYOUT_NCS, eps);
    CHECK(st == BN_OK, "backward_eval status %d", st);
    for (int64_t ch = 0; ch < c; ch++) {
        long double invstd = 1.0L / sqrtl((long double)rv[ch] + eps), wc = has_w ? w[ch] : 1.0L;
        long double sdy = 0, sdyx = 0, ady = 0, adyx = 0;
        for (int64_t k = 0; k < m; k++) {
            int64_t idx = ((k / sh.s) * c + ch) * sh.s + k % sh.s;
            long double d = (long double)x[idx] - rm[ch];
            sdy += dy0[idx];
            sdyx += dy0[idx] * d;
            ady += fabsl((long double)dy0[idx]);
            adyx += fabsl(dy0[idx] * d);
            if (has_dx) {
                long double want = dy0[idx] * wc * invstd;
                if (!near(dx[idx], want, 8 * U_F32 * fabsl(want))) {
                    CHECK(0, "eval dx[%lld]: %.9g vs %.12Lg", (long long)idx, dx[idx], want);
                    has_dx = 0;
                }
            }
        }
        if (has_db)
            CHECK(near(db[ch], sdy, 2 * U_F32 * fabsl(sdy) + 1e-13L * ady), "eval dbias ch %lld",
                  (long long)ch);
        if (has_dw)
            CHECK(near(dw[ch], sdyx * invstd, 2 * U_F32 * fabsl(sdyx * invstd) + 1e-13L * adyx * invstd),
                  "eval dweight ch %lld: %.9g vs %.12Lg", (long long)ch, dw[ch], sdyx * invstd);
    }
    g_checks++;
    free(x), free(dy), free(dy0), free(w), free(dw), free(db), free(rm), free(rv);
    if (!inplace)
        free(dx);
}

/*
 * eps = 0 with constant channels: PyTorch's InvStd gives invstd = 0 when var == 0 and eps == 0,
 * so y = bias, dx = 0 and dweight = 0 (not NaN), while the other channels are normal. The shapes
 * reach every schedule: serial small, serial channel groups (short rows), split and by-channel
 * (2 threads). Eval has no such rule: running_var 0 with eps 0 gives 1/0.
 */
static void test_eps_zero_constant_channel(void) {
    static const shape shapes[] = {{2, 3, 4}, {3000, 5, 7}, {4, 3, 8192}, {4, 4, 8192}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        shape sh = shapes[k];
        int64_t total = sh.n * sh.c * sh.s, m = sh.n * sh.s, c = sh.c;
        float *x = floats(total), *y = floats(total), *dy = floats(total), *dx = floats(total);
        float *w = floats(c), *b = floats(c), *rm = floats(c), *rv = floats(c), *dw = floats(c),
              *db = floats(c);
        double *sm = malloc((size_t)c * sizeof(double)), *si = malloc((size_t)c * sizeof(double));
        fill_x(x, sh, 0);
        fill(dy, total, -1.0, 1.0);
        fill(w, c, 0.5, 2.0);
        fill(b, c, -1.0, 1.0);
        for (int64_t ch = 0; ch < c; ch += 2) /* even channels constant, at an ugly value */
            for (int64_t i = 0; i < sh.n; i++)
                for (int64_t j = 0; j < sh.s; j++)
                    x[(i * c + ch) * sh.s + j] = 12345.678f + (float)ch;
        for (int threads = 1; threads <= 2; threads++) {
            bn_set_num_threads(threads);
            for (int64_t ch = 0; ch < c; ch++)
                rm[ch] = 0.5f, rv[ch] = 2.0f;
            int32_t st = bn_forward_train_f32(y, sm, si, rm, rv, x, w, b, sh.n, c, sh.s,
                                              BN_LAYOUT_NCS, 0.0, 0.1);
            st |= bn_backward_train_f32(dx, dw, db, dy, x, w, sm, si, sh.n, c, sh.s, BN_LAYOUT_NCS);
            CHECK(st == BN_OK, "eps 0 status %d", st);
            for (int64_t ch = 0; ch < c; ch++) {
                long double mean, var;
                ref_stats(x, sh, ch, &mean, &var);
                int constant = ch % 2 == 0;
                CHECK(constant ? si[ch] == 0.0 : si[ch] > 0.0 && isfinite(si[ch]),
                      "eps 0 shape %lldx%lldx%lld threads %d ch %lld: save_invstd %.17g",
                      (long long)sh.n, (long long)c, (long long)sh.s, threads, (long long)ch, si[ch]);
                CHECK(isfinite(rv[ch]) && near(rv[ch], 0.9L * 2.0L + 0.1L * var * m / (m - 1),
                                               4 * U_F32 * (2.0L + var)),
                      "eps 0 running_var ch %lld: %.9g", (long long)ch, rv[ch]);
                if (!constant)
                    continue;
                CHECK(sm[ch] == 12345.678f + (float)ch, "eps 0 save_mean ch %lld: %.17g",
                      (long long)ch, sm[ch]);
                CHECK(dw[ch] == 0.0f, "eps 0 dweight ch %lld: %.9g", (long long)ch, dw[ch]);
                long double sdy = 0, ady = 0;
                int ok = 1;
                for (int64_t i = 0; i < sh.n; i++)
                    for (int64_t j = 0; j < sh.s; j++) {
                        int64_t idx = (i * c + ch) * sh.s + j;
                        ok &= y[idx] == b[ch] && dx[idx] == 0.0f;
                        sdy += dy[idx];
                        ady += fabsl((long double)dy[idx]);
                    }
                CHECK(ok, "eps 0 ch %lld: y must be bias and dx zero", (long long)ch);
                CHECK(near(db[ch], sdy, 2 * U_F32 * fabsl(sdy) + 1e-13L * ady),
                      "eps 0 dbias ch %lld: %.9g vs %.12Lg", (long long)ch, db[ch], sdy);
            }
        }
        /* eval: 1/sqrt(0 + 0) is inf, so x != running_mean gives +-inf and x == running_mean NaN */
        for (int64_t ch = 0; ch < c; ch++)
            rm[ch] = x[ch * sh.s], rv[ch] = 0.0f, w[ch] = 1.0f, b[ch] = 0.0f;
        CHECK(bn_forward_eval_f32(y, x, w, b, rm, rv, sh.n, c, sh.s, BN_LAYOUT_NCS, 0.0) == BN_OK,
              "eps 0 eval status");
        int ok = 1;
        for (int64_t i = 0; i < total; i++) {
            float d = x[i] - rm[(i / sh.s) % c];
            ok &= d == 0.0f ? isnan(y[i]) : isinf(y[i]) && (y[i] > 0) == (d > 0);
        }
        CHECK(ok, "eps 0 eval with running_var 0: 1/0, not PyTorch's training rule");
        free(x), free(y), free(dy), free(dx), free(w), free(b), free(rm), free(rv), free(dw);
        free(db), free(sm), free(si);
    }
}

/*
 * A NaN or an infinity gives its channel NaN statistics and leaves the other channels exact, in
 * every schedule of the short-row training passes (memory-order reductions out of place,
 * channel groups in place), with one thread and with two.
 */
static void test_non_finite(shape sh) {
    int64_t total = sh.n * sh.c * sh.s, c = sh.c;
    float *x = floats(total), *x0 = floats(total), *y = floats(total), *dy = floats(total),
          *dx = floats(total);
    double *sm = malloc((size_t)c * sizeof(double)), *si = malloc((size_t)c * sizeof(double));
    fill_x(x0, sh, 1);
    fill(dy, total, -1.0, 1.0);
    /* channel 7 inside a row block, channel 8 at the first value of one (its origin; n / 2
     * starts a block for both shapes tested), and the last value of the tensor */
    x0[((sh.n / 3) * c + 7) * sh.s + 3] = NAN;
    x0[((sh.n / 2) * c + 8) * sh.s] = INFINITY;
    x0[total - 1] = -INFINITY;
    for (int threads = 1; threads <= 2; threads++)
        for (int inplace = 0; inplace <= 1; inplace++) {
            bn_set_num_threads(threads);
            memcpy(x, x0, (size_t)total * sizeof(float));
            float *out = inplace ? x : y;
            int32_t st = bn_forward_train_f32(out, sm, si, NULL, NULL, x, NULL, NULL, sh.n, c,
                                              sh.s, BN_LAYOUT_NCS, 1e-5, 0.1);
            st |= bn_backward_train_f32(dx, NULL, NULL, dy, x0, NULL, sm, si, sh.n, c, sh.s,
                                        BN_LAYOUT_NCS);
            CHECK(st == BN_OK, "non-finite status %d", st);
            for (int64_t ch = 0; ch < c; ch++) {
                int bad = ch == 7 || ch == 8 || ch == c - 1;
                long double mean, var;
                ref_stats(x0, sh, ch, &mean, &var);
                if (bad) {
                    CHECK(isnan(sm[ch]) || isnan(si[ch]),
                          "non-finite ch %lld threads %d in place %d: mean %g invstd %g",
                          (long long)ch, threads, inplace, sm[ch], si[ch]);
                    CHECK(isnan(dx[ch * sh.s + 1]), "non-finite ch %lld: dx must be NaN",
                          (long long)ch);
                } else {
                    long double invstd = 1.0L / sqrtl(var + 1e-5L);
                    CHECK(near(sm[ch], mean, 1e-13L * (fabsl(mean) + sqrtl(var))) &&
                              near(si[ch], invstd, 4 * U_F32 * invstd +
                                                       1e-13L * fabsl(mean) * invstd * invstd),
                          "non-finite, clean ch %lld threads %d in place %d: %.17g %.17g",
                          (long long)ch, threads, inplace, sm[ch], si[ch]);
                }
            }
        }
    bn_set_num_threads(2);
    free(x), free(x0), free(y), free(dy), free(dx), free(sm), free(si);
}

static void run_shape(shape sh) {
    static const double factors[] = {0.1, 0.0, 1.0, 0.37, 1.0 / 3.0};
    static const double epss[] = {1e-5, 1e-3, 0.5, 0.0};
    for (int kind = 0; kind < 3; kind++) {
        unsigned masks[] = {31u, 0u, (unsigned)rng_int(&g_rng, 0, 31), (unsigned)rng_int(&g_rng, 0, 31)};
        for (int v = 0; v < 4; v++) {
            if (sh.n * sh.c * sh.s > 50000 && (v == 1 || v == 2))
                continue; /* big shapes: all-present and in-place variants suffice */
            double eps = epss[rng_int(&g_rng, 0, kind == 2 ? 2 : 3)]; /* eps 0 only without constant channels */
            double factor = factors[rng_int(&g_rng, 0, 4)];
            int inplace = v == 3;
            if (sh.n * sh.s > 1)
                test_forward_train(sh, kind, masks[v], eps, factor, inplace);
            test_forward_eval(sh, kind, masks[v] & 3u, eps, inplace);
            test_backward_train(sh, kind, masks[v] & 15u, inplace);
            test_backward_eval(sh, kind, masks[v], eps, inplace);
        }
    }
}

int main(void) {
    bn_set_num_threads(2);
    static const shape fixed[] = {
        {2, 1, 1},     {1, 1, 2},     {1, 3, 17},    {5, 7, 1},     {64, 3, 1},
        {3, 4, 143},   {2, 3, 5000},  {17, 5, 300},  {1, 2, 10007}, {4, 3, 30000},
        {300, 40, 9},  {1, 1, 70001}, {33, 2, 4097}, {2, 8, 49},    {16, 10, 1},
        {2, 100, 3},   {9, 70, 1},    {1, 66, 20},   /* small tensors of more than 64 channels */
        {3000, 7, 1},  {5000, 2, 1},                 /* rows of one value, many of them */
        {8, 40, 100},  {3, 12, 2500},  {2, 4, 9000}, /* two-pass and fused training schedules */
        {2, 1100, 17},                               /* more channels than a memory-order window */
        {37, 1024, 19}, {1, 300, 250}, {300, 64, 49}, /* memory-order reductions: row blocks */
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        run_shape(fixed[i]);
    for (int i = 0; i < 40; i++) {
        shape sh = {rng_int(&g_rng, 1, 9), rng_int(&g_rng, 1, 9), rng_int(&g_rng, 1, 2000)};
        run_shape(sh);
    }
    /* Outputs past 16 MiB take the non-temporal store path; odd rows start at every alignment. */
    shape big = {2, 3, 700001};
    test_forward_train(big, 1, 31u, 1e-5, 0.1, 0);
    test_forward_train(big, 0, 31u, 1e-3, 0.37, 1);
    test_forward_eval(big, 1, 3u, 1e-5, 1);
    test_backward_train(big, 1, 15u, 0);
    test_backward_train(big, 0, 15u, 1);
    test_backward_eval(big, 1, 31u, 1e-5, 0);
    /* The same through the memory-order passes (rows of 500 values start 16-byte aligned). */
    shape wide = {40, 256, 500};
    test_forward_train(wide, 1, 31u, 1e-5, 0.1, 0);
    test_forward_eval(wide, 1, 3u, 1e-5, 1);
    test_backward_train(wide, 1, 15u, 0);
    test_backward_train(wide, 0, 15u, 1);
    /* Past 16 MiB with rows of 47 values: the memory-order normalize streams whole lines across
     * channel boundaries, at every offset of a boundary within a vector. */
    shape lines = {360, 256, 47};
    test_forward_train(lines, 1, 31u, 1e-5, 0.1, 0);
    test_forward_train(lines, 0, 31u, 1e-3, 0.37, 1);
    test_forward_eval(lines, 1, 3u, 1e-5, 0);
    test_forward_eval(lines, 0, 3u, 1e-5, 1);
    /* Past 16 MiB with rows of 1024 to 8191 values, training by channel with four rows side by
     * side: aligned rows, and rows of 1501 values (rows off 32-byte boundaries, ending in part
     * of a vector) in row blocks of two with a shorter last one. */
    shape rows4 = {16, 70, 4000}, blocks = {19, 150, 1501};
    test_forward_train(rows4, 1, 31u, 1e-5, 0.1, 0);
    test_forward_train(rows4, 0, 31u, 1e-3, 0.37, 1);
    test_forward_train(blocks, 1, 31u, 1e-5, 0.1, 0);
    test_forward_train(blocks, 2, 31u, 1e-5, 1.0, 1);
    test_forward_train((shape){255, 17, 2056}, 1, 31u, 1e-5, 0.1, 0); /* the most row blocks */
    test_eps_zero_constant_channel();
    test_non_finite((shape){64, 300, 49});
    test_non_finite(rows4);
    printf("worst err/tol ratio: %.3g\n", g_worst);
    return finish("test_reference");
}
