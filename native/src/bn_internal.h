/*
 * Internals shared by the libbatchnorm sources. Not installed, not part of the API.
 *
 * Every channel is a strided view: N rows of S contiguous floats, row r at base + r*stride
 * (stride = C*S, base = data + ch*S). Its M = N*S values are indexed flat as i = r*S + col.
 *
 * Determinism: each channel's M values are cut into blocks of BN_BLOCK flat indices, a function
 * of the shape alone. Every reduction is computed per block by one kernel call, then the block
 * results are merged strictly in block order. Whichever thread computes a block, and however
 * many threads there are, the same floating-point operations happen in the same order.
 */
#ifndef BN_INTERNAL_H
#define BN_INTERNAL_H

#include <stdint.h>

#if defined(__GNUC__)
#define BN_HIDDEN __attribute__((visibility("hidden")))
#else
#define BN_HIDDEN
#endif

/* Values per statistics block: small enough that a block re-read within a kernel comes from L1. */
#define BN_BLOCK 4096

/* A channel's data: row r starts at base + r*stride; each row holds s values. */
typedef struct {
    int64_t s;
    int64_t stride;
} bn_rows;

/*
 * Moments of a set of values: count, sum of (value - shift) and sum of squared deviations from
 * their own mean. The shift is one value of the channel: sums of shifted values stay small when
 * |mean| >> spread, so block means and Chan's merge keep their accuracy.
 */
typedef struct {
    double n;
    double sum;
    double m2;
} bn_moments;

/* Sums a training backward needs: sum dy and sum dy*(x - mean). */
typedef struct {
    double dy;
    double dyx;
} bn_grad_sums;

/* ---- validation (validate.c) ---- */

/* BN_OK, BN_ERR_BAD_SIZE, BN_ERR_SIZE_OVERFLOW or BN_ERR_UNSUPPORTED_LAYOUT. */
BN_HIDDEN int32_t bn_check_shape(int64_t n, int64_t c, int64_t s, int32_t layout);
BN_HIDDEN int32_t bn_check_eps(double eps);
BN_HIDDEN int32_t bn_check_factor(double factor);

/* ---- threads (threads.c) ---- */

/* Threads to use for a call over `elements` values: 1 below the parallel threshold. */
BN_HIDDEN int bn_threads_for(int64_t elements);

/* ---- block kernels (kernels.c); start and len are flat indices within one channel ---- */

/* Sum of x[start, start+len). */
BN_HIDDEN double bn_block_sum(const float *x, bn_rows v, int64_t start, int64_t len);

/* Moments of x[start, start+len) about shift: two passes (shifted sum, squared deviations). */
BN_HIDDEN bn_moments bn_block_moments(const float *x, bn_rows v, int64_t start, int64_t len,
                                      double shift);

/* Chan's merge of b into a (a, b in that order). */
BN_HIDDEN bn_moments bn_merge_moments(bn_moments a, bn_moments b);

/* y = (x - mean)*alpha + beta over [start, start+len). y may equal x. */
BN_HIDDEN void bn_block_normalize(float *y, const float *x, bn_rows v, int64_t start, int64_t len,
                                  double mean, double alpha, double beta);

/* sum dy and sum dy*(x - mean) over [start, start+len). */
BN_HIDDEN bn_grad_sums bn_block_grad_sums(const float *dy, const float *x, bn_rows v,
                                          int64_t start, int64_t len, double mean);

/* dx = ((dy - gmean) - (x - mean)*k)*a over [start, start+len). dx may equal dy. */
BN_HIDDEN void bn_block_train_dx(float *dx, const float *dy, const float *x, bn_rows v,
                                 int64_t start, int64_t len, double mean, double a, double gmean,
                                 double k);

/* dx = dy*a over [start, start+len). dx may equal dy. */
BN_HIDDEN void bn_block_scale(float *dx, const float *dy, bn_rows v, int64_t start, int64_t len,
                              double a);

#endif /* BN_INTERNAL_H */
