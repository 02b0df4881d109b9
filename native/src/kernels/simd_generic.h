/* The vector primitives of the portable kernel set: GCC vector types of 4 floats and 2 doubles
 * (SSE2 on x86-64), no fused multiply-add, scalar element conversions. */
#include <stdint.h>
#include <string.h>

#include "elem.h"

#define BN_VL 4
#define BN_VLD 2
#define BN_BANKS 2 /* rows a channels-first reduction takes side by side */

typedef float vf __attribute__((vector_size(16)));
typedef double vd __attribute__((vector_size(16)));

static inline vd vd_set1(double a) { return (vd){a, a}; }
static inline vd vd_zero(void) { return (vd){0.0, 0.0}; }
static inline vd vd_add(vd a, vd b) { return a + b; }
static inline vd vd_sub(vd a, vd b) { return a - b; }
static inline vd vd_mul(vd a, vd b) { return a * b; }
static inline vd vd_fma(vd a, vd b, vd c) { return a * b + c; }
static inline vd vd_fnma(vd a, vd b, vd c) { return c - a * b; }
static inline vd vd_relu(vd a) {
    vd r;
    for (int i = 0; i < BN_VLD; i++)
        r[i] = a[i] != a[i] ? a[i] : a[i] > 0.0 ? a[i] : 0.0;
    return r;
}
static inline vd vd_load(const double *p) {
    vd r;
    memcpy(&r, p, sizeof r);
    return r;
}
static inline void vd_store(double *p, vd a) { memcpy(p, &a, sizeof a); }
static inline vd vd_keep(vd a, int64_t n) {
    for (int64_t i = n < 0 ? 0 : n; i < BN_VLD; i++)
        a[i] = 0.0;
    return a;
}
static inline vd vd_loadn(const double *p, int64_t n) {
    vd r = vd_zero();
    for (int64_t i = 0; i < n && i < BN_VLD; i++)
        r[i] = p[i];
    return r;
}
static inline vd vd_blend(vd a, vd b, int64_t n) {
    for (int64_t i = n < 0 ? 0 : n; i < BN_VLD; i++)
        a[i] = b[i];
    return a;
}
static inline double vd_sum(vd a) { return a[0] + a[1]; }

static inline vd vf_lo(vf a) { return (vd){a[0], a[1]}; }
static inline vd vf_hi(vf a) { return (vd){a[2], a[3]}; }
static inline vf vf_join(vd lo, vd hi) { return (vf){(float)lo[0], (float)lo[1], (float)hi[0], (float)hi[1]}; }
/* Like vf_join, rounded to odd (see simd_avx512.h for why). */
static inline vf vf_join_odd(vd lo, vd hi) {
    return (vf){bn_double_to_float_odd(lo[0]), bn_double_to_float_odd(lo[1]), bn_double_to_float_odd(hi[0]),
                bn_double_to_float_odd(hi[1])};
}

/* Float lanes, for the elementwise passes of 16-bit tensors (no fused multiply-add here). */
static inline vf vf_set1(float a) { return (vf){a, a, a, a}; }
static inline vf vf_add(vf a, vf b) { return a + b; }
static inline vf vf_sub(vf a, vf b) { return a - b; }
static inline vf vf_mul(vf a, vf b) { return a * b; }
static inline vf vf_fma(vf a, vf b, vf c) { return a * b + c; }
static inline vf vf_fnma(vf a, vf b, vf c) { return c - a * b; }
static inline vf vf_relu(vf a) {
    for (int i = 0; i < BN_VL; i++)
        a[i] = a[i] != a[i] ? a[i] : a[i] > 0.0f ? a[i] : 0.0f;
    return a;
}
static inline vf vf_blend(vf a, vf b, int64_t n) {
    for (int64_t i = n < 0 ? 0 : n; i < BN_VL; i++)
        a[i] = b[i];
    return a;
}

static inline vf vf_mask_pos(vf g, vf y) {
    for (int i = 0; i < BN_VL; i++)
        g[i] = y[i] > 0.0f ? g[i] : 0.0f;
    return g;
}

static inline vf ldn_f32(const float *p, int64_t n) {
    vf r = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < n; i++)
        r[i] = p[i];
    return r;
}
static inline vf ld_f32(const float *p) { return ldn_f32(p, BN_VL); }
static inline void stn_f32(float *p, int64_t n, vf a) {
    for (int64_t i = 0; i < n; i++)
        p[i] = a[i];
}
static inline void st_f32(float *p, vf a) { stn_f32(p, BN_VL, a); }

static inline vf ldn_bf16(const uint16_t *p, int64_t n) {
    vf r = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < n; i++)
        r[i] = bn_bf16_to_float(p[i]);
    return r;
}
static inline vf ld_bf16(const uint16_t *p) { return ldn_bf16(p, BN_VL); }
static inline void stn_bf16(uint16_t *p, int64_t n, vf a) {
    for (int64_t i = 0; i < n; i++)
        p[i] = bn_float_to_bf16(a[i]);
}
static inline void st_bf16(uint16_t *p, vf a) { stn_bf16(p, BN_VL, a); }

static inline vf ldn_f16(const uint16_t *p, int64_t n) {
    vf r = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < n; i++)
        r[i] = bn_f16_to_float(p[i]);
    return r;
}
static inline vf ld_f16(const uint16_t *p) { return ldn_f16(p, BN_VL); }
static inline void stn_f16(uint16_t *p, int64_t n, vf a) {
    for (int64_t i = 0; i < n; i++)
        p[i] = bn_float_to_f16(a[i]);
}
static inline void st_f16(uint16_t *p, vf a) { stn_f16(p, BN_VL, a); }

/* No streaming stores in the portable set: plain ones. */
static inline void sts_f32(float *p, vf a) { st_f32(p, a); }
static inline void sts_bf16(uint16_t *p, vf a) { st_bf16(p, a); }
static inline void sts_f16(uint16_t *p, vf a) { st_f16(p, a); }
static inline void bn_stream_fence(void) {}
