/*
 * Portable block kernels, for any x86-64 (and the reference the AVX2 ones are tested against in
 * spirit: same formulas, same double accumulation). A block crosses rows: it is walked as
 * segments, each a contiguous part of one row. Sums use BN_LANES independent double accumulators
 * (lane j takes the values at offsets j, j+BN_LANES, ... of each segment), folded in a fixed order
 * at the end of the block, so the result depends only on the shape.
 */
#include <stddef.h>

#include "bn_internal.h"

#define BN_LANES 8

/* Walks the segments of [start, start+len): off is the offset of the segment's first value
 * from the channel base, seg its length. */
#define FOR_EACH_SEGMENT(v, start, len, off, seg)                                        \
    for (int64_t row_ = bn_row_of(start, (v).s), col_ = (start) - row_ * (v).s, left_ = (len), \
                 off = 0, seg = 0;                                                       \
         left_ > 0 && (off = row_ * (v).stride + col_,                                  \
                      seg = (v).s - col_ < left_ ? (v).s - col_ : left_, 1);             \
         left_ -= seg, row_++, col_ = 0)

static double fold(const double acc[BN_LANES]) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// p is (len)
static void seg_shifted_sum(double acc[BN_LANES], const float *p, int64_t len, double shift) {
    int64_t i = 0;
    for (; i + BN_LANES <= len; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++)
            acc[j] += (double)p[i + j] - shift;
    for (int j = 0; i + j < len; j++)
        acc[j] += (double)p[i + j] - shift;
}

// p is (len)
static void seg_sqdev(double acc[BN_LANES], const float *p, int64_t len, double mean) {
    int64_t i = 0;
    for (; i + BN_LANES <= len; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) {
            double d = (double)p[i + j] - mean;
            acc[j] += d * d;
        }
    for (int j = 0; i + j < len; j++) {
        double d = (double)p[i + j] - mean;
        acc[j] += d * d;
    }
}

static bn_moments moments(const float *x, bn_rows v, int64_t start, int64_t len, double shift) {
    double acc[BN_LANES] = {0}, acc2[BN_LANES] = {0};
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        seg_shifted_sum(acc, x + off, seg, shift);
    bn_moments m = {(double)len, fold(acc), 0.0};
    double mean = shift + m.sum / m.n;
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        seg_sqdev(acc2, x + off, seg, mean);
    m.m2 = fold(acc2);
    return m;
}

static void normalize(float *y, const float *x, bn_rows v, int64_t start, int64_t len,
                      double mean, double alpha, double beta) {
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        for (int64_t i = off; i < off + seg; i++)
            y[i] = (float)(((double)x[i] - mean) * alpha + beta);
}

// x, y are (len)
static bn_moments normalize_moments(float *y, const float *x, bn_rows v, int64_t start,
                                    int64_t len, double mean, double alpha, double beta,
                                    const float *xn, double shift) {
    normalize(y, x, v, start, len, mean, alpha, beta);
    return moments(xn, v, start, len, shift);
}

// x, y are (len)
static void normalize_row(float *y, const float *x, int64_t s, int64_t col, int64_t len,
                          const bn_row_consts *k, int store) {
    (void)store;
    for (int64_t i = 0; i < len; i++, col++) {
        if (col == s) {
            col = 0;
            k++;
        }
        y[i] = (float)(((double)x[i] - k->norm.mean) * k->norm.a + k->norm.b);
    }
}

// dx, dy, x are (len)
static void train_dx_row(float *dx, const float *dy, const float *x, int64_t s, int64_t col,
                         int64_t len, const bn_row_consts *k, int stream) {
    (void)stream;
    for (int64_t i = 0; i < len; i++, col++) {
        if (col == s) {
            col = 0;
            k++;
        }
        const bn_coeffs *c = &k->dx.co;
        dx[i] = (float)((((double)dy[i] - c->b) - ((double)x[i] - c->mean) * c->k) * c->a);
    }
}

// dy, x are (len)
static void seg_grad(double ady[BN_LANES], double adyx[BN_LANES], const float *dy, const float *x,
                     int64_t len, double mean) {
    int64_t i = 0;
    for (; i + BN_LANES <= len; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++) {
            double g = (double)dy[i + j];
            ady[j] += g;
            adyx[j] += g * ((double)x[i + j] - mean);
        }
    for (int j = 0; i + j < len; j++) {
        double g = (double)dy[i + j];
        ady[j] += g;
        adyx[j] += g * ((double)x[i + j] - mean);
    }
}

static bn_grad_sums grad_sums(const float *dy, const float *x, bn_rows v, int64_t start,
                              int64_t len, double mean, double invstd) {
    double ady[BN_LANES] = {0}, adyx[BN_LANES] = {0};
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        seg_grad(ady, adyx, dy + off, x + off, seg, mean);
    bn_grad_sums r = {fold(ady), fold(adyx) * invstd};
    return r;
}

static void train_dx(float *dx, const float *dy, const float *x, bn_rows v, int64_t start,
                     int64_t len, double mean, double a, double gmean, double k) {
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        for (int64_t i = off; i < off + seg; i++) {
            double d = (double)x[i] - mean;
            dx[i] = (float)((((double)dy[i] - gmean) - d * k) * a);
        }
}

// dy is (len)
static void seg_sum(double acc[BN_LANES], const float *dy, int64_t len) {
    int64_t i = 0;
    for (; i + BN_LANES <= len; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++)
            acc[j] += (double)dy[i + j];
    for (int j = 0; i + j < len; j++)
        acc[j] += (double)dy[i + j];
}

static bn_grad_sums eval_backward(float *dx, const float *dy, const float *x, bn_rows v,
                                  int64_t start, int64_t len, double mean, double invstd,
                                  double a) {
    bn_grad_sums r = {0.0, 0.0};
    if (x) {
        r = grad_sums(dy, x, v, start, len, mean, invstd);
    } else {
        double acc[BN_LANES] = {0};
        FOR_EACH_SEGMENT(v, start, len, off, seg)
            seg_sum(acc, dy + off, seg);
        r.dy = fold(acc);
    }
    if (dx)
        FOR_EACH_SEGMENT(v, start, len, off, seg)
            for (int64_t i = off; i < off + seg; i++)
                dx[i] = (float)((double)dy[i] * a);
    return r;
}

static void moments_group(const float *x, bn_rows v, int64_t g, int64_t start, int64_t len,
                          const double *shift, bn_moments *out) {
    for (int64_t j = 0; j < g; j++)
        out[j] = moments(x + j * v.s, v, start, len, shift[j]);
}

static void normalize_group(float *y, const float *x, bn_rows v, int64_t g, int64_t start,
                            int64_t len, const bn_coeffs *co) {
    for (int64_t j = 0; j < g; j++)
        normalize(y + j * v.s, x + j * v.s, v, start, len, co[j].mean, co[j].a, co[j].b);
}

static void grad_sums_group(const float *dy, const float *x, bn_rows v, int64_t g, int64_t start,
                            int64_t len, const double *mean, const double *invstd,
                            bn_grad_sums *out) {
    for (int64_t j = 0; j < g; j++)
        out[j] = grad_sums(dy + j * v.s, x + j * v.s, v, start, len, mean[j], invstd[j]);
}

static void train_dx_group(float *dx, const float *dy, const float *x, bn_rows v, int64_t g,
                           int64_t start, int64_t len, const bn_coeffs *co) {
    for (int64_t j = 0; j < g; j++)
        train_dx(dx + j * v.s, dy + j * v.s, x + j * v.s, v, start, len, co[j].mean, co[j].a,
                 co[j].b, co[j].k);
}

/* The portable kernels have no memory-order advantage to gain: their group forms just loop; and
 * no small path: the driver's serial schedule runs small tensors with them. */
/* Lanes of a row state. */
#define ROW_LANES 4

/* Row kernels: lane j takes the values at offsets j, j+4, ... of each channel's run. */
// x is (rows, c, s)
static void moments_rows(bn_row_state *st, const float *x, int64_t rows, int64_t s, int64_t c,
                         const double *k) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < c; j++, x += s) {
            double *ss = st[j].s, *qq = st[j].q, kj = k[j];
            int64_t i = 0;
            for (; i + ROW_LANES <= s; i += ROW_LANES)
                for (int l = 0; l < ROW_LANES; l++) {
                    double d = (double)x[i + l] - kj;
                    ss[l] += d;
                    qq[l] += d * d;
                }
            for (int l = 0; i + l < s; l++) {
                double d = (double)x[i + l] - kj;
                ss[l] += d;
                qq[l] += d * d;
            }
        }
}

// dy, x are (c, s)
static void grad_sums_rows(bn_row_state *st, const float *dy, const float *x, int64_t s,
                           int64_t c, const double *mean) {
    for (int64_t j = 0; j < c; j++, dy += s, x += s) {
        double *ss = st[j].s, *qq = st[j].q, mu = mean[j];
        int64_t i = 0;
        for (; i + ROW_LANES <= s; i += ROW_LANES)
            for (int l = 0; l < ROW_LANES; l++) {
                ss[l] += (double)dy[i + l];
                qq[l] += (double)dy[i + l] * ((double)x[i + l] - mu);
            }
        for (int l = 0; i + l < s; l++) {
            ss[l] += (double)dy[i + l];
            qq[l] += (double)dy[i + l] * ((double)x[i + l] - mu);
        }
    }
}

const bn_kernels bn_kernels_generic = {
    .moments = moments,
    .normalize = normalize,
    .normalize_row = normalize_row,
    .normalize_moments = normalize_moments,
    .grad_sums = grad_sums,
    .train_dx = train_dx,
    .train_dx_row = train_dx_row,
    .eval_backward = eval_backward,
    .moments_group = moments_group,
    .normalize_group = normalize_group,
    .grad_sums_group = grad_sums_group,
    .train_dx_group = train_dx_group,
    .moments_rows = moments_rows,
    .grad_sums_rows = grad_sums_rows,
};
