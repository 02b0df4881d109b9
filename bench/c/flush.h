/*
 * The cold-cache mode's flush: evicts a buffer from every cache level of every core. Built into
 * the C harnesses and, as libbench_flush.so, called by the Java runner (through FFM) and the
 * PyTorch peer (through ctypes), so that every peer's cold mode is the same operation.
 */
#ifndef BENCH_FLUSH_H
#define BENCH_FLUSH_H

#include <stdint.h>

#if defined(__GNUC__)
#define BENCH_FLUSH_API __attribute__((visibility("default")))
#else
#define BENCH_FLUSH_API
#endif

/* clflushopt (clflush where the CPU lacks it) over every 64-byte line of [ptr, ptr + bytes),
 * then a full fence, so that the flush is complete before the caller's next load or store. */
BENCH_FLUSH_API void bench_flush(const void *ptr, int64_t bytes);

/* "clflushopt" or "clflush": the instruction bench_flush uses on this CPU. */
BENCH_FLUSH_API const char *bench_flush_instruction(void);

#endif /* BENCH_FLUSH_H */
