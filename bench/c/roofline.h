/*
 * The per-shape rooflines: each op's least memory traffic, moved the plainest way over buffers
 * of the op's own size, so that `vs roof` = roofline time / op time says how close an op comes to
 * what memory (or the cache, when the tensors stay in it) allows for that shape. Integer vector
 * adds (no floating-point assists on 16-bit payloads), the widest vectors the CPU has.
 *
 *   read    x summed, nothing written          1 tensor in, 0 out
 *   copy    y = x                              1 in, 1 out   forward_train, forward_eval, _relu
 *   add     dx = dy + x                        2 in, 1 out   backward, forward_train_add_relu
 *   add3    dx = dy + y + x                    3 in, 1 out   backward_relu
 *   add3x2  dx = dz = dy + y + x               3 in, 2 out   backward_add_relu
 */
#ifndef BENCH_ROOFLINE_H
#define BENCH_ROOFLINE_H

#include <stdint.h>

enum { ROOF_READ, ROOF_COPY, ROOF_ADD, ROOF_ADD3, ROOF_ADD3X2, ROOF_COUNT };
extern const char *const roof_names[ROOF_COUNT];
extern const int roof_reads[ROOF_COUNT], roof_writes[ROOF_COUNT];

/* The roofline of a suite op (bench_common.h's OP_*). */
int roof_of_op(int op);

/* One roofline call: in[0..reads) and out[0..writes) are `bytes` long and 64-byte aligned. */
typedef struct {
    int roof;
    int stream;   /* 1: non-temporal stores (the output bypasses the caches) */
    int threads;  /* split into contiguous ranges over this many OpenMP threads */
    int parallel; /* 0: on the calling thread, as the library runs small tensors */
    const void *in[3];
    void *out[2];
    int64_t bytes;
    volatile uint32_t sink; /* the read's result, so that the compiler keeps the loads */
} roof_call;

void roof_run(void *call); /* roof_call *; the signature of bench_timed.fn */

/* "avx512", "avx2" or "sse2": the vectors the rooflines use on this CPU. */
const char *roof_isa(void);

#endif /* BENCH_ROOFLINE_H */
