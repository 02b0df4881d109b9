/*
 * Block kernels: the inner loops, over a range of flat indices of one channel.
 * A range crosses rows: it is walked as segments, each a contiguous part of one row.
 * Sums use BN_LANES independent double accumulators (lane j takes the values at offsets
 * j, j+BN_LANES, ... of each segment), folded in a fixed order at the end of the block, so the
 * result depends only on the shape.
 */
#include "bn_internal.h"

#define BN_LANES 8

static double fold(const double acc[BN_LANES]) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

// p is (len)
static void seg_sum(double acc[BN_LANES], const float *p, int64_t len) {
    int64_t i = 0;
    for (; i + BN_LANES <= len; i += BN_LANES)
        for (int j = 0; j < BN_LANES; j++)
            acc[j] += (double)p[i + j];
    for (int j = 0; i + j < len; j++)
        acc[j] += (double)p[i + j];
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

double bn_block_sum(const float *x, bn_rows v, int64_t start, int64_t len) {
    double acc[BN_LANES] = {0};
    int64_t row = start / v.s, col = start % v.s;
    for (int64_t left = len; left > 0; row++, col = 0) {
        int64_t seg = min64(v.s - col, left);
        seg_sum(acc, x + row * v.stride + col, seg);
        left -= seg;
    }
    return fold(acc);
}

bn_moments bn_block_moments(const float *x, bn_rows v, int64_t start, int64_t len,
                            double shift) {
    double acc[BN_LANES] = {0};
    int64_t row = start / v.s, col = start % v.s;
    for (int64_t left = len; left > 0; row++, col = 0) {
        int64_t seg = min64(v.s - col, left);
        seg_shifted_sum(acc, x + row * v.stride + col, seg, shift);
        left -= seg;
    }
    bn_moments m = {(double)len, fold(acc), 0.0};
    double mean = shift + m.sum / m.n;
    double acc2[BN_LANES] = {0};
    row = start / v.s, col = start % v.s;
    for (int64_t left = len; left > 0; row++, col = 0) {
        int64_t seg = min64(v.s - col, left);
        seg_sqdev(acc2, x + row * v.stride + col, seg, mean);
        left -= seg;
    }
    m.m2 = fold(acc2);
    return m;
}

bn_moments bn_merge_moments(bn_moments a, bn_moments b) {
    if (a.n == 0.0)
        return b;
    double n = a.n + b.n;
    double delta = b.sum / b.n - a.sum / a.n;
    bn_moments r = {n, a.sum + b.sum, a.m2 + b.m2 + delta * delta * (a.n * b.n / n)};
    return r;
}

void bn_block_normalize(float *y, const float *x, bn_rows v, int64_t start, int64_t len,
                        double mean, double alpha, double beta) {
    int64_t row = start / v.s, col = start % v.s;
    for (int64_t left = len; left > 0; row++, col = 0) {
        int64_t seg = min64(v.s - col, left);
        const float *p = x + row * v.stride + col;
        float *q = y + row * v.stride + col;
        for (int64_t i = 0; i < seg; i++)
            q[i] = (float)(((double)p[i] - mean) * alpha + beta);
        left -= seg;
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

bn_grad_sums bn_block_grad_sums(const float *dy, const float *x, bn_rows v, int64_t start,
                                int64_t len, double mean) {
    double ady[BN_LANES] = {0}, adyx[BN_LANES] = {0};
    int64_t row = start / v.s, col = start % v.s;
    for (int64_t left = len; left > 0; row++, col = 0) {
        int64_t seg = min64(v.s - col, left);
        int64_t off = row * v.stride + col;
        seg_grad(ady, adyx, dy + off, x + off, seg, mean);
        left -= seg;
    }
    bn_grad_sums r = {fold(ady), fold(adyx)};
    return r;
}

void bn_block_train_dx(float *dx, const float *dy, const float *x, bn_rows v, int64_t start,
                       int64_t len, double mean, double a, double gmean, double k) {
    int64_t row = start / v.s, col = start % v.s;
    for (int64_t left = len; left > 0; row++, col = 0) {
        int64_t seg = min64(v.s - col, left);
        int64_t off = row * v.stride + col;
        for (int64_t i = 0; i < seg; i++) {
            double d = (double)x[off + i] - mean;
            dx[off + i] = (float)((((double)dy[off + i] - gmean) - d * k) * a);
        }
        left -= seg;
    }
}

void bn_block_scale(float *dx, const float *dy, bn_rows v, int64_t start, int64_t len, double a) {
    int64_t row = start / v.s, col = start % v.s;
    for (int64_t left = len; left > 0; row++, col = 0) {
        int64_t seg = min64(v.s - col, left);
        int64_t off = row * v.stride + col;
        for (int64_t i = 0; i < seg; i++)
            dx[off + i] = (float)((double)dy[off + i] * a);
        left -= seg;
    }
}
