/*
 * plain-c (plain_bn.h): two passes, float partial sums per row (NCHW) or per block of positions
 * (NHWC) added in double, the variance from deviations from the mean.
 */
#include "plain_bn.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

#define PARALLEL_MIN 65536 /* values; smaller tensors run on the calling thread */
#define BLOCK 16           /* NHWC positions summed in float before the double sums */

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE float epilogue(float v, float z, int act) {
    if (act == 2)
        v += z;
    return act != 0 && v < 0.0f ? 0.0f : v; /* ReLU; NaN stays NaN, as in PyTorch */
}

/* dy masked by the fused forward's output y > 0 (ReLU's gradient, 0 at 0). */
ALWAYS_INLINE float grad(float dy, float y, int act) {
    return act != 0 && !(y > 0.0f) ? 0.0f : dy;
}

/* save_mean, save_invstd and the running statistics of channel ch from its mean and m2 (the sum
 * of squared deviations from the mean). */
static void finish_channel(const plain_bn *p, int64_t ch, double mean, double m2) {
    const double m = (double)(p->n * p->s);
    p->save_mean[ch] = mean;
    p->save_invstd[ch] = 1.0 / sqrt(m2 / m + p->eps);
    p->running_mean[ch] = (float)((1 - p->momentum) * p->running_mean[ch] + p->momentum * mean);
    p->running_var[ch] =
        (float)((1 - p->momentum) * p->running_var[ch] + p->momentum * m2 / (m - 1));
}

static int team(const plain_bn *p) {
    return p->n * p->c * p->s >= PARALLEL_MIN ? p->threads : 1;
}

/* ---- NCHW: a thread per channel; a channel's N rows of S values are contiguous ---- */

// out, row, z are (S)
ALWAYS_INLINE void normalize_row(float *restrict out, const float *restrict row,
                                 const float *restrict z, int64_t s, float mean, float a, float b,
                                 int act) {
#pragma omp simd
    for (int64_t j = 0; j < s; j++)
        out[j] = epilogue((row[j] - mean) * a + b, act == 2 ? z[j] : 0.0f, act);
}

/* Channel ch of a training forward. */
// y, x, z are (N,C,S)
ALWAYS_INLINE void nchw_train_channel(const plain_bn *p, int64_t ch, int act) {
    const int64_t n = p->n, c = p->c, s = p->s, m = n * s;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = p->x + (i * c + ch) * s;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (int64_t j = 0; j < s; j++)
            part += row[j];
        sum += part;
    }
    const double mean = sum / (double)m;
    const float fm = (float)mean;
    double m2 = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = p->x + (i * c + ch) * s;
        float part = 0.0f;
#pragma omp simd reduction(+ : part)
        for (int64_t j = 0; j < s; j++)
            part += (row[j] - fm) * (row[j] - fm);
        m2 += part;
    }
    /* deviations were taken from the float mean: move them to the mean */
    m2 -= (double)m * (mean - fm) * (mean - fm);
    finish_channel(p, ch, mean, m2);
    const float a = (float)(p->save_invstd[ch] * p->weight[ch]), b = p->bias[ch];
    for (int64_t i = 0; i < n; i++) {
        const int64_t off = (i * c + ch) * s;
        normalize_row(p->y + off, p->x + off, p->z + (act == 2 ? off : 0), s, fm, a, b, act);
    }
}

/* Row (i, ch) of an eval forward: no statistics to keep in cache, so the rows go in memory
 * order, where the hardware prefetchers follow them from one to the next. */
// y, x, z are (N,C,S)
ALWAYS_INLINE void nchw_eval_row(const plain_bn *p, int64_t i, int64_t ch, int act) {
    const float a = p->weight[ch] / sqrtf(p->running_var[ch] + (float)p->eps);
    const int64_t off = (i * p->c + ch) * p->s;
    normalize_row(p->y + off, p->x + off, p->z + (act == 2 ? off : 0), p->s, p->running_mean[ch],
                  a, p->bias[ch], act);
}

/* Channel ch of a backward. */
// dx, dz, dy, y, x are (N,C,S)
ALWAYS_INLINE void nchw_backward_channel(const plain_bn *p, int64_t ch, int act) {
    const int64_t n = p->n, c = p->c, s = p->s, m = n * s;
    const float fm = (float)p->save_mean[ch];
    const double invstd = p->save_invstd[ch];
    double sum_g = 0.0, sum_gx = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t off = (i * c + ch) * s;
        const float *dy = p->dy + off, *x = p->x + off, *y = p->y + off;
        float pg = 0.0f, pgx = 0.0f;
#pragma omp simd reduction(+ : pg, pgx)
        for (int64_t j = 0; j < s; j++) {
            const float g = grad(dy[j], act ? y[j] : 0.0f, act);
            pg += g;
            pgx += g * (x[j] - fm);
        }
        sum_g += pg;
        sum_gx += pgx;
    }
    /* sum_gx was taken around the float mean: move it to the mean */
    sum_gx -= sum_g * (p->save_mean[ch] - fm);
    p->dbias[ch] = (float)sum_g;
    p->dweight[ch] = (float)(sum_gx * invstd);
    const float a = (float)(invstd * p->weight[ch]), gm = (float)(sum_g / (double)m);
    const float k = (float)(sum_gx * invstd * invstd / (double)m);
    for (int64_t i = 0; i < n; i++) {
        const int64_t off = (i * c + ch) * s;
        const float *dy = p->dy + off, *x = p->x + off, *y = p->y + off;
        float *dx = p->dx + off, *dz = p->dz + (act == 2 ? off : 0);
#pragma omp simd
        for (int64_t j = 0; j < s; j++) {
            const float g = grad(dy[j], act ? y[j] : 0.0f, act);
            dx[j] = (g - gm - (x[j] - fm) * k) * a;
            if (act == 2)
                dz[j] = g;
        }
    }
}

/* ---- NHWC: threads take blocks of positions; a position's C values are contiguous ---- */

/* sums[ch] = sum over positions of x - shift[ch] (squared when `square`): per thread, BLOCK
 * positions in float lanes, then added to the thread's doubles; the threads' doubles in order. */
// sums, shift are (C); x is (N,S,C)
static void nhwc_sums(const plain_bn *p, double *restrict sums, const float *restrict shift,
                      int square) {
    const int64_t c = p->c, positions = p->n * p->s, blocks = (positions + BLOCK - 1) / BLOCK;
    const int nt = team(p);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        double *restrict acc = p->scratch + (int64_t)omp_get_thread_num() * c;
        float part[c];
        for (int64_t ch = 0; ch < c; ch++)
            acc[ch] = 0.0;
#pragma omp for schedule(static)
        for (int64_t blk = 0; blk < blocks; blk++) {
            for (int64_t ch = 0; ch < c; ch++)
                part[ch] = 0.0f;
            const int64_t end = blk * BLOCK + BLOCK < positions ? blk * BLOCK + BLOCK : positions;
            for (int64_t q = blk * BLOCK; q < end; q++) {
                const float *row = p->x + q * c;
                if (square) {
#pragma omp simd
                    for (int64_t ch = 0; ch < c; ch++)
                        part[ch] += (row[ch] - shift[ch]) * (row[ch] - shift[ch]);
                } else {
#pragma omp simd
                    for (int64_t ch = 0; ch < c; ch++)
                        part[ch] += row[ch];
                }
            }
            for (int64_t ch = 0; ch < c; ch++)
                acc[ch] += part[ch];
        }
    }
    for (int64_t ch = 0; ch < c; ch++) {
        double total = 0.0;
        for (int t = 0; t < nt; t++)
            total += p->scratch[t * c + ch];
        sums[ch] = total;
    }
}

/* Position q of a normalize. */
// y, x, z are (N,S,C); mean, a, b are (C)
ALWAYS_INLINE void nhwc_normalize_position(const plain_bn *p, int64_t q,
                                           const float *restrict mean, const float *restrict a,
                                           const float *restrict b, int act) {
    const int64_t c = p->c;
    const float *restrict x = p->x + q * c, *restrict z = p->z + (act == 2 ? q * c : 0);
    float *restrict y = p->y + q * c;
#pragma omp simd
    for (int64_t ch = 0; ch < c; ch++)
        y[ch] = epilogue((x[ch] - mean[ch]) * a[ch] + b[ch], act == 2 ? z[ch] : 0.0f, act);
}

/* The backward sums of positions [first, end) into the thread's doubles: BLOCK positions at a
 * time in float, as nhwc_sums. */
// dy, y, x are (N,S,C); acc_g, acc_gx, mean are (C)
ALWAYS_INLINE void nhwc_grad_sums(const plain_bn *p, int64_t first, int64_t end,
                                  double *restrict acc_g, double *restrict acc_gx,
                                  const float *restrict mean, int act) {
    const int64_t c = p->c;
    float part_g[c], part_gx[c];
    for (int64_t ch = 0; ch < c; ch++)
        part_g[ch] = part_gx[ch] = 0.0f;
    for (int64_t q = first; q < end; q++) {
        const float *dy = p->dy + q * c, *x = p->x + q * c, *y = p->y + q * c;
#pragma omp simd
        for (int64_t ch = 0; ch < c; ch++) {
            const float g = grad(dy[ch], act ? y[ch] : 0.0f, act);
            part_g[ch] += g;
            part_gx[ch] += g * (x[ch] - mean[ch]);
        }
    }
    for (int64_t ch = 0; ch < c; ch++) {
        acc_g[ch] += part_g[ch];
        acc_gx[ch] += part_gx[ch];
    }
}

/* Position q of a backward's dx (and dz). */
// dx, dz, dy, y, x are (N,S,C); mean, gm, k, a are (C)
ALWAYS_INLINE void nhwc_dx_position(const plain_bn *p, int64_t q, const float *restrict mean,
                                    const float *restrict gm, const float *restrict k,
                                    const float *restrict a, int act) {
    const int64_t c = p->c;
    const float *restrict dy = p->dy + q * c, *restrict x = p->x + q * c,
                          *restrict y = p->y + q * c;
    float *restrict dx = p->dx + q * c, *restrict dz = p->dz + (act == 2 ? q * c : 0);
#pragma omp simd
    for (int64_t ch = 0; ch < c; ch++) {
        const float g = grad(dy[ch], act ? y[ch] : 0.0f, act);
        dx[ch] = (g - gm[ch] - (x[ch] - mean[ch]) * k[ch]) * a[ch];
        if (act == 2)
            dz[ch] = g;
    }
}

/*
 * The loops that OpenMP outlines, one instance per epilogue: GCC outlines a parallel region
 * before it inlines, so a region inside an inline function taking `act` would test it per
 * element. Here each region calls the inline bodies with act as a literal.
 */
#define DEFINE_REGIONS(ACT)                                                                    \
    static void nchw_train_##ACT(const plain_bn *p) {                                          \
        _Pragma("omp parallel for num_threads(p->threads) if (team(p) > 1) schedule(static)")  \
        for (int64_t ch = 0; ch < p->c; ch++)                                                  \
            nchw_train_channel(p, ch, ACT);                                                    \
    }                                                                                          \
    static void nchw_eval_##ACT(const plain_bn *p) {                                           \
        _Pragma("omp parallel for collapse(2) num_threads(p->threads) if (team(p) > 1)")       \
        for (int64_t i = 0; i < p->n; i++)                                                     \
            for (int64_t ch = 0; ch < p->c; ch++)                                              \
                nchw_eval_row(p, i, ch, ACT);                                                  \
    }                                                                                          \
    static void nchw_backward_##ACT(const plain_bn *p) {                                       \
        _Pragma("omp parallel for num_threads(p->threads) if (team(p) > 1) schedule(static)")  \
        for (int64_t ch = 0; ch < p->c; ch++)                                                  \
            nchw_backward_channel(p, ch, ACT);                                                 \
    }                                                                                          \
    static void nhwc_normalize_##ACT(const plain_bn *p, const float *mean, const float *a,     \
                                     const float *b) {                                         \
        const int nt = team(p);                                                                \
        _Pragma("omp parallel for num_threads(nt) if (nt > 1) schedule(static)")               \
        for (int64_t q = 0; q < p->n * p->s; q++)                                              \
            nhwc_normalize_position(p, q, mean, a, b, ACT);                                    \
    }                                                                                          \
    static void nhwc_grad_sums_##ACT(const plain_bn *p, const float *mean, int nt) {           \
        const int64_t positions = p->n * p->s, blocks = (positions + BLOCK - 1) / BLOCK;       \
        _Pragma("omp parallel num_threads(nt) if (nt > 1)")                                    \
        {                                                                                      \
            const int64_t t = omp_get_thread_num();                                            \
            double *acc_g = p->scratch + t * p->c, *acc_gx = p->scratch + (nt + t) * p->c;     \
            for (int64_t ch = 0; ch < p->c; ch++)                                              \
                acc_g[ch] = acc_gx[ch] = 0.0;                                                  \
            _Pragma("omp for schedule(static)")                                                \
            for (int64_t blk = 0; blk < blocks; blk++)                                         \
                nhwc_grad_sums(p, blk * BLOCK,                                                 \
                               blk * BLOCK + BLOCK < positions ? blk * BLOCK + BLOCK : positions, \
                               acc_g, acc_gx, mean, ACT);                                      \
        }                                                                                      \
    }                                                                                          \
    static void nhwc_dx_##ACT(const plain_bn *p, const float *mean, const float *gm,           \
                              const float *k, const float *a) {                                \
        const int nt = team(p);                                                                \
        _Pragma("omp parallel for num_threads(nt) if (nt > 1) schedule(static)")               \
        for (int64_t q = 0; q < p->n * p->s; q++)                                              \
            nhwc_dx_position(p, q, mean, gm, k, a, ACT);                                       \
    }

DEFINE_REGIONS(0)
DEFINE_REGIONS(1)
DEFINE_REGIONS(2)

#define BY_ACT(f, act, ...)                                                                    \
    switch (act) {                                                                             \
    case 0: f##_0(__VA_ARGS__); break;                                                         \
    case 1: f##_1(__VA_ARGS__); break;                                                         \
    default: f##_2(__VA_ARGS__); break;                                                        \
    }

// y, x, z are (N,S,C)
static void nhwc_train(const plain_bn *p, int act) {
    const int64_t c = p->c;
    const double m = (double)(p->n * p->s);
    double *sums = p->scratch + 2 * (int64_t)p->threads * c; /* the last third of the scratch */
    float fm[c], a[c];
    nhwc_sums(p, sums, NULL, 0);
    for (int64_t ch = 0; ch < c; ch++)
        fm[ch] = (float)(sums[ch] / m);
    double mean[c];
    for (int64_t ch = 0; ch < c; ch++)
        mean[ch] = sums[ch] / m;
    nhwc_sums(p, sums, fm, 1);
    for (int64_t ch = 0; ch < c; ch++) {
        const double m2 = sums[ch] - m * (mean[ch] - fm[ch]) * (mean[ch] - fm[ch]);
        finish_channel(p, ch, mean[ch], m2);
        a[ch] = (float)(p->save_invstd[ch] * p->weight[ch]);
    }
    BY_ACT(nhwc_normalize, act, p, fm, a, p->bias)
}

// y, x, z are (N,S,C)
static void nhwc_eval(const plain_bn *p, int act) {
    const int64_t c = p->c;
    float a[c];
    for (int64_t ch = 0; ch < c; ch++)
        a[ch] = p->weight[ch] / sqrtf(p->running_var[ch] + (float)p->eps);
    BY_ACT(nhwc_normalize, act, p, p->running_mean, a, p->bias)
}

// dx, dz, dy, y, x are (N,S,C)
static void nhwc_backward(const plain_bn *p, int act) {
    const int64_t c = p->c, positions = p->n * p->s;
    const int nt = team(p);
    float fm[c], a[c], gm[c], k[c];
    for (int64_t ch = 0; ch < c; ch++)
        fm[ch] = (float)p->save_mean[ch];
    /* per thread: sum g in the first third of the scratch, sum g*(x - mean) in the second */
    BY_ACT(nhwc_grad_sums, act, p, fm, nt)
    for (int64_t ch = 0; ch < c; ch++) {
        double sum_g = 0.0, sum_gx = 0.0;
        for (int t = 0; t < nt; t++) {
            sum_g += p->scratch[t * c + ch];
            sum_gx += p->scratch[(nt + t) * c + ch];
        }
        sum_gx -= sum_g * (p->save_mean[ch] - fm[ch]);
        const double invstd = p->save_invstd[ch];
        p->dbias[ch] = (float)sum_g;
        p->dweight[ch] = (float)(sum_gx * invstd);
        a[ch] = (float)(invstd * p->weight[ch]);
        gm[ch] = (float)(sum_g / (double)positions);
        k[ch] = (float)(sum_gx * invstd * invstd / (double)positions);
    }
    BY_ACT(nhwc_dx, act, p, fm, gm, k, a)
}

/* ---- entry points ---- */

void plain_forward_train(const plain_bn *p, int act) {
    if (p->layout == 0) {
        BY_ACT(nchw_train, act, p)
    } else {
        nhwc_train(p, act);
    }
}

void plain_forward_eval(const plain_bn *p, int act) {
    if (p->layout == 0) {
        BY_ACT(nchw_eval, act, p)
    } else {
        nhwc_eval(p, act);
    }
}

void plain_backward(const plain_bn *p, int act) {
    if (p->layout == 0) {
        BY_ACT(nchw_backward, act, p)
    } else {
        nhwc_backward(p, act);
    }
}
