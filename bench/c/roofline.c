/*
 * The per-shape rooflines (roofline.h). One generic loop over 64-byte vectors, instantiated per
 * ISA with GCC's vector extensions; the widest the CPU has is picked at run time.
 */
#include "roofline.h"

#include <immintrin.h>
#include <omp.h>
#include <stddef.h>

const char *const roof_names[ROOF_COUNT] = {"read", "copy", "add", "add3", "add3x2"};
const int roof_reads[ROOF_COUNT] = {1, 1, 2, 3, 3};
const int roof_writes[ROOF_COUNT] = {0, 1, 1, 1, 2};

int roof_of_op(int op) {
    /* bench_common.h's order: train, eval, backward, train_relu, train_add_relu, backward_relu,
     * backward_add_relu */
    static const int roof[] = {ROOF_COPY, ROOF_COPY, ROOF_ADD, ROOF_COPY,
                               ROOF_ADD,  ROOF_ADD3, ROOF_ADD3X2};
    return roof[op];
}

typedef uint32_t vec __attribute__((vector_size(64), aligned(64)));

/*
 * One ISA's loop over vectors [first, last) of in[r] and out[w], with (roof, stream) as constants
 * in each case so that every loop is specialised; STREAM_STORE(ptr, v) is the ISA's
 * non-temporal store of one 64-byte vector. GCC lowers the vector type to the ISA's registers.
 */
#define DEFINE_RANGE(NAME, TARGET, STREAM_STORE)                                                \
    TARGET static inline __attribute__((always_inline)) uint32_t NAME##_loop(                  \
        int reads, int writes, int stream, const vec *const *in, vec *const *out,              \
        int64_t first, int64_t last) {                                                          \
        vec acc = {0};                                                                          \
        for (int64_t i = first; i < last; i++) {                                                \
            vec v = in[0][i];                                                                   \
            if (reads > 1)                                                                      \
                v += in[1][i];                                                                  \
            if (reads > 2)                                                                      \
                v += in[2][i];                                                                  \
            if (writes == 0)                                                                    \
                acc += v;                                                                       \
            for (int w = 0; w < writes; w++) {                                                  \
                if (stream)                                                                     \
                    STREAM_STORE(&out[w][i], v);                                                \
                else                                                                            \
                    out[w][i] = v;                                                              \
            }                                                                                   \
        }                                                                                       \
        if (stream)                                                                             \
            _mm_sfence();                                                                       \
        uint32_t sum = 0;                                                                       \
        for (int k = 0; k < 16; k++)                                                            \
            sum += acc[k];                                                                      \
        return sum;                                                                             \
    }                                                                                           \
    TARGET static uint32_t NAME(int roof, int stream, const vec *const *in, vec *const *out,   \
                                int64_t first, int64_t last) {                                  \
        switch (roof * 2 + stream) {                                                            \
        case ROOF_READ * 2:                                                                     \
        case ROOF_READ * 2 + 1: return NAME##_loop(1, 0, 0, in, out, first, last);              \
        case ROOF_COPY * 2: return NAME##_loop(1, 1, 0, in, out, first, last);                  \
        case ROOF_COPY * 2 + 1: return NAME##_loop(1, 1, 1, in, out, first, last);              \
        case ROOF_ADD * 2: return NAME##_loop(2, 1, 0, in, out, first, last);                   \
        case ROOF_ADD * 2 + 1: return NAME##_loop(2, 1, 1, in, out, first, last);               \
        case ROOF_ADD3 * 2: return NAME##_loop(3, 1, 0, in, out, first, last);                  \
        case ROOF_ADD3 * 2 + 1: return NAME##_loop(3, 1, 1, in, out, first, last);              \
        case ROOF_ADD3X2 * 2: return NAME##_loop(3, 2, 0, in, out, first, last);                \
        default: return NAME##_loop(3, 2, 1, in, out, first, last);                             \
        }                                                                                       \
    }

#define STREAM_512(p, v) _mm512_stream_si512((void *)(p), (__m512i)(v))
#define STREAM_256(p, v)                                                                        \
    do {                                                                                        \
        __m256i lo_, hi_;                                                                       \
        __builtin_memcpy(&lo_, &(v), 32);                                                       \
        __builtin_memcpy(&hi_, (const char *)&(v) + 32, 32);                                    \
        _mm256_stream_si256((__m256i *)(p), lo_);                                               \
        _mm256_stream_si256((__m256i *)(p) + 1, hi_);                                           \
    } while (0)
#define STREAM_128(p, v)                                                                        \
    do {                                                                                        \
        __m128i q_[4];                                                                          \
        __builtin_memcpy(q_, &(v), 64);                                                         \
        for (int k_ = 0; k_ < 4; k_++)                                                          \
            _mm_stream_si128((__m128i *)(p) + k_, q_[k_]);                                      \
    } while (0)

DEFINE_RANGE(range_avx512, __attribute__((target("avx512f"))), STREAM_512)
DEFINE_RANGE(range_avx2, __attribute__((target("avx2"))), STREAM_256)
DEFINE_RANGE(range_sse2, , STREAM_128)

typedef uint32_t (*range_fn)(int, int, const vec *const *, vec *const *, int64_t, int64_t);

static range_fn pick(void) {
    return __builtin_cpu_supports("avx512f") ? range_avx512
           : __builtin_cpu_supports("avx2")  ? range_avx2
                                             : range_sse2;
}

const char *roof_isa(void) {
    return __builtin_cpu_supports("avx512f") ? "avx512"
           : __builtin_cpu_supports("avx2")  ? "avx2"
                                             : "sse2";
}

void roof_run(void *arg) {
    roof_call *c = arg;
    static range_fn range;
    if (range == NULL)
        range = pick();
    const vec *in[3] = {c->in[0], c->in[1], c->in[2]};
    vec *out[2] = {c->out[0], c->out[1]};
    const int64_t vectors = c->bytes / (int64_t)sizeof(vec);
    uint32_t sum = 0;
    if (!c->parallel) {
        sum = range(c->roof, c->stream, in, out, 0, vectors);
    } else {
#pragma omp parallel num_threads(c->threads) reduction(+ : sum)
        {
            const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
            sum += range(c->roof, c->stream, in, out, vectors * t / nt, vectors * (t + 1) / nt);
        }
    }
    /* the tail of fewer than 64 bytes, a byte at a time */
    const int reads = roof_reads[c->roof], writes = roof_writes[c->roof];
    for (int64_t i = vectors * (int64_t)sizeof(vec); i < c->bytes; i++) {
        uint8_t v = 0;
        for (int r = 0; r < reads; r++)
            v = (uint8_t)(v + ((const uint8_t *)c->in[r])[i]);
        for (int w = 0; w < writes; w++)
            ((uint8_t *)c->out[w])[i] = v;
        sum += v;
    }
    c->sink = sum;
}
