/*
 * AVX2+FMA block kernels, compiled with -mavx2 -mfma and called only when the CPU has both
 * (kernels.c picks them at run time). kernels_avx512.c compiles this file again with BN_AVX512:
 * the reductions (moments, backward sums) then run over 8 double lanes per register, the rest is
 * the same code.
 *
 * Every sum is accumulated in double: the moments of a block in one pass (deviations from the
 * block's first value, see moment_state), the backward sums in one pass. The elementwise passes
 * (y, dx) work in float lanes, with means subtracted as a float pair (hi + lo) so that deviations
 * keep full accuracy when |mean| >> spread.
 *
 * Float lanes have a narrower range than double: each elementwise fast path checks its constants
 * and falls back to a wide path, which does every operation in double, when overflow, underflow or
 * a non-finite value could have hurt the result; so do the moments when they meet a non-finite
 * value. The choice depends only on the block's data, so results still do not depend on the
 * thread count.
 *
 * Every kernel walks its block segment by segment (a segment is the part of one row inside the
 * block); within a segment: 16-value chunks, then single 4- or 8-value vectors, then scalars.
 * That order is fixed by the shape.
 */
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

#include "bn_internal.h"

/* kernels_avx512.c builds this file again with BN_AVX512 set: that table is this one with its
 * reductions over 512-bit registers. */
#if BN_AVX512
#define BN_KERNELS_TABLE bn_kernels_avx512
#else
#define BN_KERNELS_TABLE bn_kernels_avx2
#endif

/* Walks the segments of [start, start+len): off is the offset of the segment's first value from
 * the channel base, seg its length, row_ its row. */
#define FOR_EACH_SEGMENT(v, start, len, off, seg)                                        \
    for (int64_t row_ = bn_row_of(start, (v).s), col_ = (start) - row_ * (v).s, left_ = (len), \
                 off = 0, seg = 0;                                                       \
         left_ > 0 && (off = row_ * (v).stride + col_,                                  \
                      seg = (v).s - col_ < left_ ? (v).s - col_ : left_, 1);             \
         left_ -= seg, row_++, col_ = 0)

static inline __m256d lo4(__m256 v) {
    return _mm256_cvtps_pd(_mm256_castps256_ps128(v));
}

static inline __m256d hi4(__m256 v) {
    return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

static inline __m256 narrow(__m256d lo, __m256d hi) {
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

static inline double hsum(__m256d a0, __m256d a1, __m256d a2, __m256d a3) {
    __m256d s = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}



/* Stores 8 floats: non-temporal when asked (the address is then 32-byte aligned). */
static inline void store8(float *p, __m256 r, int stream) {
    if (stream)
        _mm256_stream_ps(p, r);
    else
        _mm256_storeu_ps(p, r);
}

/* Values before the first 32-byte-aligned output of a segment, when streaming. */
static inline int64_t head(const float *q, int64_t seg, int stream) {
    if (!stream)
        return 0;
    int64_t h = (int64_t)((32 - ((uintptr_t)q & 31)) & 31) / 4;
    return h < seg ? h : seg;
}

/*
 * Software prefetch running BN_PREFETCH values ahead along a channel's flat index, across row
 * ends: a channel's next row is C*S values away, where the hardware prefetchers do not follow.
 * The cursor advances with the loop, 16 values (one cache line) per step.
 */
#define BN_PREFETCH 2048
/* Rows at least this long are left to the hardware prefetchers in the fused pass of
 * normalize_moments, where the output stream keeps the core busy while the next channel's lines
 * arrive: there the cursor's bookkeeping costs more than it gains (measured). */
#define BN_PREFETCH_MAX_S 1024

typedef struct {
    int64_t f, row, col;
} pf_cursor;

static inline pf_cursor pf_start(bn_rows v, int64_t start) {
    int64_t f = start + BN_PREFETCH;
    if (f >= v.m) {
        pf_cursor done = {v.m, 0, 0}; /* nothing left to prefetch */
        return done;
    }
    int64_t row = bn_row_of(f, v.s);
    pf_cursor c = {f, row, f - row * v.s};
    return c;
}

static inline void pf_skip(pf_cursor *c, bn_rows v, int64_t k) {
    if (c->f >= v.m)
        return;
    c->f += k;
    c->col += k;
    if (v.s >= 16) {
        while (c->col >= v.s) {
            c->col -= v.s;
            c->row++;
        }
    } else if (c->col >= v.s) {
        c->row += c->col / v.s;
        c->col %= v.s;
    }
}

/* Prefetches the cursor's line of a (and of b when given), then steps 16 values. */
static inline void pf_step(pf_cursor *c, bn_rows v, const float *a, const float *b) {
    if (c->f < v.m) {
        int64_t o = c->row * v.stride + c->col;
        _mm_prefetch((const char *)(a + o), _MM_HINT_T0);
        if (b)
            _mm_prefetch((const char *)(b + o), _MM_HINT_T0);
    }
    pf_skip(c, v, 16);
}

/* ======== wide paths: every operation in double ======== */

static bn_moments moments_wide(const float *x, bn_rows v, int64_t start, int64_t len,
                               double shift) {
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, k = _mm256_set1_pd(shift);
    double tail = 0.0;
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        const float *p = x + off;
        int64_t i = 0;
        for (; i + 8 <= seg; i += 8) {
            __m256 u = _mm256_loadu_ps(p + i);
            a0 = _mm256_add_pd(a0, _mm256_sub_pd(lo4(u), k));
            a1 = _mm256_add_pd(a1, _mm256_sub_pd(hi4(u), k));
        }
        for (; i < seg; i++)
            tail += (double)p[i] - shift;
    }
    __m256d z = _mm256_setzero_pd();
    bn_moments m = {(double)len, hsum(a0, a1, z, z) + tail, 0.0};
    double mean = shift + m.sum / m.n;
    __m256d mu = _mm256_set1_pd(mean);
    a0 = a1 = z;
    tail = 0.0;
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        const float *p = x + off;
        int64_t i = 0;
        for (; i + 8 <= seg; i += 8) {
            __m256 u = _mm256_loadu_ps(p + i);
            __m256d d0 = _mm256_sub_pd(lo4(u), mu), d1 = _mm256_sub_pd(hi4(u), mu);
            a0 = _mm256_fmadd_pd(d0, d0, a0);
            a1 = _mm256_fmadd_pd(d1, d1, a1);
        }
        for (; i < seg; i++) {
            double d = (double)p[i] - mean;
            tail = fma(d, d, tail);
        }
    }
    m.m2 = hsum(a0, a1, z, z) + tail;
    return m;
}

static void normalize_wide(float *y, const float *x, bn_rows v, int64_t start, int64_t len,
                           double mean, double alpha, double beta) {
    __m256d mu = _mm256_set1_pd(mean), al = _mm256_set1_pd(alpha), be = _mm256_set1_pd(beta);
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        const float *p = x + off;
        float *q = y + off;
        int64_t i = 0;
        for (; i + 8 <= seg; i += 8) {
            __m256 u = _mm256_loadu_ps(p + i);
            __m256d l = _mm256_fmadd_pd(_mm256_sub_pd(lo4(u), mu), al, be);
            __m256d r = _mm256_fmadd_pd(_mm256_sub_pd(hi4(u), mu), al, be);
            _mm256_storeu_ps(q + i, narrow(l, r));
        }
        for (; i < seg; i++)
            q[i] = (float)fma((double)p[i] - mean, alpha, beta);
    }
}

static bn_grad_sums grad_sums_wide(const float *dy, const float *x, bn_rows v, int64_t start,
                                   int64_t len, double mean, double invstd) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, t0 = s0, t1 = s0, mu = _mm256_set1_pd(mean);
    double tail_s = 0.0, tail_t = 0.0;
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        const float *g = dy + off, *p = x ? x + off : NULL;
        int64_t i = 0;
        for (; i + 8 <= seg; i += 8) {
            __m256 gu = _mm256_loadu_ps(g + i);
            __m256d g0 = lo4(gu), g1 = hi4(gu);
            s0 = _mm256_add_pd(s0, g0);
            s1 = _mm256_add_pd(s1, g1);
            if (p) {
                __m256 u = _mm256_loadu_ps(p + i);
                t0 = _mm256_fmadd_pd(g0, _mm256_sub_pd(lo4(u), mu), t0);
                t1 = _mm256_fmadd_pd(g1, _mm256_sub_pd(hi4(u), mu), t1);
            }
        }
        for (; i < seg; i++) {
            tail_s += (double)g[i];
            if (p)
                tail_t = fma((double)g[i], (double)p[i] - mean, tail_t);
        }
    }
    __m256d z = _mm256_setzero_pd();
    bn_grad_sums r = {hsum(s0, s1, z, z) + tail_s, (hsum(t0, t1, z, z) + tail_t) * invstd};
    return r;
}

static void train_dx_wide(float *dx, const float *dy, const float *x, bn_rows v, int64_t start,
                          int64_t len, double mean, double a, double gmean, double k) {
    __m256d mu = _mm256_set1_pd(mean), av = _mm256_set1_pd(a), gm = _mm256_set1_pd(gmean);
    __m256d kv = _mm256_set1_pd(k);
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        const float *g = dy + off, *p = x + off;
        float *q = dx + off;
        int64_t i = 0;
        for (; i + 8 <= seg; i += 8) {
            __m256 gu = _mm256_loadu_ps(g + i), u = _mm256_loadu_ps(p + i);
            __m256d l = _mm256_fnmadd_pd(_mm256_sub_pd(lo4(u), mu), kv, _mm256_sub_pd(lo4(gu), gm));
            __m256d r = _mm256_fnmadd_pd(_mm256_sub_pd(hi4(u), mu), kv, _mm256_sub_pd(hi4(gu), gm));
            _mm256_storeu_ps(q + i, narrow(_mm256_mul_pd(l, av), _mm256_mul_pd(r, av)));
        }
        for (; i < seg; i++)
            q[i] = (float)(fma(-((double)p[i] - mean), k, (double)g[i] - gmean) * a);
    }
}

static bn_grad_sums eval_backward_wide(float *dx, const float *dy, const float *x, bn_rows v,
                                       int64_t start, int64_t len, double mean, double invstd,
                                       double a) {
    bn_grad_sums r = grad_sums_wide(dy, x, v, start, len, mean, invstd);
    if (!x)
        r.dyx = 0.0;
    if (dx) {
        __m256d av = _mm256_set1_pd(a);
        FOR_EACH_SEGMENT(v, start, len, off, seg) {
            const float *g = dy + off;
            float *q = dx + off;
            int64_t i = 0;
            for (; i + 8 <= seg; i += 8) {
                __m256 gu = _mm256_loadu_ps(g + i);
                _mm256_storeu_ps(q + i, narrow(_mm256_mul_pd(lo4(gu), av), _mm256_mul_pd(hi4(gu), av)));
            }
            for (; i < seg; i++)
                q[i] = (float)((double)g[i] * a);
        }
    }
    return r;
}

/* ======== fast paths: float lanes, folded into double ======== */

/*
 * Running state of a block's moments, in one pass: sums of d and of d*d, d = x - k in double,
 * where k is the block's first value. Because k is one of the block's values, (k - mean)^2 is at
 * most the block's sum of squared deviations m2, so m2 = sum d^2 - (sum d)^2/len cancels at most
 * a factor 1 + len: below 1e-8 of m2 for a 4096-value block, and exact for a constant block.
 */
#if BN_AVX512
/* AVX-512 build: the same sums over 8 double lanes per register instead of 4. The conversions
 * from float bound this loop, and half as many of them run per value. */
typedef __m512d moment_vec;
#define MOMENT_LANES 8
#define moment_zero _mm512_setzero_pd
#define moment_set1 _mm512_set1_pd
#define moment_load(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define moment_add _mm512_add_pd
#define moment_sub _mm512_sub_pd
#define moment_fmadd _mm512_fmadd_pd
static inline double moment_hsum(__m512d a0, __m512d a1, __m512d a2, __m512d a3) {
    __m512d s = _mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3));
    return hsum(_mm512_castpd512_pd256(s), _mm512_extractf64x4_pd(s, 1), _mm256_setzero_pd(),
                _mm256_setzero_pd());
}
#else
typedef __m256d moment_vec;
#define MOMENT_LANES 4
#define moment_zero _mm256_setzero_pd
#define moment_set1 _mm256_set1_pd
#define moment_load(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
#define moment_add _mm256_add_pd
#define moment_sub _mm256_sub_pd
#define moment_fmadd _mm256_fmadd_pd
#define moment_hsum hsum
#endif

/* One unrolled step: four registers of lanes. */
#define MOMENT_STEP (4 * MOMENT_LANES)

typedef struct {
    moment_vec s0, s1, s2, s3, q0, q1, q2, q3;
    double ts, tq;
} moment_state;

static inline void moment_init(moment_state *st) {
    st->s0 = st->s1 = st->s2 = st->s3 = moment_zero();
    st->q0 = st->q1 = st->q2 = st->q3 = moment_zero();
    st->ts = st->tq = 0.0;
}

/* Adds d = x - k and d*d for one register of values into the accumulator pair (s, q). */
#define MOMENT_ADD(p, k, s, q)                                                       \
    do {                                                                             \
        moment_vec d_ = moment_sub(moment_load(p), k);                               \
        s = moment_add(s, d_);                                                       \
        q = moment_fmadd(d_, d_, q);                                                 \
    } while (0)

/* One segment of a block into the state; pf, when given, prefetches ahead along the channel. */
static inline __attribute__((always_inline)) void moment_seg(moment_state *st, const float *p,
                                                              int64_t seg, double k,
                                                              pf_cursor *pf, bn_rows v,
                                                              const float *base) {
    const moment_vec kv = moment_set1(k);
    int64_t i = 0;
    for (; i + MOMENT_STEP <= seg; i += MOMENT_STEP) {
        for (int64_t j = 0; pf && j < MOMENT_STEP; j += 16)
            pf_step(pf, v, base, NULL);
        MOMENT_ADD(p + i, kv, st->s0, st->q0);
        MOMENT_ADD(p + i + MOMENT_LANES, kv, st->s1, st->q1);
        MOMENT_ADD(p + i + 2 * MOMENT_LANES, kv, st->s2, st->q2);
        MOMENT_ADD(p + i + 3 * MOMENT_LANES, kv, st->s3, st->q3);
    }
    if (pf)
        pf_skip(pf, v, seg % MOMENT_STEP); /* the unrolled loop stepped the rest */
    for (; i + MOMENT_LANES <= seg; i += MOMENT_LANES)
        MOMENT_ADD(p + i, kv, st->s0, st->q0);
    for (; i < seg; i++) {
        double d = (double)p[i] - k;
        st->ts += d;
        st->tq = fma(d, d, st->tq);
    }
}

/*
 * The block's moments about the channel's shift from the state, or NaN in m2 when they are not
 * finite (a NaN or infinity in the block: the wide path then gives the channel its NaN).
 */
static inline bn_moments moment_result(const moment_state *st, int64_t len, double k,
                                       double shift) {
    double sd = moment_hsum(st->s0, st->s1, st->s2, st->s3) + st->ts;
    double sq = moment_hsum(st->q0, st->q1, st->q2, st->q3) + st->tq;
    bn_moments m = {(double)len, sd + (double)len * (k - shift), sq - sd * (sd / (double)len)};
    if (!isfinite(m.sum) || !isfinite(m.m2))
        m.m2 = NAN;
    return m;
}

/* The first value of a block (the point its deviations are taken from), or the channel's shift
 * when that value is not finite. */
static inline double block_origin(const float *x, bn_rows v, int64_t start, double shift) {
    int64_t row = bn_row_of(start, v.s);
    float first = x[row * v.stride + start - row * v.s];
    return isfinite(first) ? (double)first : shift;
}

static bn_moments moments(const float *x, bn_rows v, int64_t start, int64_t len, double shift) {
    double k = block_origin(x, v, start, shift);
    moment_state st;
    moment_init(&st);
    pf_cursor pf = pf_start(v, start);
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        moment_seg(&st, x + off, seg, k, &pf, v, x);
    bn_moments m = moment_result(&st, len, k, shift);
    return isnan(m.m2) ? moments_wide(x, v, start, len, shift) : m;
}

/* Prefetches row r's part of g channels (g*s contiguous values from p), when r < rows. */
static inline void prefetch_row(const float *p, int64_t s, int64_t g) {
    const char *c = (const char *)p, *e = (const char *)(p + g * s);
    for (; c < e; c += 64)
        _mm_prefetch(c, _MM_HINT_T0);
}

/* Rows ahead that the group kernels prefetch. */
#define BN_ROWS_AHEAD 8

/*
 * moments() of g consecutive channels at once, walking memory row by row (each row holds the g
 * channels' segments back to back): each channel sees exactly the operations moments() would do,
 * so the results are the same bits.
 */
static void moments_group(const float *x, bn_rows v, int64_t g, int64_t start, int64_t len,
                          const double *shift, bn_moments *out) {
    moment_state st[BN_GROUP_MAX];
    double k[BN_GROUP_MAX];
    for (int64_t j = 0; j < g; j++) {
        k[j] = block_origin(x + j * v.s, v, start, shift[j]);
        moment_init(&st[j]);
    }
    int64_t rows = (v.m + v.s - 1) / v.s;
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        if (row_ + BN_ROWS_AHEAD < rows)
            prefetch_row(x + (row_ + BN_ROWS_AHEAD) * v.stride, v.s, g);
        for (int64_t j = 0; j < g; j++)
            moment_seg(&st[j], x + j * v.s + off, seg, k[j], NULL, v, x);
    }
    for (int64_t j = 0; j < g; j++) {
        out[j] = moment_result(&st[j], len, k[j], shift[j]);
        if (isnan(out[j].m2))
            out[j] = moments_wide(x + j * v.s, v, start, len, shift[j]);
    }
}

/* The float constants of y = ((x - mh) - ml)*af + bf. */
typedef struct {
    float mh, ml, af, bf;
} norm_consts;

static inline norm_consts norm_make(double mean, double alpha, double beta) {
    norm_consts k;
    k.mh = (float)mean;
    k.ml = (float)(mean - (double)k.mh);
    k.af = (float)alpha;
    k.bf = (float)beta;
    return k;
}

static inline __attribute__((always_inline)) void norm_seg(float *q, const float *p, int64_t seg,
                                                            norm_consts k, int stream,
                                                            pf_cursor *pf, bn_rows v,
                                                            const float *base) {
    const __m256 mh = _mm256_set1_ps(k.mh), ml = _mm256_set1_ps(k.ml);
    const __m256 al = _mm256_set1_ps(k.af), be = _mm256_set1_ps(k.bf);
    int64_t i = 0, h = head(q, seg, stream);
    for (; i < h; i++)
        q[i] = fmaf((p[i] - k.mh) - k.ml, k.af, k.bf);
    for (; i + 16 <= seg; i += 16) {
        if (pf)
            pf_step(pf, v, base, NULL);
        __m256 d0 = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i), mh), ml);
        __m256 d1 = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i + 8), mh), ml);
        store8(q + i, _mm256_fmadd_ps(d0, al, be), stream);
        store8(q + i + 8, _mm256_fmadd_ps(d1, al, be), stream);
    }
    if (pf)
        pf_skip(pf, v, seg - (seg - h) / 16 * 16);
    for (; i + 8 <= seg; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i), mh), ml);
        store8(q + i, _mm256_fmadd_ps(d, al, be), stream);
    }
    for (; i < seg; i++)
        q[i] = fmaf((p[i] - k.mh) - k.ml, k.af, k.bf);
}

static void normalize(float *y, const float *x, bn_rows v, int64_t start, int64_t len,
                      double mean, double alpha, double beta) {
    if (!bn_float_ok(mean) || !bn_float_ok(alpha)) {
        normalize_wide(y, x, v, start, len, mean, alpha, beta);
        return;
    }
    norm_consts k = norm_make(mean, alpha, beta);
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        norm_seg(y + off, x + off, seg, k, v.stream, NULL, v, x);
    if (v.stream)
        _mm_sfence();
}

/* Lanes 0..k-1 of eight (0 < k < 8). */
static inline __m256i mask8(int64_t k) {
    static const int32_t bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(bits + 8 - k));
}

/* norm_seg for the short runs of a row: 8 values at a time, the last few through a mask, so that
 * a run costs a few vector operations and no scalar tail. The same formula, the same bits. */
static inline void norm_short(float *q, const float *p, int64_t len, const bn_norm *k) {
    const __m256 mh = _mm256_set1_ps(k->mh), ml = _mm256_set1_ps(k->ml);
    const __m256 al = _mm256_set1_ps(k->af), be = _mm256_set1_ps(k->bf);
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i), mh), ml);
        _mm256_storeu_ps(q + i, _mm256_fmadd_ps(d, al, be));
    }
    if (i < len) {
        __m256i m = mask8(len - i);
        __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_maskload_ps(p + i, m), mh), ml);
        _mm256_maskstore_ps(q + i, m, _mm256_fmadd_ps(d, al, be));
    }
}

static void normalize_lines(float *y, const float *x, int64_t s, int64_t col, int64_t len,
                            const bn_row_consts *c);

static void normalize_row(float *y, const float *x, int64_t s, int64_t col, int64_t len,
                          const bn_row_consts *c, int store) {
    if (store == BN_ROW_LINES) {
        normalize_lines(y, x, s, col, len, c);
        return;
    }
    int stream = store == BN_ROW_STREAM;
    bn_rows one = {s, s, s, stream};
    for (int64_t run; len > 0; len -= run, x += run, y += run, col = 0, c++) {
        run = s - col < len ? s - col : len;
        const bn_norm *k = &c->norm;
        norm_consts f = {k->mh, k->ml, k->af, k->bf};
        if (!k->fast)
            normalize_wide(y, x, one, 0, run, k->mean, k->a, k->b);
        else if (stream)
            norm_seg(y, x, run, f, stream, NULL, one, x);
        else
            norm_short(y, x, run, k);
    }
}

/* Values before the first 64-byte-aligned output. */
static inline int64_t line_head(const float *q) {
    return (int64_t)((64 - ((uintptr_t)q & 63)) & 63) / 4;
}

/* Whether every channel a run of len values from column col touches has float constants. */
static inline int run_fast(const bn_row_consts *c, int64_t s, int64_t col, int64_t len) {
    for (int64_t j = 0; j < (col + len + s - 1) / s; j++)
        if (!c[j].norm.fast)
            return 0;
    return 1;
}

/*
 * normalize_row for BN_ROW_LINES: whole 64-byte lines of y are streamed in address order,
 * straight across channel boundaries. A vector that holds the end of one channel and the start of
 * the next takes each lane's constants from its own channel (s >= 8: at most one boundary per
 * vector). The unaligned head and the tail take the cached path; so does a run with a channel
 * that needs the wide path. The same bits as the cached path.
 */
static void normalize_lines(float *y, const float *x, int64_t s, int64_t col, int64_t len,
                            const bn_row_consts *c) {
    int64_t h = line_head(y);
    if (s < 8 || h >= len || !run_fast(c, s, col, len)) {
        normalize_row(y, x, s, col, len, c, BN_ROW_CACHED);
        return;
    }
    normalize_row(y, x, s, col, h, c, BN_ROW_CACHED);
    y += h, x += h, len -= h, col += h;
    c += col / s, col %= s;
    int64_t body = len / 16 * 16, next = s - col; /* where channel c[1] begins */
    __m256 mh = _mm256_set1_ps(c->norm.mh), ml = _mm256_set1_ps(c->norm.ml);
    __m256 al = _mm256_set1_ps(c->norm.af), be = _mm256_set1_ps(c->norm.bf);
    for (int64_t i = 0; i < body; i += 8) {
        if (i >= next) {
            c++, next += s;
            mh = _mm256_set1_ps(c->norm.mh), ml = _mm256_set1_ps(c->norm.ml);
            al = _mm256_set1_ps(c->norm.af), be = _mm256_set1_ps(c->norm.bf);
        }
        __m256 vmh = mh, vml = ml, val = al, vbe = be;
        if (i + 8 > next) { /* lanes next-i.. belong to the next channel */
            const bn_norm *n1 = &c[1].norm;
            __m256 keep = _mm256_castsi256_ps(mask8(next - i));
            vmh = _mm256_blendv_ps(_mm256_set1_ps(n1->mh), mh, keep);
            vml = _mm256_blendv_ps(_mm256_set1_ps(n1->ml), ml, keep);
            val = _mm256_blendv_ps(_mm256_set1_ps(n1->af), al, keep);
            vbe = _mm256_blendv_ps(_mm256_set1_ps(n1->bf), be, keep);
        }
        __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmh), vml);
        _mm256_stream_ps(y + i, _mm256_fmadd_ps(d, val, vbe));
    }
    if (body >= next)
        c++, next += s;
    normalize_row(y + body, x + body, s, s - (next - body), len - body, c, BN_ROW_CACHED);
}

/*
 * One segment of normalize_moments: moment_seg() over pn and norm_seg() over p -> q, in lockstep
 * through the unrolled part, then each one's own tail. Streaming needs q 32-byte aligned for the
 * lockstep; otherwise the two run one after the other.
 */
static inline __attribute__((always_inline)) void fused_seg(moment_state *st, const float *pn,
                                                             float *q, const float *p,
                                                             int64_t seg, double k,
                                                             norm_consts f, int stream,
                                                             pf_cursor *pf, bn_rows v,
                                                             const float *base) {
    int64_t i = 0;
    if (!stream || ((uintptr_t)q & 31) == 0) {
        const moment_vec kv = moment_set1(k);
        const __m256 mh = _mm256_set1_ps(f.mh), ml = _mm256_set1_ps(f.ml);
        const __m256 al = _mm256_set1_ps(f.af), be = _mm256_set1_ps(f.bf);
        for (; i + MOMENT_STEP <= seg; i += MOMENT_STEP) {
            for (int64_t j = 0; j < MOMENT_STEP; j += 16)
                pf_step(pf, v, base, NULL);
            MOMENT_ADD(pn + i, kv, st->s0, st->q0);
            MOMENT_ADD(pn + i + MOMENT_LANES, kv, st->s1, st->q1);
            MOMENT_ADD(pn + i + 2 * MOMENT_LANES, kv, st->s2, st->q2);
            MOMENT_ADD(pn + i + 3 * MOMENT_LANES, kv, st->s3, st->q3);
            for (int64_t j = 0; j < MOMENT_STEP; j += 8) {
                __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i + j), mh), ml);
                store8(q + i + j, _mm256_fmadd_ps(d, al, be), stream);
            }
        }
    }
    moment_seg(st, pn + i, seg - i, k, pf, v, base);
    norm_seg(q + i, p + i, seg - i, f, stream, NULL, v, p);
}

static bn_moments normalize_moments(float *y, const float *x, bn_rows v, int64_t start,
                                    int64_t len, double mean, double alpha, double beta,
                                    const float *xn, double shift) {
    if (!bn_float_ok(mean) || !bn_float_ok(alpha)) {
        normalize_wide(y, x, v, start, len, mean, alpha, beta);
        return moments(xn, v, start, len, shift);
    }
    norm_consts f = norm_make(mean, alpha, beta);
    double k = block_origin(xn, v, start, shift);
    moment_state st;
    moment_init(&st);
    pf_cursor pf = pf_start(v, v.s >= BN_PREFETCH_MAX_S ? v.m : start);
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        fused_seg(&st, xn + off, y + off, x + off, seg, k, f, v.stream, &pf, v, xn);
    if (v.stream)
        _mm_sfence();
    bn_moments m = moment_result(&st, len, k, shift);
    return isnan(m.m2) ? moments_wide(xn, v, start, len, shift) : m;
}

/* Values of one row of a group that normalize_group lays its constants out for. */
#define BN_FLAT_MAX 1024

/*
 * normalize() of g consecutive channels, row by row in memory order; the same bits. When a row of
 * the group is short enough, the per-channel constants are laid out value by value once, and each
 * row is then one flat stream with no per-channel loop overhead.
 */
static void normalize_group(float *y, const float *x, bn_rows v, int64_t g, int64_t start,
                            int64_t len, const bn_coeffs *co) {
    norm_consts k[BN_GROUP_MAX];
    int ok[BN_GROUP_MAX], all_ok = 1;
    for (int64_t j = 0; j < g; j++) {
        ok[j] = bn_float_ok(co[j].mean) && bn_float_ok(co[j].a);
        all_ok &= ok[j];
        if (ok[j])
            k[j] = norm_make(co[j].mean, co[j].a, co[j].b);
        else
            normalize_wide(y + j * v.s, x + j * v.s, v, start, len, co[j].mean, co[j].a, co[j].b);
    }
    int64_t rows = (v.m + v.s - 1) / v.s, w = g * v.s;
    if (all_ok && start % v.s == 0 && len % v.s == 0 && w <= BN_FLAT_MAX) {
        float mh[BN_FLAT_MAX], ml[BN_FLAT_MAX], af[BN_FLAT_MAX], bf[BN_FLAT_MAX];
        for (int64_t j = 0; j < g; j++)
            for (int64_t i = 0; i < v.s; i++) {
                mh[j * v.s + i] = k[j].mh;
                ml[j * v.s + i] = k[j].ml;
                af[j * v.s + i] = k[j].af;
                bf[j * v.s + i] = k[j].bf;
            }
        for (int64_t r = start / v.s; r < (start + len) / v.s; r++) {
            if (r + BN_ROWS_AHEAD < rows)
                prefetch_row(x + (r + BN_ROWS_AHEAD) * v.stride, v.s, g);
            const float *p = x + r * v.stride;
            float *q = y + r * v.stride;
            int64_t i = 0;
            for (; i + 8 <= w; i += 8) {
                __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i),
                                                       _mm256_loadu_ps(mh + i)),
                                         _mm256_loadu_ps(ml + i));
                _mm256_storeu_ps(q + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(af + i),
                                                        _mm256_loadu_ps(bf + i)));
            }
            for (; i < w; i++)
                q[i] = fmaf((p[i] - mh[i]) - ml[i], af[i], bf[i]);
        }
        return;
    }
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        if (row_ + BN_ROWS_AHEAD < rows)
            prefetch_row(x + (row_ + BN_ROWS_AHEAD) * v.stride, v.s, g);
        for (int64_t j = 0; j < g; j++)
            if (ok[j])
                norm_seg(y + j * v.s + off, x + j * v.s + off, seg, k[j], v.stream, NULL, v, x);
    }
    if (v.stream)
        _mm_sfence();
}

/* Adds dy and dy*(x - mean) for one register of values into the accumulator pair (s, t). */
#define GRAD_ADD(g, p, mu, s, t)                                                      \
    do {                                                                             \
        moment_vec g_ = moment_load(g);                                              \
        s = moment_add(s, g_);                                                       \
        t = moment_fmadd(g_, moment_sub(moment_load(p), mu), t);                     \
    } while (0)

/* Running state of a block's backward sums: dy and dy*(x - mean). */
typedef struct {
    moment_vec s0, s1, s2, s3, t0, t1, t2, t3;
    double tail_s, tail_t;
} grad_state;

static inline void grad_init(grad_state *st) {
    st->s0 = st->s1 = st->s2 = st->s3 = moment_zero();
    st->t0 = st->t1 = st->t2 = st->t3 = moment_zero();
    st->tail_s = st->tail_t = 0.0;
}

/* In double: these sums cancel (dbias, dweight are small differences of large sums), so they
 * get double accuracy per term, like the mean. */
static inline __attribute__((always_inline)) void grad_seg(grad_state *st, const float *g,
                                                            const float *p, int64_t seg,
                                                            double mean, pf_cursor *pf,
                                                            bn_rows v, const float *dy,
                                                            const float *x) {
    const moment_vec mu = moment_set1(mean);
    int64_t i = 0;
    for (; i + MOMENT_STEP <= seg; i += MOMENT_STEP) {
        for (int64_t j = 0; pf && j < MOMENT_STEP; j += 16)
            pf_step(pf, v, dy, x);
        GRAD_ADD(g + i, p + i, mu, st->s0, st->t0);
        GRAD_ADD(g + i + MOMENT_LANES, p + i + MOMENT_LANES, mu, st->s1, st->t1);
        GRAD_ADD(g + i + 2 * MOMENT_LANES, p + i + 2 * MOMENT_LANES, mu, st->s2, st->t2);
        GRAD_ADD(g + i + 3 * MOMENT_LANES, p + i + 3 * MOMENT_LANES, mu, st->s3, st->t3);
    }
    if (pf)
        pf_skip(pf, v, seg % MOMENT_STEP);
    for (; i + MOMENT_LANES <= seg; i += MOMENT_LANES)
        GRAD_ADD(g + i, p + i, mu, st->s0, st->t0);
    for (; i < seg; i++) {
        st->tail_s += (double)g[i];
        st->tail_t = fma((double)g[i], (double)p[i] - mean, st->tail_t);
    }
}

static inline bn_grad_sums grad_result(const grad_state *st, double invstd) {
    bn_grad_sums r = {moment_hsum(st->s0, st->s1, st->s2, st->s3) + st->tail_s,
                      (moment_hsum(st->t0, st->t1, st->t2, st->t3) + st->tail_t) * invstd};
    return r;
}

static bn_grad_sums grad_sums(const float *dy, const float *x, bn_rows v, int64_t start,
                              int64_t len, double mean, double invstd) {
    grad_state st;
    grad_init(&st);
    pf_cursor pf = pf_start(v, start);
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        grad_seg(&st, dy + off, x + off, seg, mean, &pf, v, dy, x);
    return grad_result(&st, invstd);
}

/* grad_sums() of g consecutive channels, row by row in memory order; the same bits. */
static void grad_sums_group(const float *dy, const float *x, bn_rows v, int64_t g, int64_t start,
                            int64_t len, const double *mean, const double *invstd,
                            bn_grad_sums *out) {
    grad_state st[BN_GROUP_MAX];
    for (int64_t j = 0; j < g; j++)
        grad_init(&st[j]);
    int64_t rows = (v.m + v.s - 1) / v.s;
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        if (row_ + BN_ROWS_AHEAD < rows) {
            prefetch_row(dy + (row_ + BN_ROWS_AHEAD) * v.stride, v.s, g);
            prefetch_row(x + (row_ + BN_ROWS_AHEAD) * v.stride, v.s, g);
        }
        for (int64_t j = 0; j < g; j++)
            grad_seg(&st[j], dy + j * v.s + off, x + j * v.s + off, seg, mean[j], NULL, v, dy, x);
    }
    for (int64_t j = 0; j < g; j++)
        out[j] = grad_result(&st[j], invstd[j]);
}

/*
 * Row kernels: each channel's run of s values goes into two accumulator pairs (even and odd
 * registers of the run; moments_rows takes four on long rows), the last few values through a
 * mask, so a run costs a few vector operations and no scalar tail. The AVX2 build keeps the pairs
 * as the state's two halves (lanes 0-3, 4-7); the AVX-512 build keeps the first pair in the state
 * and adds the second to it at the end of the run.
 */
#if BN_AVX512
static inline void row_load(const double *p, moment_vec *a0, moment_vec *a1) {
    *a0 = _mm512_zextpd256_pd512(_mm256_loadu_pd(p));
    *a1 = _mm512_setzero_pd();
}

static inline void row_store(double *p, moment_vec a0, moment_vec a1) {
    __m512d v = _mm512_add_pd(a0, a1);
    _mm256_storeu_pd(p, _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1)));
}

/* The first t (0 < t < 8) values from p, zero in the other lanes. */
static inline moment_vec load_part(const float *p, int64_t t) {
    return _mm512_cvtps_pd(_mm256_maskload_ps(p, mask8(t)));
}

/* a - b in the first t lanes, zero in the others. */
static inline moment_vec sub_part(moment_vec a, moment_vec b, int64_t t) {
    return _mm512_maskz_sub_pd((__mmask8)((1u << t) - 1u), a, b);
}
#else
static inline void row_load(const double *p, moment_vec *a0, moment_vec *a1) {
    *a0 = _mm256_loadu_pd(p);
    *a1 = _mm256_setzero_pd();
}

static inline void row_store(double *p, moment_vec a0, moment_vec a1) {
    _mm256_storeu_pd(p, _mm256_add_pd(a0, a1));
}

/* The first t (0 < t < 4) values from p, zero in the other lanes. */
static inline moment_vec load_part(const float *p, int64_t t) {
    return _mm256_cvtps_pd(_mm_maskload_ps(p, _mm256_castsi256_si128(mask8(t))));
}

/* a - b in the first t lanes, zero in the others. */
static inline moment_vec sub_part(moment_vec a, moment_vec b, int64_t t) {
    __m256d m = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(mask8(t))));
    return _mm256_and_pd(_mm256_sub_pd(a, b), m);
}
#endif

/*
 * Rows of at least this many values run four accumulator pairs, then fold them into the state's
 * two: a pair's add and fma chain bounds the loop, not the core's throughput (in L1, one thread:
 * 0.078 ns per value with two pairs, 0.062 with four; training forwards 4-6% faster on rows of
 * 1024 and 3136 values). Shorter rows would pay the fold for one or two steps (4-10% slower on
 * rows of 49 values). Backward's sums gained nothing: its two inputs bound it.
 */
#define BN_ROW_FOUR_PAIRS_MIN_S (4 * MOMENT_STEP)

/* Adds a channel's run of s values at x into its state. */
static inline void moments_run(bn_row_state *st, const float *x, int64_t s, moment_vec kv) {
    moment_vec s0, s1, q0, q1;
    row_load(st->s, &s0, &s1);
    row_load(st->q, &q0, &q1);
    int64_t i = 0;
    if (s >= BN_ROW_FOUR_PAIRS_MIN_S) {
        moment_vec s2 = moment_zero(), s3 = s2, q2 = s2, q3 = s2;
        for (; i + MOMENT_STEP <= s; i += MOMENT_STEP) {
            MOMENT_ADD(x + i, kv, s0, q0);
            MOMENT_ADD(x + i + MOMENT_LANES, kv, s1, q1);
            MOMENT_ADD(x + i + 2 * MOMENT_LANES, kv, s2, q2);
            MOMENT_ADD(x + i + 3 * MOMENT_LANES, kv, s3, q3);
        }
        s0 = moment_add(s0, s2), s1 = moment_add(s1, s3);
        q0 = moment_add(q0, q2), q1 = moment_add(q1, q3);
    }
    for (; i + 2 * MOMENT_LANES <= s; i += 2 * MOMENT_LANES) {
        MOMENT_ADD(x + i, kv, s0, q0);
        MOMENT_ADD(x + i + MOMENT_LANES, kv, s1, q1);
    }
    if (i + MOMENT_LANES <= s) {
        MOMENT_ADD(x + i, kv, s0, q0);
        i += MOMENT_LANES;
    }
    if (i < s) {
        moment_vec d = sub_part(load_part(x + i, s - i), kv, s - i);
        s1 = moment_add(s1, d);
        q1 = moment_fmadd(d, d, q1);
    }
    row_store(st->s, s0, s1);
    row_store(st->q, q0, q1);
}

/* moments_run() of the same channel's runs in two rows, a and b, at once: one load and store
 * of the state for both, and each row's own accumulator pairs. */
static inline void moments_run2(bn_row_state *st, const float *a, const float *b, int64_t s,
                                moment_vec kv) {
    moment_vec s0, s1, q0, q1, s2 = moment_zero(), s3 = s2, q2 = s2, q3 = s2;
    row_load(st->s, &s0, &s1);
    row_load(st->q, &q0, &q1);
    int64_t i = 0;
    for (; i + 2 * MOMENT_LANES <= s; i += 2 * MOMENT_LANES) {
        MOMENT_ADD(a + i, kv, s0, q0);
        MOMENT_ADD(a + i + MOMENT_LANES, kv, s1, q1);
        MOMENT_ADD(b + i, kv, s2, q2);
        MOMENT_ADD(b + i + MOMENT_LANES, kv, s3, q3);
    }
    if (i + MOMENT_LANES <= s) {
        MOMENT_ADD(a + i, kv, s0, q0);
        MOMENT_ADD(b + i, kv, s2, q2);
        i += MOMENT_LANES;
    }
    if (i < s) {
        moment_vec d = sub_part(load_part(a + i, s - i), kv, s - i);
        moment_vec e = sub_part(load_part(b + i, s - i), kv, s - i);
        s1 = moment_add(s1, d), q1 = moment_fmadd(d, d, q1);
        s3 = moment_add(s3, e), q3 = moment_fmadd(e, e, q3);
    }
    row_store(st->s, moment_add(s0, s2), moment_add(s1, s3));
    row_store(st->q, moment_add(q0, q2), moment_add(q1, q3));
}

/* Rows shorter than this go two at a time: a short run spends as much on its channel's state
 * as on its values. */
#define BN_ROW_PAIRED_MAX_S 64

// x is (rows, c, s)
static void moments_rows(bn_row_state *st, const float *x, int64_t rows, int64_t s, int64_t c,
                         const double *k) {
    int64_t r = 0;
    for (; s < BN_ROW_PAIRED_MAX_S && r + 2 <= rows; r += 2, x += 2 * c * s)
        for (int64_t j = 0; j < c; j++)
            moments_run2(&st[j], x + j * s, x + (c + j) * s, s, moment_set1(k[j]));
    for (; r < rows; r++, x += c * s)
        for (int64_t j = 0; j < c; j++)
            moments_run(&st[j], x + j * s, s, moment_set1(k[j]));
}

/*
 * The fused training pass of bn_run_row_channels (moments_rows_fused). Its runs take one
 * accumulator pair each, value i in lane i % MOMENT_LANES, and go four at a time in lockstep:
 * four rows of a channel side by side, so that four add and fma chains overlap as moments_run's
 * four pairs do, and four streams come from memory where a channel's row at a time reads one.
 * Four pairs per run for four runs would need 32 accumulators: kept in memory between steps,
 * they made the pass 1.3x slower.
 */

/* Values per lockstep step: a float vector, the normalize's unit. */
#define LOCKSTEP 8

/* The LOCKSTEP values at p into the pair (s, q), lane by lane in order. */
#if BN_AVX512
#define LOCKSTEP_ADD(p, k, s, q) MOMENT_ADD(p, k, s, q)
#else
#define LOCKSTEP_ADD(p, k, s, q)                                                     \
    do {                                                                             \
        MOMENT_ADD(p, k, s, q);                                                      \
        MOMENT_ADD((p) + MOMENT_LANES, k, s, q);                                     \
    } while (0)
#endif

/*
 * nr <= 4 runs of s values (run j at x + off[j]) added into st[j] about k[j], in lockstep; when
 * q != NULL, the values at the same offsets of p normalized into q with constants nk (float form)
 * in the same loop, stores streamed. The normalize runs h values ahead of the statistics (h < 8
 * takes every q + off[j] + h to a 32-byte boundary); norm_seg takes each run's first h values and
 * its last few.
 */
static inline __attribute__((always_inline)) void
runs_lockstep(bn_row_state *st, float *q, const float *x, const double *k, const float *p,
              const bn_norm *nk, const int64_t *off, int nr, int64_t s, int64_t h) {
    moment_vec as[4], aq[4], kv[4], zero;
    const float *ph = q ? p + h : NULL;
    float *qh = q ? q + h : NULL;
    __m256 mh = _mm256_setzero_ps(), ml = mh, al = mh, be = mh;
    if (q) {
        mh = _mm256_set1_ps(nk->mh), ml = _mm256_set1_ps(nk->ml);
        al = _mm256_set1_ps(nk->af), be = _mm256_set1_ps(nk->bf);
    }
#pragma GCC unroll 4
    for (int j = 0; j < nr; j++) {
        row_load(st[j].s, &as[j], &zero);
        row_load(st[j].q, &aq[j], &zero);
        kv[j] = moment_set1(k[j]);
    }
    int64_t i = 0;
    for (; i + LOCKSTEP + h <= s; i += LOCKSTEP) {
#pragma GCC unroll 4
        for (int j = 0; j < nr; j++) {
            LOCKSTEP_ADD(x + off[j] + i, kv[j], as[j], aq[j]);
            if (q) {
                __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(ph + off[j] + i), mh), ml);
                _mm256_stream_ps(qh + off[j] + i, _mm256_fmadd_ps(d, al, be));
            }
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < nr; j++) {
        int64_t e = i;
        for (; e + MOMENT_LANES <= s; e += MOMENT_LANES)
            MOMENT_ADD(x + off[j] + e, kv[j], as[j], aq[j]);
        if (e < s) {
            moment_vec d = sub_part(load_part(x + off[j] + e, s - e), kv[j], s - e);
            as[j] = moment_add(as[j], d);
            aq[j] = moment_fmadd(d, d, aq[j]);
        }
        row_store(st[j].s, as[j], moment_zero());
        row_store(st[j].q, aq[j], moment_zero());
        if (!q)
            continue;
        /* norm_seg streams the rest in whole vectors: a regular store into a line the loop
         * streams to costs the line's read from memory (12-15% of the pass when every row ended
         * in one) */
        norm_consts f = {nk->mh, nk->ml, nk->af, nk->bf};
        bn_rows one = {s, s, s, 1};
        norm_seg(qh + off[j] + i, ph + off[j] + i, s - i - h, f, 1, NULL, one, p);
        norm_seg(q + off[j], p + off[j], h, f, 1, NULL, one, p);
    }
}

// x, p, q are one channel's n rows, stride apart; st and k are (ceil(n / rows))
static void moments_rows_fused(bn_row_state *st, float *q, const float *x, const double *k,
                               const float *p, const bn_row_consts *kp, int64_t n, int64_t rows,
                               int64_t s, int64_t stride) {
    int64_t nb = (n + rows - 1) / rows;
    /* values before the rows' first 32-byte-aligned output, the same in every row */
    int64_t h = head(q, 8, 1);
    /* the normalize alone, with constants the float lanes cannot use, or with rows at
     * different alignments: normalize_row */
    int apart = p && (!x || !kp->norm.fast || (stride & 7) != 0);
    for (int64_t b0 = 0; b0 < nb; b0 += 4) {
        int64_t blocks = nb - b0 < 4 ? nb - b0 : 4;
        for (int64_t i = 0; i < rows; i++) {
            /* only the last block can be short */
            int live = (int)((b0 + blocks - 1) * rows + i < n ? blocks : blocks - 1);
            int64_t off[4];
            for (int j = 0; j < live; j++) {
                off[j] = ((b0 + j) * rows + i) * stride;
                if (apart)
                    normalize_row(q + off[j], p + off[j], s, 0, s, kp, BN_ROW_STREAM);
            }
            if (!x)
                continue;
            /* each case its own loop: no test of q inside it */
            if (live == 4 && (apart || !p))
                runs_lockstep(&st[b0], NULL, x, &k[b0], NULL, NULL, off, 4, s, 0);
            else if (live == 4)
                runs_lockstep(&st[b0], q, x, &k[b0], p, &kp->norm, off, 4, s, h);
            else
                for (int j = 0; j < live; j++)
                    runs_lockstep(&st[b0 + j], apart ? NULL : q, x, &k[b0 + j], p, &kp->norm,
                                  &off[j], 1, s, h);
        }
    }
    if (p)
        _mm_sfence();
}

// dy, x are (c, s)
static void grad_sums_rows(bn_row_state *st, const float *dy, const float *x, int64_t s,
                           int64_t c, const double *mean) {
    for (int64_t j = 0; j < c; j++, dy += s, x += s) {
        const moment_vec mu = moment_set1(mean[j]);
        moment_vec s0, s1, t0, t1;
        row_load(st[j].s, &s0, &s1);
        row_load(st[j].q, &t0, &t1);
        int64_t i = 0;
        for (; i + 2 * MOMENT_LANES <= s; i += 2 * MOMENT_LANES) {
            GRAD_ADD(dy + i, x + i, mu, s0, t0);
            GRAD_ADD(dy + i + MOMENT_LANES, x + i + MOMENT_LANES, mu, s1, t1);
        }
        if (i + MOMENT_LANES <= s) {
            GRAD_ADD(dy + i, x + i, mu, s0, t0);
            i += MOMENT_LANES;
        }
        if (i < s) {
            moment_vec g = load_part(dy + i, s - i);
            s1 = moment_add(s1, g);
            t1 = moment_fmadd(g, sub_part(load_part(x + i, s - i), mu, s - i), t1);
        }
        row_store(st[j].s, s0, s1);
        row_store(st[j].q, t0, t1);
    }
}

/* The float constants of dx = (fnma((x - mh) - ml, k, dy - gm))*a. */
typedef struct {
    float mh, ml, af, gf, kf;
} dx_consts;

static inline int dx_ok(bn_coeffs co) {
    return bn_float_ok(co.mean) && bn_float_ok(co.a) && bn_float_ok(co.b) && bn_float_ok(co.k);
}

static inline dx_consts dx_make(bn_coeffs co) {
    dx_consts c;
    c.mh = (float)co.mean;
    c.ml = (float)(co.mean - (double)c.mh);
    c.af = (float)co.a;
    c.gf = (float)co.b;
    c.kf = (float)co.k;
    return c;
}

static inline __attribute__((always_inline)) void dx_seg(float *q, const float *g, const float *p,
                                                          int64_t seg, dx_consts c, int stream,
                                                          pf_cursor *pf, bn_rows v,
                                                          const float *dy, const float *x) {
    const __m256 mh = _mm256_set1_ps(c.mh), ml = _mm256_set1_ps(c.ml), av = _mm256_set1_ps(c.af);
    const __m256 gm = _mm256_set1_ps(c.gf), kv = _mm256_set1_ps(c.kf);
    int64_t i = 0, h = head(q, seg, stream);
    for (; i < h; i++)
        q[i] = fmaf(-((p[i] - c.mh) - c.ml), c.kf, g[i] - c.gf) * c.af;
    for (; i + 16 <= seg; i += 16) {
        if (pf)
            pf_step(pf, v, dy, x);
        for (int j = 0; j < 16; j += 8) {
            __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i + j), mh), ml);
            __m256 r = _mm256_fnmadd_ps(d, kv, _mm256_sub_ps(_mm256_loadu_ps(g + i + j), gm));
            store8(q + i + j, _mm256_mul_ps(r, av), stream);
        }
    }
    if (pf)
        pf_skip(pf, v, seg - (seg - h) / 16 * 16);
    for (; i + 8 <= seg; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i), mh), ml);
        __m256 r = _mm256_fnmadd_ps(d, kv, _mm256_sub_ps(_mm256_loadu_ps(g + i), gm));
        store8(q + i, _mm256_mul_ps(r, av), stream);
    }
    for (; i < seg; i++)
        q[i] = fmaf(-((p[i] - c.mh) - c.ml), c.kf, g[i] - c.gf) * c.af;
}

static void train_dx(float *dx, const float *dy, const float *x, bn_rows v, int64_t start,
                     int64_t len, double mean, double a, double gmean, double k) {
    bn_coeffs co = {mean, a, gmean, k};
    if (!dx_ok(co)) {
        train_dx_wide(dx, dy, x, v, start, len, mean, a, gmean, k);
        return;
    }
    dx_consts c = dx_make(co);
    FOR_EACH_SEGMENT(v, start, len, off, seg)
        dx_seg(dx + off, dy + off, x + off, seg, c, v.stream, NULL, v, dy, x);
    if (v.stream)
        _mm_sfence();
}

static void train_dx_row(float *dx, const float *dy, const float *x, int64_t s, int64_t col,
                         int64_t len, const bn_row_consts *c, int stream) {
    bn_rows one = {s, s, s, stream};
    for (int64_t run; len > 0; len -= run, x += run, dy += run, dx += run, col = 0, c++) {
        run = s - col < len ? s - col : len;
        const bn_dx *k = &c->dx;
        dx_consts f = {k->mh, k->ml, k->af, k->gf, k->kf};
        if (k->fast)
            dx_seg(dx, dy, x, run, f, stream, NULL, one, dy, x);
        else
            train_dx_wide(dx, dy, x, one, 0, run, k->co.mean, k->co.a, k->co.b, k->co.k);
    }
}

/* train_dx() of g consecutive channels, row by row in memory order; the same bits. */
static void train_dx_group(float *dx, const float *dy, const float *x, bn_rows v, int64_t g,
                           int64_t start, int64_t len, const bn_coeffs *co) {
    dx_consts c[BN_GROUP_MAX];
    int ok[BN_GROUP_MAX];
    for (int64_t j = 0; j < g; j++) {
        ok[j] = dx_ok(co[j]);
        if (ok[j])
            c[j] = dx_make(co[j]);
        else
            train_dx_wide(dx + j * v.s, dy + j * v.s, x + j * v.s, v, start, len, co[j].mean,
                          co[j].a, co[j].b, co[j].k);
    }
    int64_t rows = (v.m + v.s - 1) / v.s;
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        if (row_ + BN_ROWS_AHEAD < rows) {
            prefetch_row(dy + (row_ + BN_ROWS_AHEAD) * v.stride, v.s, g);
            prefetch_row(x + (row_ + BN_ROWS_AHEAD) * v.stride, v.s, g);
        }
        for (int64_t j = 0; j < g; j++)
            if (ok[j])
                dx_seg(dx + j * v.s + off, dy + j * v.s + off, x + j * v.s + off, seg, c[j],
                       v.stream, NULL, v, dy, x);
    }
    if (v.stream)
        _mm_sfence();
}

/* dx = dy*a over the block, after the sums (dx may be dy itself). */
static void scale(float *dx, const float *dy, bn_rows v, int64_t start, int64_t len, double a) {
    const float af = (float)a;
    const __m256 av = _mm256_set1_ps(af);
    FOR_EACH_SEGMENT(v, start, len, off, seg) {
        const float *g = dy + off;
        float *q = dx + off;
        int64_t i = 0, h = head(q, seg, v.stream);
        for (; i < h; i++)
            q[i] = g[i] * af;
        for (; i + 8 <= seg; i += 8)
            store8(q + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), av), v.stream);
        for (; i < seg; i++)
            q[i] = g[i] * af;
    }
    if (v.stream)
        _mm_sfence();
}

/* Sums first, then dx from the block the sums just brought into L1: a fallback to the wide
 * sums must still see the caller's dy when dx == dy. */
/* Sums first, then dx from the block the sums just brought into L1. */
static bn_grad_sums eval_backward(float *dx, const float *dy, const float *x, bn_rows v,
                                  int64_t start, int64_t len, double mean, double invstd,
                                  double a) {
    bn_grad_sums r = {0.0, 0.0};
    if (x)
        r = grad_sums(dy, x, v, start, len, mean, invstd);
    else if (dx == NULL)
        r = grad_sums_wide(dy, NULL, v, start, len, 0.0, 0.0);
    else {
        const __m256d z = _mm256_setzero_pd();
        __m256d s0 = z, s1 = z, s2 = z, s3 = z;
        double tail = 0.0;
        FOR_EACH_SEGMENT(v, start, len, off, seg) {
            const float *g = dy + off;
            int64_t i = 0;
            for (; i + 16 <= seg; i += 16) {
                __m256 u = _mm256_loadu_ps(g + i), w = _mm256_loadu_ps(g + i + 8);
                s0 = _mm256_add_pd(s0, lo4(u));
                s1 = _mm256_add_pd(s1, hi4(u));
                s2 = _mm256_add_pd(s2, lo4(w));
                s3 = _mm256_add_pd(s3, hi4(w));
            }
            for (; i + 8 <= seg; i += 8) {
                __m256 u = _mm256_loadu_ps(g + i);
                s0 = _mm256_add_pd(s0, lo4(u));
                s1 = _mm256_add_pd(s1, hi4(u));
            }
            for (; i < seg; i++)
                tail += (double)g[i];
        }
        r.dy = hsum(s0, s1, s2, s3) + tail;
    }
    if (dx) {
        if (bn_float_ok(a))
            scale(dx, dy, v, start, len, a);
        else
            eval_backward_wide(dx, dy, NULL, v, start, len, 0.0, 0.0, a);
    }
    return r;
}


/* ======== small tensors: whole operations, four channels per vector, in double ======== */

/*
 * Below the parallel threshold with few values per channel, the time goes into per-channel
 * overhead and into each channel's chain of dependent steps (sum, division, squares, division,
 * square root, division), not into the data. These kernels keep per-channel numbers in double
 * arrays, four channels per vector, so one division or square root serves four channels; and
 * they run phase by phase over up to BN_SMALL_CHUNK channels (all sums, then all statistics,
 * then all outputs), so that the chains of different channels overlap in the core instead of
 * following each other. Every value is widened to double: no range check or fallback is needed.
 *
 * Values are read four at a time along a row (rows of s >= 2: one channel's values, the last
 * chunk of a row masked), or, for rows of one value (s == 1, BatchNorm1d on (N, C)), as four
 * channels' values of a row side by side. The order of every sum is fixed by the shape.
 */

/* Channels per phase: their per-channel numbers live in arrays on the stack. */
#define BN_SMALL_CHUNK 64

static const int32_t small_mask_bits[8] = {-1, -1, -1, -1, 0, 0, 0, 0};
static const int64_t small_mask_bits64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

/* The first k of four float lanes (0 < k <= 4). */
static inline __m128i mask_ps(int64_t k) {
    return _mm_loadu_si128((const __m128i *)(small_mask_bits + 4 - k));
}

/* The first k of four double lanes (0 < k <= 4). */
static inline __m256d mask_pd(int64_t k) {
    return _mm256_castsi256_pd(_mm256_loadu_si256((const __m256i *)(small_mask_bits64 + 4 - k)));
}

/* p[0..k) widened to double, 0 in the other lanes (0 < k <= 4). */
static inline __m256d load4(const float *p, int64_t k) {
    return _mm256_cvtps_pd(k == 4 ? _mm_loadu_ps(p) : _mm_maskload_ps(p, mask_ps(k)));
}

/* Stores the first k (0 < k <= 4) lanes, narrowed to float. */
static inline void store4(float *q, __m256d r, int64_t k) {
    __m128 f = _mm256_cvtpd_ps(r);
    if (k == 4)
        _mm_storeu_ps(q, f);
    else
        _mm_maskstore_ps(q, mask_ps(k), f);
}

/* Lane j: the sum of the lanes of a[j], as ((a[j]0 + a[j]1) + (a[j]2 + a[j]3)). */
static inline __m256d fold4(const __m256d a[4]) {
    __m256d t0 = _mm256_hadd_pd(a[0], a[1]), t1 = _mm256_hadd_pd(a[2], a[3]);
    return _mm256_add_pd(_mm256_permute2f128_pd(t0, t1, 0x20),
                         _mm256_permute2f128_pd(t0, t1, 0x31));
}

/* Optional per-channel floats p[0..k) widened to double; `absent` when p is NULL. */
static inline __m256d param4(const float *p, int64_t k, double absent) {
    return p ? load4(p, k) : _mm256_set1_pd(absent);
}

/* Four channels [ch, ch + g) of a small (N,C,S) tensor, g <= 4; lanes past g are unused. */
typedef struct {
    int64_t n, s, stride, g;
} small_view;

/* The group at channel j of a chunk of cc channels, in a tensor of c channels. */
static inline small_view small_group(int64_t n, int64_t c, int64_t s, int64_t cc, int64_t j) {
    small_view w = {n, s, c * s, cc - j < 4 ? cc - j : 4};
    return w;
}

/* Lane j's channel for reading: channel j, or channel 0 for lanes past g (their results are
 * dropped), so that the reductions always run four channels side by side. */
static inline int64_t read_lane(small_view w, int64_t j) {
    return j < w.g ? j : 0;
}

/*
 * Lane j: sum over channel j of (x - shift[j]), pass 1 of the moments; 0 past g.
 * x is the group's first channel; shift, like every per-channel array here, holds 4 lanes.
 */
static inline __attribute__((always_inline)) __m256d small_shifted_sums(const float *x,
                                                                        small_view w,
                                                                        const double *shift) {
    const __m256d z = _mm256_setzero_pd();
    if (w.s == 1) {
        __m256d k = _mm256_load_pd(shift), a0 = z, a1 = z;
        int64_t r = 0;
        for (; r + 2 <= w.n; r += 2) {
            a0 = _mm256_add_pd(a0, _mm256_sub_pd(load4(x + r * w.stride, w.g), k));
            a1 = _mm256_add_pd(a1, _mm256_sub_pd(load4(x + (r + 1) * w.stride, w.g), k));
        }
        if (r < w.n)
            a0 = _mm256_add_pd(a0, _mm256_sub_pd(load4(x + r * w.stride, w.g), k));
        return _mm256_and_pd(_mm256_add_pd(a0, a1), mask_pd(w.g));
    }
    const float *p[4];
    __m256d k[4], acc[4] = {z, z, z, z};
    for (int j = 0; j < 4; j++) {
        p[j] = x + read_lane(w, j) * w.s;
        k[j] = _mm256_set1_pd(shift[read_lane(w, j)]);
    }
    for (int64_t o = 0; o < w.n * w.stride; o += w.stride) {
        int64_t i = 0;
        for (; i + 4 <= w.s; i += 4)
            for (int j = 0; j < 4; j++)
                acc[j] = _mm256_add_pd(acc[j], _mm256_sub_pd(load4(p[j] + o + i, 4), k[j]));
        if (i < w.s) {
            __m256d tail = mask_pd(w.s - i);
            for (int j = 0; j < 4; j++) {
                __m256d d = _mm256_and_pd(_mm256_sub_pd(load4(p[j] + o + i, w.s - i), k[j]), tail);
                acc[j] = _mm256_add_pd(acc[j], d);
            }
        }
    }
    return _mm256_and_pd(fold4(acc), mask_pd(w.g));
}

/* Lane j: sum over channel j of (x - mean[j])^2, pass 2 of the moments; 0 past g. */
static inline __attribute__((always_inline)) __m256d small_sq_devs(const float *x, small_view w,
                                                                   const double *mean) {
    const __m256d z = _mm256_setzero_pd();
    if (w.s == 1) {
        __m256d mu = _mm256_load_pd(mean), a0 = z, a1 = z;
        int64_t r = 0;
        for (; r + 2 <= w.n; r += 2) {
            __m256d d0 = _mm256_sub_pd(load4(x + r * w.stride, w.g), mu);
            __m256d d1 = _mm256_sub_pd(load4(x + (r + 1) * w.stride, w.g), mu);
            a0 = _mm256_fmadd_pd(d0, d0, a0);
            a1 = _mm256_fmadd_pd(d1, d1, a1);
        }
        if (r < w.n) {
            __m256d d = _mm256_sub_pd(load4(x + r * w.stride, w.g), mu);
            a0 = _mm256_fmadd_pd(d, d, a0);
        }
        return _mm256_and_pd(_mm256_add_pd(a0, a1), mask_pd(w.g));
    }
    const float *p[4];
    __m256d mu[4], acc[4] = {z, z, z, z};
    for (int j = 0; j < 4; j++) {
        p[j] = x + read_lane(w, j) * w.s;
        mu[j] = _mm256_set1_pd(mean[read_lane(w, j)]);
    }
    for (int64_t o = 0; o < w.n * w.stride; o += w.stride) {
        int64_t i = 0;
        for (; i + 4 <= w.s; i += 4)
            for (int j = 0; j < 4; j++) {
                __m256d d = _mm256_sub_pd(load4(p[j] + o + i, 4), mu[j]);
                acc[j] = _mm256_fmadd_pd(d, d, acc[j]);
            }
        if (i < w.s) {
            __m256d tail = mask_pd(w.s - i);
            for (int j = 0; j < 4; j++) {
                __m256d d = _mm256_and_pd(_mm256_sub_pd(load4(p[j] + o + i, w.s - i), mu[j]), tail);
                acc[j] = _mm256_fmadd_pd(d, d, acc[j]);
            }
        }
    }
    return _mm256_and_pd(fold4(acc), mask_pd(w.g));
}

/* Lanes j: sums over channel j of dy (into *sum_dy) and of dy*(x - mean[j]) (into *sum_dyx);
 * 0 past g. */
static inline __attribute__((always_inline)) void small_grad_sums(__m256d *sum_dy,
                                                                  __m256d *sum_dyx,
                                                                  const float *dy, const float *x,
                                                                  small_view w,
                                                                  const double *mean) {
    const __m256d z = _mm256_setzero_pd();
    if (w.s == 1) {
        __m256d mu = _mm256_load_pd(mean), s0 = z, t0 = z;
        for (int64_t r = 0; r < w.n; r++) {
            __m256d g = load4(dy + r * w.stride, w.g);
            s0 = _mm256_add_pd(s0, g);
            t0 = _mm256_fmadd_pd(g, _mm256_sub_pd(load4(x + r * w.stride, w.g), mu), t0);
        }
        *sum_dy = _mm256_and_pd(s0, mask_pd(w.g));
        *sum_dyx = _mm256_and_pd(t0, mask_pd(w.g));
        return;
    }
    int64_t off[4];
    __m256d mu[4], s[4] = {z, z, z, z}, t[4] = {z, z, z, z};
    for (int j = 0; j < 4; j++) {
        off[j] = read_lane(w, j) * w.s;
        mu[j] = _mm256_set1_pd(mean[read_lane(w, j)]);
    }
    for (int64_t o = 0; o < w.n * w.stride; o += w.stride) {
        for (int64_t i = 0; i < w.s; i += 4) {
            int64_t k = w.s - i < 4 ? w.s - i : 4;
            __m256d tail = mask_pd(k);
            for (int j = 0; j < 4; j++) {
                __m256d g = load4(dy + off[j] + o + i, k);
                __m256d d = _mm256_and_pd(_mm256_sub_pd(load4(x + off[j] + o + i, k), mu[j]), tail);
                s[j] = _mm256_add_pd(s[j], g);
                t[j] = _mm256_fmadd_pd(g, d, t[j]);
            }
        }
    }
    *sum_dy = _mm256_and_pd(fold4(s), mask_pd(w.g));
    *sum_dyx = _mm256_and_pd(fold4(t), mask_pd(w.g));
}

/* Rows of s >= 2 values of one channel, as the segment walk of the block kernels sees them. */
static inline bn_rows small_rows(small_view w) {
    bn_rows v = {w.s, w.stride, w.n * w.s, 0};
    return v;
}

/*
 * y = (x - mean)*a + b over one channel (rows of s >= 2 values); y may equal x. The float-lane
 * pass of normalize() when the constants suit float lanes (the same bits as the block kernels),
 * else every operation in double.
 */
static inline __attribute__((always_inline)) void small_normalize_channel(float *y, const float *x,
                                                                          small_view w, double mean,
                                                                          double a, double b) {
    if (bn_float_ok(mean) && bn_float_ok(a)) {
        norm_consts k = norm_make(mean, a, b);
        for (int64_t o = 0; o < w.n * w.stride; o += w.stride)
            norm_seg(y + o, x + o, w.s, k, 0, NULL, small_rows(w), x);
        return;
    }
    const __m256d mu = _mm256_set1_pd(mean), av = _mm256_set1_pd(a), bv = _mm256_set1_pd(b);
    for (int64_t o = 0; o < w.n * w.stride; o += w.stride)
        for (int64_t i = 0; i < w.s; i += 4) {
            int64_t t = w.s - i < 4 ? w.s - i : 4;
            store4(y + o + i, _mm256_fmadd_pd(_mm256_sub_pd(load4(x + o + i, t), mu), av, bv), t);
        }
}

/* y = (x - mean[j])*a[j] + b[j] over the group; y may equal x. */
static inline __attribute__((always_inline)) void small_normalize(float *y, const float *x,
                                                                  small_view w, const double *mean,
                                                                  const double *a,
                                                                  const double *b) {
    if (w.s == 1) {
        __m256d mu = _mm256_load_pd(mean), av = _mm256_load_pd(a), bv = _mm256_load_pd(b);
        for (int64_t r = 0; r < w.n; r++) {
            __m256d d = _mm256_sub_pd(load4(x + r * w.stride, w.g), mu);
            store4(y + r * w.stride, _mm256_fmadd_pd(d, av, bv), w.g);
        }
        return;
    }
    for (int64_t j = 0; j < w.g; j++)
        small_normalize_channel(y + j * w.s, x + j * w.s, w, mean[j], a[j], b[j]);
}

/* dx = ((dy - gmean) - (x - mean)*k)*a over one channel (rows of s >= 2); dx may equal dy. The
 * float-lane pass of train_dx() when the constants suit float lanes, else in double. */
static inline __attribute__((always_inline)) void small_train_dx_channel(float *dx, const float *dy,
                                                                         const float *x,
                                                                         small_view w, double mean,
                                                                         double a, double gmean,
                                                                         double k) {
    bn_coeffs co = {mean, a, gmean, k};
    if (dx_ok(co)) {
        dx_consts c = dx_make(co);
        for (int64_t o = 0; o < w.n * w.stride; o += w.stride)
            dx_seg(dx + o, dy + o, x + o, w.s, c, 0, NULL, small_rows(w), dy, x);
        return;
    }
    const __m256d mu = _mm256_set1_pd(mean), av = _mm256_set1_pd(a);
    const __m256d gm = _mm256_set1_pd(gmean), kv = _mm256_set1_pd(k);
    for (int64_t o = 0; o < w.n * w.stride; o += w.stride)
        for (int64_t i = 0; i < w.s; i += 4) {
            int64_t t = w.s - i < 4 ? w.s - i : 4;
            __m256d d = _mm256_sub_pd(load4(x + o + i, t), mu);
            __m256d g = _mm256_sub_pd(load4(dy + o + i, t), gm);
            store4(dx + o + i, _mm256_mul_pd(_mm256_fnmadd_pd(d, kv, g), av), t);
        }
}

/* dx = ((dy - gmean[j]) - (x - mean[j])*k[j])*a[j] over the group; dx may equal dy. */
static inline __attribute__((always_inline)) void small_train_dx(float *dx, const float *dy,
                                                                 const float *x, small_view w,
                                                                 const double *mean,
                                                                 const double *a,
                                                                 const double *gmean,
                                                                 const double *k) {
    if (w.s == 1) {
        __m256d mu = _mm256_load_pd(mean), av = _mm256_load_pd(a), gm = _mm256_load_pd(gmean);
        __m256d kv = _mm256_load_pd(k);
        for (int64_t o = 0; o < w.n * w.stride; o += w.stride) {
            __m256d d = _mm256_sub_pd(load4(x + o, w.g), mu);
            __m256d g = _mm256_sub_pd(load4(dy + o, w.g), gm);
            store4(dx + o, _mm256_mul_pd(_mm256_fnmadd_pd(d, kv, g), av), w.g);
        }
        return;
    }
    for (int64_t j = 0; j < w.g; j++)
        small_train_dx_channel(dx + j * w.s, dy + j * w.s, x + j * w.s, w, mean[j], a[j], gmean[j],
                               k[j]);
}

/* Stores the first g lanes of v at p + ch (nothing when p is NULL). */
static inline void put_floats(float *p, int64_t ch, __m256d v, int64_t g) {
    if (p)
        store4(p + ch, v, g);
}

static inline void put_doubles(double *p, int64_t ch, __m256d v, int64_t g) {
    if (p)
        _mm256_maskstore_pd(p + ch, _mm256_castpd_si256(mask_pd(g)), v);
}

// x, y are (N,C,S); weight, bias, running_mean, running_var, save_mean, save_invstd are (C)
static void small_forward_train(float *y, double *save_mean, double *save_invstd,
                                float *running_mean, float *running_var, const float *x,
                                const float *weight, const float *bias, int64_t n, int64_t c,
                                int64_t s, double eps, double factor) {
    const __m256d m = _mm256_set1_pd((double)(n * s)), m1 = _mm256_set1_pd((double)(n * s - 1));
    const __m256d ev = _mm256_set1_pd(eps), one = _mm256_set1_pd(1.0), zero = _mm256_setzero_pd();
    const __m256d f = _mm256_set1_pd(factor), keep = _mm256_set1_pd(1.0 - factor);
    _Alignas(32) double shift[BN_SMALL_CHUNK], mean[BN_SMALL_CHUNK];
    _Alignas(32) double a[BN_SMALL_CHUNK], b[BN_SMALL_CHUNK];
    for (int64_t c0 = 0; c0 < c; c0 += BN_SMALL_CHUNK) {
        int64_t cc = c - c0 < BN_SMALL_CHUNK ? c - c0 : BN_SMALL_CHUNK;
        const float *xc = x + c0 * s;
        /* the shift: each channel's first value, or 0 when that is not finite */
        for (int64_t j = 0; j < cc; j++)
            shift[j] = isfinite(xc[j * s]) ? (double)xc[j * s] : 0.0;
        for (int64_t j = cc; j % 4; j++)
            shift[j] = 0.0;
        for (int64_t j = 0; j < cc; j += 4) {
            __m256d sum = small_shifted_sums(xc + j * s, small_group(n, c, s, cc, j), shift + j);
            __m256d mu = _mm256_add_pd(_mm256_load_pd(shift + j), _mm256_div_pd(sum, m));
            _mm256_store_pd(mean + j, mu);
        }
        for (int64_t j = 0; j < cc; j += 4) {
            small_view w = small_group(n, c, s, cc, j);
            int64_t ch = c0 + j;
            __m256d mu = _mm256_load_pd(mean + j), m2 = small_sq_devs(xc + j * s, w, mean + j);
            __m256d var = _mm256_div_pd(m2, m);
            __m256d invstd = _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_add_pd(var, ev)));
            if (eps == 0.0) /* PyTorch's InvStd: a constant channel with eps == 0 gets invstd 0 */
                invstd = _mm256_andnot_pd(_mm256_cmp_pd(var, zero, _CMP_EQ_OQ), invstd);
            put_doubles(save_mean, ch, mu, w.g);
            put_doubles(save_invstd, ch, invstd, w.g);
            if (running_mean) {
                __m256d rm = _mm256_add_pd(_mm256_mul_pd(keep, load4(running_mean + ch, w.g)),
                                           _mm256_mul_pd(f, mu));
                __m256d rv = _mm256_add_pd(_mm256_mul_pd(keep, load4(running_var + ch, w.g)),
                                           _mm256_mul_pd(f, _mm256_div_pd(m2, m1)));
                store4(running_mean + ch, rm, w.g);
                store4(running_var + ch, rv, w.g);
            }
            __m256d gamma = param4(weight ? weight + ch : NULL, w.g, 1.0);
            _mm256_store_pd(a + j, _mm256_mul_pd(invstd, gamma));
            _mm256_store_pd(b + j, param4(bias ? bias + ch : NULL, w.g, 0.0));
        }
        for (int64_t j = 0; j < cc; j += 4)
            small_normalize(y + (c0 + j) * s, xc + j * s, small_group(n, c, s, cc, j), mean + j,
                            a + j, b + j);
    }
}

// x, y are (N,C,S); weight, bias, running_mean, running_var are (C)
static void small_forward_eval(float *y, const float *x, const float *weight, const float *bias,
                               const float *running_mean, const float *running_var, int64_t n,
                               int64_t c, int64_t s, double eps) {
    const __m256d ev = _mm256_set1_pd(eps), one = _mm256_set1_pd(1.0);
    _Alignas(32) double mean[BN_SMALL_CHUNK], a[BN_SMALL_CHUNK], b[BN_SMALL_CHUNK];
    for (int64_t c0 = 0; c0 < c; c0 += BN_SMALL_CHUNK) {
        int64_t cc = c - c0 < BN_SMALL_CHUNK ? c - c0 : BN_SMALL_CHUNK;
        for (int64_t j = 0; j < cc; j += 4) {
            int64_t ch = c0 + j, g = cc - j < 4 ? cc - j : 4;
            __m256d rv = _mm256_add_pd(load4(running_var + ch, g), ev);
            __m256d invstd = _mm256_div_pd(one, _mm256_sqrt_pd(rv));
            _mm256_store_pd(mean + j, load4(running_mean + ch, g));
            __m256d gamma = param4(weight ? weight + ch : NULL, g, 1.0);
            _mm256_store_pd(a + j, _mm256_mul_pd(invstd, gamma));
            _mm256_store_pd(b + j, param4(bias ? bias + ch : NULL, g, 0.0));
        }
        for (int64_t j = 0; j < cc; j += 4)
            small_normalize(y + (c0 + j) * s, x + (c0 + j) * s, small_group(n, c, s, cc, j),
                            mean + j, a + j, b + j);
    }
}

// dx, dy, x are (N,C,S); dweight, dbias, weight, save_mean, save_invstd are (C)
static void small_backward_train(float *dx, float *dweight, float *dbias, const float *dy,
                                 const float *x, const float *weight, const double *save_mean,
                                 const double *save_invstd, int64_t n, int64_t c, int64_t s) {
    const __m256d m = _mm256_set1_pd((double)(n * s));
    _Alignas(32) double mean[BN_SMALL_CHUNK], a[BN_SMALL_CHUNK], gmean[BN_SMALL_CHUNK];
    _Alignas(32) double k[BN_SMALL_CHUNK];
    for (int64_t c0 = 0; c0 < c; c0 += BN_SMALL_CHUNK) {
        int64_t cc = c - c0 < BN_SMALL_CHUNK ? c - c0 : BN_SMALL_CHUNK;
        for (int64_t j = 0; j < cc; j += 4) {
            small_view w = small_group(n, c, s, cc, j);
            int64_t ch = c0 + j;
            __m256i lanes = _mm256_castpd_si256(mask_pd(w.g));
            __m256d invstd = _mm256_maskload_pd(save_invstd + ch, lanes), sdy, sdyx;
            _mm256_store_pd(mean + j, _mm256_maskload_pd(save_mean + ch, lanes));
            small_grad_sums(&sdy, &sdyx, dy + ch * s, x + ch * s, w, mean + j);
            sdyx = _mm256_mul_pd(sdyx, invstd);
            put_floats(dbias, ch, sdy, w.g);
            put_floats(dweight, ch, sdyx, w.g);
            __m256d gamma = param4(weight ? weight + ch : NULL, w.g, 1.0);
            _mm256_store_pd(a + j, _mm256_mul_pd(gamma, invstd));
            _mm256_store_pd(gmean + j, _mm256_div_pd(sdy, m));
            _mm256_store_pd(k + j, _mm256_div_pd(_mm256_mul_pd(sdyx, invstd), m));
        }
        for (int64_t j = 0; dx && j < cc; j += 4)
            small_train_dx(dx + (c0 + j) * s, dy + (c0 + j) * s, x + (c0 + j) * s,
                           small_group(n, c, s, cc, j), mean + j, a + j, gmean + j, k + j);
    }
}

const bn_kernels BN_KERNELS_TABLE = {
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
    .moments_rows_fused = moments_rows_fused,
    .small_forward_train = small_forward_train,
    .small_forward_eval = small_forward_eval,
    .small_backward_train = small_backward_train,
};
