/*
 * The tensors of one native_bench case and the helpers both native_bench.c and check.c use:
 * 16-bit conversions, the logical fill that gives every layout the same values, and the calls of
 * the two implementations timed there (libbatchnorm and plain-c).
 */
#ifndef BENCH_TENSOR_H
#define BENCH_TENSOR_H

#include <stdint.h>
#include <string.h>

#include "bench_common.h"

/* One case: x, z, y, dy, dx, dz are (N,C,S) in `layout`, elements of `dtype`, 64-byte aligned;
 * w, b, rm, rv, dw, db, sm, si are (C); scratch is plain-c's (3 * threads * C doubles). */
typedef struct {
    bench_shape sh;
    int layout, dtype, op, threads;
    void *x, *z, *y, *dy, *dx, *dz;
    float *w, *b, *rm, *rv, *dw, *db;
    double *sm, *si, *scratch;
    int32_t status; /* ours: the last call's status, BN_OK or a BN_ERR_* code; -1: no such call */
} bench_case;

#define BENCH_EPS 1e-5
#define BENCH_MOMENTUM 0.1

/* Round to nearest even; NaN stays NaN (quiet). */
static inline uint16_t float_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((u >> 16) | 0x40);
    }
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t float_to_f16(float f) {
    _Float16 h = (_Float16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}

static inline float f16_to_float(uint16_t u) {
    _Float16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}

/* Element i of a tensor of dtype, as float. */
static inline float tensor_get(const void *t, int dtype, int64_t i) {
    switch (dtype) {
    case DTYPE_BF16: return bf16_to_float(((const uint16_t *)t)[i]);
    case DTYPE_F16: return f16_to_float(((const uint16_t *)t)[i]);
    default: return ((const float *)t)[i];
    }
}

static inline void tensor_set(void *t, int dtype, int64_t i, float v) {
    switch (dtype) {
    case DTYPE_BF16: ((uint16_t *)t)[i] = float_to_bf16(v); break;
    case DTYPE_F16: ((uint16_t *)t)[i] = float_to_f16(v); break;
    default: ((float *)t)[i] = v; break;
    }
}

/* Where logical element (b, ch, j) of an (N,C,S) tensor lies in the layout. */
static inline int64_t tensor_index(const bench_shape *sh, int layout, int64_t b, int64_t ch,
                                   int64_t j) {
    return layout == LAYOUT_NCHW ? (b * sh->c + ch) * sh->s + j : (b * sh->s + j) * sh->c + ch;
}

/* x, z, dy get the same logical values in every layout and dtype (rounded to it): per channel a
 * mean of its own; weight, bias and running statistics per channel. */
void tensor_fill(bench_case *k);

/* The timed calls (bench_timed.fn); ctx is a bench_case. ours sets k->status. */
void ours_run(void *ctx);
void plain_run(void *ctx);

/* Whether the library has the call for k's dtype and epilogue; when not, *why says why. */
int ours_available(const bench_case *k, const char **why);

/* "avx512bf16", "avx512", "avx2", "generic" (the library's bn_isa), or "unknown" when it has none. */
const char *ours_isa(void);

#endif /* BENCH_TENSOR_H */
