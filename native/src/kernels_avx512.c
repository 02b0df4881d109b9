/*
 * The AVX2 kernels rebuilt for CPUs with AVX-512F: kernels_avx2.c compiled again, with its
 * reductions over 8 double lanes (-mavx512f; see BN_AVX512 there). Everything else is the same
 * code. kernels.c picks this table at run time when the CPU has AVX-512F, AVX2 and FMA.
 */
#define BN_AVX512 1
#include "kernels_avx2.c"
