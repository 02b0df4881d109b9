/*
 * bench_flush: see flush.h. clflushopt evicts a line from every cache of the coherence domain
 * (writing it back when dirty) and, unlike clflush, is not ordered against other flushes, so a
 * long run of them streams; the mfence at the end waits for all of them.
 */
#include "flush.h"

#include <cpuid.h>
#include <immintrin.h>
#include <stddef.h>

#define LINE 64

static int has_clflushopt(void) {
    static int known = -1;
    if (known < 0) {
        unsigned a, b, c, d;
        /* CPUID leaf 7, sub-leaf 0: EBX bit 23 is CLFLUSHOPT */
        known = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 23)) != 0;
    }
    return known;
}

__attribute__((target("clflushopt"))) static void flush_opt(const char *first, const char *end) {
    for (const char *p = first; p < end; p += LINE) {
        _mm_clflushopt((void *)p);
    }
}

static void flush_plain(const char *first, const char *end) {
    for (const char *p = first; p < end; p += LINE) {
        _mm_clflush(p);
    }
}

// ptr is (bytes)
void bench_flush(const void *ptr, int64_t bytes) {
    if (ptr == NULL || bytes <= 0) {
        return;
    }
    const char *first = (const char *)((uintptr_t)ptr & ~(uintptr_t)(LINE - 1));
    const char *end = (const char *)ptr + bytes;
    if (has_clflushopt()) {
        flush_opt(first, end);
    } else {
        flush_plain(first, end);
    }
    _mm_mfence();
}

const char *bench_flush_instruction(void) {
    return has_clflushopt() ? "clflushopt" : "clflush";
}
