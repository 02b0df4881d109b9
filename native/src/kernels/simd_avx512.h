/* The vector primitives of the AVX-512 kernel sets (F, BW, DQ, VL; with BN_AVX512_BF16 defined,
 * also BF16): 16 floats, 8 doubles. */
#include <immintrin.h>
#include <stdint.h>

#define BN_VL 16
#define BN_VLD 8
#define BN_BANKS 4 /* rows a channels-first reduction takes side by side */

typedef __m512 vf;
typedef __m512d vd;

static inline vd vd_set1(double a) { return _mm512_set1_pd(a); }
static inline vd vd_zero(void) { return _mm512_setzero_pd(); }
static inline vd vd_add(vd a, vd b) { return _mm512_add_pd(a, b); }
static inline vd vd_sub(vd a, vd b) { return _mm512_sub_pd(a, b); }
static inline vd vd_mul(vd a, vd b) { return _mm512_mul_pd(a, b); }
/* a*b + c and c - a*b, each rounded once */
static inline vd vd_fma(vd a, vd b, vd c) { return _mm512_fmadd_pd(a, b, c); }
static inline vd vd_fnma(vd a, vd b, vd c) { return _mm512_fnmadd_pd(a, b, c); }
/* max(0, a), NaN kept (maxpd returns its second operand when either is NaN) */
static inline vd vd_relu(vd a) { return _mm512_max_pd(_mm512_setzero_pd(), a); }
static inline vd vd_load(const double *p) { return _mm512_loadu_pd(p); }
static inline void vd_store(double *p, vd a) { _mm512_storeu_pd(p, a); }

static inline __mmask8 bn_mask8(int64_t n) {
    return (__mmask8)(n >= 8 ? 0xffu : n <= 0 ? 0u : (1u << n) - 1u);
}
static inline __mmask16 bn_mask16(int64_t n) {
    return (__mmask16)(n >= 16 ? 0xffffu : n <= 0 ? 0u : (1u << n) - 1u);
}

/* The first n lanes of a (n may be <= 0 or >= BN_VLD), the others 0. */
static inline vd vd_keep(vd a, int64_t n) { return _mm512_maskz_mov_pd(bn_mask8(n), a); }
static inline vd vd_loadn(const double *p, int64_t n) { return _mm512_maskz_loadu_pd(bn_mask8(n), p); }
/* The first n lanes of a, the others of b. */
static inline vd vd_blend(vd a, vd b, int64_t n) { return _mm512_mask_mov_pd(b, bn_mask8(n), a); }

/* Sum of the lanes in a fixed order. */
static inline double vd_sum(vd a) {
    __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

/* Lanes 0..7 and 8..15 of a float vector as doubles, and back (rounded to nearest-even). */
static inline vd vf_lo(vf a) { return _mm512_cvtps_pd(_mm512_castps512_ps256(a)); }
static inline vd vf_hi(vf a) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}
static inline vf vf_join(vd lo, vd hi) {
    __m512d l = _mm512_castps_pd(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)));
    return _mm512_castpd_ps(_mm512_insertf64x4(l, _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
}

/*
 * Like vf_join, rounded to odd: truncated toward zero, with the last bit set when that was
 * inexact. Float keeps 16 more bits than bfloat16 and 13 more than float16, so rounding this to
 * either gives the double rounded once to nearest-even (rounding to nearest twice would not:
 * a double just past a 16-bit tie becomes the tie itself in float).
 */
static inline __m256 bn_pd_ps_odd(vd d) {
    __m256 t = _mm512_cvt_roundpd_ps(d, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __mmask8 inexact = _mm512_cmp_pd_mask(_mm512_cvtps_pd(t), d, _CMP_NEQ_UQ);
    __m256i bits = _mm256_castps_si256(t);
    return _mm256_castsi256_ps(_mm256_mask_or_epi32(bits, inexact, bits, _mm256_set1_epi32(1)));
}
static inline vf vf_join_odd(vd lo, vd hi) {
    __m512d l = _mm512_castps_pd(_mm512_castps256_ps512(bn_pd_ps_odd(lo)));
    return _mm512_castpd_ps(_mm512_insertf64x4(l, _mm256_castps_pd(bn_pd_ps_odd(hi)), 1));
}

/* Float lanes, for the elementwise passes of 16-bit tensors. */
static inline vf vf_set1(float a) { return _mm512_set1_ps(a); }
static inline vf vf_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf vf_fnma(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }
static inline vf vf_relu(vf a) { return _mm512_max_ps(_mm512_setzero_ps(), a); }
static inline vf vf_blend(vf a, vf b, int64_t n) { return _mm512_mask_mov_ps(b, bn_mask16(n), a); }

/* g where y > 0, else 0 (ReLU's gradient; NaN in y gives 0). */
static inline vf vf_mask_pos(vf g, vf y) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), g);
}

/* ---- elements: full vectors and the first n (< BN_VL) of one; loads fill the rest with 0 ---- */

static inline vf ld_f32(const float *p) { return _mm512_loadu_ps(p); }
static inline vf ldn_f32(const float *p, int64_t n) { return _mm512_maskz_loadu_ps(bn_mask16(n), p); }
static inline void st_f32(float *p, vf a) { _mm512_storeu_ps(p, a); }
static inline void stn_f32(float *p, int64_t n, vf a) { _mm512_mask_storeu_ps(p, bn_mask16(n), a); }

static inline vf bf16_widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/* float -> bfloat16, nearest-even, NaN quieted: integer rounding, exact for subnormals too */
static inline __m256i bf16_narrow_int(vf a) {
    __m512i b = _mm512_castps_si512(a);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb);
    __mmask16 nan = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, b, _mm512_set1_epi32(0x400000));
    /* the high half of each lane, in order, into the low 256 bits: one permute, where a shift
     * and a narrowing move take three operations */
    const __m512i odd = _mm512_set_epi16(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1,
                                         31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi16(odd, r));
}
#ifdef BN_AVX512_BF16
/* AVX-512 BF16's conversion rounds to nearest-even and quiets NaN as the integer rounding does,
 * but takes subnormal inputs as zero: vectors holding one take the integer rounding (a branch
 * that real data almost never takes). */
static inline __m256i bf16_narrow(vf a) {
    __m256i r = (__m256i)_mm512_cvtneps_pbh(a);
    __mmask16 sub = _mm512_fpclass_ps_mask(a, 0x20); /* 0x20: denormal */
    if (__builtin_expect(sub != 0, 0))
        r = bf16_narrow_int(a);
    return r;
}
#else
static inline __m256i bf16_narrow(vf a) { return bf16_narrow_int(a); }
#endif
static inline vf ld_bf16(const uint16_t *p) { return bf16_widen(_mm256_loadu_si256((const __m256i *)p)); }
static inline vf ldn_bf16(const uint16_t *p, int64_t n) {
    return bf16_widen(_mm256_maskz_loadu_epi16(bn_mask16(n), p));
}
static inline void st_bf16(uint16_t *p, vf a) { _mm256_storeu_si256((__m256i *)p, bf16_narrow(a)); }
static inline void stn_bf16(uint16_t *p, int64_t n, vf a) {
    _mm256_mask_storeu_epi16(p, bn_mask16(n), bf16_narrow(a));
}

static inline vf ld_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline vf ldn_f16(const uint16_t *p, int64_t n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(bn_mask16(n), p));
}
#define BN_F16_NARROW(a) _mm512_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
static inline void st_f16(uint16_t *p, vf a) { _mm256_storeu_si256((__m256i *)p, BN_F16_NARROW(a)); }
static inline void stn_f16(uint16_t *p, int64_t n, vf a) {
    _mm256_mask_storeu_epi16(p, bn_mask16(n), BN_F16_NARROW(a));
}

/* Streaming (non-temporal) stores of a full vector to an address aligned to its size, and the
 * fence that orders them before the call returns. */
static inline void sts_f32(float *p, vf a) { _mm512_stream_ps(p, a); }
static inline void sts_bf16(uint16_t *p, vf a) { _mm256_stream_si256((__m256i *)p, bf16_narrow(a)); }
static inline void sts_f16(uint16_t *p, vf a) { _mm256_stream_si256((__m256i *)p, BN_F16_NARROW(a)); }
static inline void bn_stream_fence(void) { _mm_sfence(); }

/* float32 straight to and from double halves: each half its own 32-byte load or store, which
 * spares the shuffle that splits or joins a 64-byte vector */
#define BN_F32_HALVES 1
static inline void ld2_f32(const float *p, vd *lo, vd *hi) {
    *lo = _mm512_cvtps_pd(_mm256_loadu_ps(p));
    *hi = _mm512_cvtps_pd(_mm256_loadu_ps(p + 8));
}
static inline void st2_f32(float *p, vd lo, vd hi) {
    _mm256_storeu_ps(p, _mm512_cvtpd_ps(lo));
    _mm256_storeu_ps(p + 8, _mm512_cvtpd_ps(hi));
}
static inline void sts2_f32(float *p, vd lo, vd hi) {
    _mm256_stream_ps(p, _mm512_cvtpd_ps(lo));
    _mm256_stream_ps(p + 8, _mm512_cvtpd_ps(hi));
}

/* 16-bit values straight to double halves the same way, each half from its own 16-byte load:
 * the reductions widen every value to double, and widening a whole vector and splitting it took
 * a quarter of a bfloat16 reduction's time in L2 (docs/experiments.md). A bfloat16 half takes
 * one word permute with a zeroing mask (each value into the high half of its lane), where a
 * widening move and a shift take two operations. */
#define BN_16_HALVES 1
static inline vd bf16_half(const uint16_t *p) {
    const __m256i hi = _mm256_set_epi16(7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0, 0);
    __m256i h = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm512_cvtps_pd(_mm256_castsi256_ps(_mm256_maskz_permutexvar_epi16(0xAAAA, hi, h)));
}
static inline void ld2_bf16(const uint16_t *p, vd *lo, vd *hi) {
    *lo = bf16_half(p);
    *hi = bf16_half(p + 8);
}
static inline void ld2_f16(const uint16_t *p, vd *lo, vd *hi) {
    *lo = _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)));
    *hi = _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8))));
}
