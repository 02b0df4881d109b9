/* The vector primitives of the AVX2 kernel set (with FMA and F16C): 8 floats, 4 doubles. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define BN_VL 8
#define BN_VLD 4
#define BN_BANKS 2 /* rows a channels-first reduction takes side by side */

typedef __m256 vf;
typedef __m256d vd;

static inline vd vd_set1(double a) { return _mm256_set1_pd(a); }
static inline vd vd_zero(void) { return _mm256_setzero_pd(); }
static inline vd vd_add(vd a, vd b) { return _mm256_add_pd(a, b); }
static inline vd vd_sub(vd a, vd b) { return _mm256_sub_pd(a, b); }
static inline vd vd_mul(vd a, vd b) { return _mm256_mul_pd(a, b); }
static inline vd vd_fma(vd a, vd b, vd c) { return _mm256_fmadd_pd(a, b, c); }
static inline vd vd_fnma(vd a, vd b, vd c) { return _mm256_fnmadd_pd(a, b, c); }
static inline vd vd_relu(vd a) { return _mm256_max_pd(_mm256_setzero_pd(), a); }
static inline vd vd_load(const double *p) { return _mm256_loadu_pd(p); }
static inline void vd_store(double *p, vd a) { _mm256_storeu_pd(p, a); }

/* lanes i < n all ones */
static inline __m256i bn_lanes64(int64_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
static inline __m256i bn_lanes32(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline vd vd_keep(vd a, int64_t n) { return _mm256_and_pd(a, _mm256_castsi256_pd(bn_lanes64(n))); }
static inline vd vd_loadn(const double *p, int64_t n) { return _mm256_maskload_pd(p, bn_lanes64(n)); }
static inline vd vd_blend(vd a, vd b, int64_t n) { return _mm256_blendv_pd(b, a, _mm256_castsi256_pd(bn_lanes64(n))); }

static inline double vd_sum(vd a) {
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

static inline vd vf_lo(vf a) { return _mm256_cvtps_pd(_mm256_castps256_ps128(a)); }
static inline vd vf_hi(vf a) { return _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)); }
static inline vf vf_join(vd lo, vd hi) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
}

/*
 * Like vf_join, rounded to odd (see simd_avx512.h for why): rounded to nearest, stepped back
 * toward zero when that overshot, and the last bit set when inexact.
 */
static inline __m128i bn_pd_mask_epi32(__m256d m) {
    __m256i i = _mm256_permutevar8x32_epi32(_mm256_castpd_si256(m), _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    return _mm256_castsi256_si128(i);
}
static inline __m128 bn_pd_ps_odd(vd d) {
    __m128 f = _mm256_cvtpd_ps(d);
    __m256d back = _mm256_cvtps_pd(f);
    __m256d sign = _mm256_set1_pd(-0.0);
    __m256d over = _mm256_cmp_pd(_mm256_andnot_pd(sign, back), _mm256_andnot_pd(sign, d), _CMP_GT_OQ);
    __m256d inexact = _mm256_cmp_pd(back, d, _CMP_NEQ_UQ);
    __m128i bits = _mm_add_epi32(_mm_castps_si128(f), bn_pd_mask_epi32(over));
    bits = _mm_or_si128(bits, _mm_and_si128(bn_pd_mask_epi32(inexact), _mm_set1_epi32(1)));
    return _mm_castsi128_ps(bits);
}
static inline vf vf_join_odd(vd lo, vd hi) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(bn_pd_ps_odd(lo)), bn_pd_ps_odd(hi), 1);
}

/* Float lanes, for the elementwise passes of 16-bit tensors. */
static inline vf vf_set1(float a) { return _mm256_set1_ps(a); }
static inline vf vf_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf vf_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf vf_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf vf_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf vf_fnma(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
static inline vf vf_relu(vf a) { return _mm256_max_ps(_mm256_setzero_ps(), a); }
static inline vf vf_blend(vf a, vf b, int64_t n) {
    return _mm256_blendv_ps(b, a, _mm256_castsi256_ps(bn_lanes32(n)));
}

static inline vf vf_mask_pos(vf g, vf y) {
    return _mm256_and_ps(g, _mm256_cmp_ps(y, _mm256_setzero_ps(), _CMP_GT_OQ));
}

static inline vf ld_f32(const float *p) { return _mm256_loadu_ps(p); }
static inline vf ldn_f32(const float *p, int64_t n) { return _mm256_maskload_ps(p, bn_lanes32(n)); }
static inline void st_f32(float *p, vf a) { _mm256_storeu_ps(p, a); }
static inline void stn_f32(float *p, int64_t n, vf a) { _mm256_maskstore_ps(p, bn_lanes32(n), a); }

/* 16-bit elements: 8 of them in a 128-bit register; partial vectors go through a small buffer
 * (AVX2 has no 16-bit masked load or store). */
static inline __m128i bn_load8x16n(const uint16_t *p, int64_t n) {
    uint16_t b[8] = {0};
    memcpy(b, p, (size_t)(n < 8 ? n : 8) * sizeof *p); /* n < 8; the bound is for the compiler */
    return _mm_loadu_si128((const __m128i *)b);
}
static inline void bn_store8x16n(uint16_t *p, int64_t n, __m128i v) {
    uint16_t b[8];
    _mm_storeu_si128((__m128i *)b, v);
    memcpy(p, b, (size_t)n * sizeof *p);
}

static inline vf bf16_widen(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline __m128i bf16_narrow(vf a) {
    __m256i b = _mm256_castps_si256(a);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7fff)), lsb), 16);
    __m256i q = _mm256_or_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(0x40));
    r = _mm256_blendv_epi8(r, q, _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)));
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}
static inline vf ld_bf16(const uint16_t *p) { return bf16_widen(_mm_loadu_si128((const __m128i *)p)); }
static inline vf ldn_bf16(const uint16_t *p, int64_t n) { return bf16_widen(bn_load8x16n(p, n)); }
static inline void st_bf16(uint16_t *p, vf a) { _mm_storeu_si128((__m128i *)p, bf16_narrow(a)); }
static inline void stn_bf16(uint16_t *p, int64_t n, vf a) { bn_store8x16n(p, n, bf16_narrow(a)); }

static inline vf ld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline vf ldn_f16(const uint16_t *p, int64_t n) { return _mm256_cvtph_ps(bn_load8x16n(p, n)); }
#define BN_F16_NARROW(a) _mm256_cvtps_ph((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
static inline void st_f16(uint16_t *p, vf a) { _mm_storeu_si128((__m128i *)p, BN_F16_NARROW(a)); }
static inline void stn_f16(uint16_t *p, int64_t n, vf a) { bn_store8x16n(p, n, BN_F16_NARROW(a)); }

static inline void sts_f32(float *p, vf a) { _mm256_stream_ps(p, a); }

/* float32 straight to and from double halves: each half its own 16-byte load or store, which
 * spares the shuffle that splits or joins a 32-byte vector */
#define BN_F32_HALVES 1
static inline void ld2_f32(const float *p, vd *lo, vd *hi) {
    *lo = _mm256_cvtps_pd(_mm_loadu_ps(p));
    *hi = _mm256_cvtps_pd(_mm_loadu_ps(p + 4));
}
static inline void st2_f32(float *p, vd lo, vd hi) {
    _mm_storeu_ps(p, _mm256_cvtpd_ps(lo));
    _mm_storeu_ps(p + 4, _mm256_cvtpd_ps(hi));
}
static inline void sts2_f32(float *p, vd lo, vd hi) {
    _mm_stream_ps(p, _mm256_cvtpd_ps(lo));
    _mm_stream_ps(p + 4, _mm256_cvtpd_ps(hi));
}

/* 16-bit values straight to double halves the same way (the reductions widen every value to
 * double): bfloat16 halves from one 16-byte load, each by one interleave with zeros, which puts
 * each value into the high half of its lane; float16 halves each from an 8-byte load (F16C) */
#define BN_16_HALVES 1
static inline void ld2_bf16(const uint16_t *p, vd *lo, vd *hi) {
    __m128i h = _mm_loadu_si128((const __m128i *)p), zero = _mm_setzero_si128();
    *lo = _mm256_cvtps_pd(_mm_castsi128_ps(_mm_unpacklo_epi16(zero, h)));
    *hi = _mm256_cvtps_pd(_mm_castsi128_ps(_mm_unpackhi_epi16(zero, h)));
}
static inline void ld2_f16(const uint16_t *p, vd *lo, vd *hi) {
    *lo = _mm256_cvtps_pd(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)p)));
    *hi = _mm256_cvtps_pd(_mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)(p + 4))));
}
static inline void sts_bf16(uint16_t *p, vf a) { _mm_stream_si128((__m128i *)p, bf16_narrow(a)); }
static inline void sts_f16(uint16_t *p, vf a) { _mm_stream_si128((__m128i *)p, BN_F16_NARROW(a)); }
static inline void bn_stream_fence(void) { _mm_sfence(); }
