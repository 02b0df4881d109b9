/*
 * native_bench's correctness check: a fast wrong kernel would otherwise win the table. Before
 * anything is timed, each implementation runs each asked (layout, dtype, op) once on two small
 * shapes (a serial one and one above the 65536 values where the kernels go parallel), and its
 * outputs are compared with a double-precision reference computed from the same inputs.
 */
#ifndef BENCH_CHECK_H
#define BENCH_CHECK_H

#include "bench_common.h"

enum { IMPL_OURS, IMPL_PLAIN, IMPL_COUNT };
extern const char *const impl_names[IMPL_COUNT];

/* passed[impl][layout][dtype][op] = 1 when the check passed (or did not apply: the impl lacks
 * the call or refuses it, which the timing then reports); 0 when it computed a wrong result.
 * plain-c is checked only when have_plain (the CPU runs its x86-64-v3 code). Prints a "# check"
 * line per combination; returns the number of failures. */
int check_all(const bench_plan *plan, int threads, int have_plain,
              int passed[IMPL_COUNT][BENCH_NUM_LAYOUTS][BENCH_NUM_DTYPES][BENCH_NUM_OPS]);

#endif /* BENCH_CHECK_H */
