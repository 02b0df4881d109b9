/*
 * Shared declarations of the libFuzzer harness: one fuzzed call (Call), its buffers, and the
 * parts that handle it:
 *   fuzz_batchnorm.c  the entry point and the decoding of the input into calls;
 *   fuzz_buffers.c    exact-size buffers with canaries, their data, snapshots and comparisons;
 *   fuzz_checks.c     which pointers a call takes, the statuses it may return, the call itself,
 *                     and what success must have written and left alone;
 *   fuzz_reference.c  element types, layouts and the double reference of the whole operations;
 *   fuzz_phases.c     the double reference of the statistics phases.
 */
#ifndef BN_FUZZ_H
#define BN_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "batchnorm.h"

#define MAX_CHANNELS 64
#define MAX_ELEMENTS (1 << 20)
#define MAX_SHARDS 6      /* k of bn_merge_stats backed by memory */
#define PROBE_ELEMENTS 4  /* buffer size handed to calls whose sizes are invalid */
/* Values of at most this magnitude cannot overflow float in any intermediate of a correct kernel. */
#define MODERATE 1e18
#define MIN_VAR_EPS 1e-20

/* The first six keep the byte values of the committed seeds. */
enum op {
  OP_FWD_TRAIN_F32, OP_FWD_EVAL_F32, OP_BWD_TRAIN_F32, OP_BWD_EVAL_F32, OP_THREADS, OP_MESSAGE,
  OP_FWD_TRAIN, OP_FWD_EVAL, OP_BWD_TRAIN, OP_BWD_EVAL, OP_STATS, OP_MERGE, OP_FROM_STATS,
  OP_BWD_REDUCE, OP_FROM_SUMS, OP_ISA, OP_COUNT
};

/* Buffer roles. y and x first: the committed seeds name them by index. */
enum role {
  R_Y, R_X, R_W, R_B, R_RM, R_RV, R_SM, R_SI, R_DY, R_DX, R_DW, R_DB,
  R_Z, R_DZ, R_MEAN, R_M2, R_SUM_DY, R_SUM_DYX, R_TOTAL, R_COUNTS, R_MEANS, R_M2S, R_NUM
};

/* What a role's buffer holds. */
enum kind {
  K_TENSOR,     /* (N,C,S) of the call's dtype */
  K_F32,        /* (C) float */
  K_F64,        /* (C) double */
  K_I64_ONE,    /* (1) int64_t: the merged count */
  K_I64_SHARDS, /* (k) int64_t: the partial counts */
  K_F64_SHARDS  /* (k, C) double: the partial statistics */
};

typedef struct {
  const uint8_t *p;
  size_t left;
} Reader;

typedef struct {
  void *base;     /* what malloc returned; NULL when the buffer is another role's */
  char *ptr;      /* what the call sees: base + offset */
  size_t bytes;   /* bytes from ptr to the end of the allocation */
  size_t offset;  /* misalignment in bytes */
  char *snapshot; /* contents before the call */
} Buf;

typedef struct {
  int op;
  int64_t n, c, s;
  int64_t count; /* total count of bn_forward_from_stats and bn_backward_from_sums */
  int64_t k;     /* partials of bn_merge_stats */
  int32_t layout, dtype, act, flags;
  double eps, factor;
  int allocated;       /* buffers have the call's real sizes (else PROBE_ELEMENTS) */
  int alias[R_NUM];    /* the role whose buffer this one shares, or -1 */
  int given[R_NUM];
  Buf buf[R_NUM];
  uint64_t rng;
} Call;

/* Bit sets of status codes: the faults the call certainly has (any of them may be named), and
 * codes it may also be refused with. */
typedef struct {
  uint32_t certain;
  uint32_t possible;
} Faults;

/* Per-channel statistics of the reference with their error bounds. */
typedef struct {
  double mean, var, mean_tol, var_tol;
} Moments;

/* fuzz_batchnorm.c */
void fuzz_fail(const Call *k, int32_t status, const char *cond, const char *file, int line);
#define CHECK(k, status, cond)                                  \
  do {                                                          \
    if (!(cond)) fuzz_fail((k), (status), #cond, __FILE__, __LINE__); \
  } while (0)
uint8_t take_u8(Reader *r);
uint64_t take_u64(Reader *r);
uint64_t next_random(uint64_t *state);
double uniform(uint64_t *state);
double normal(uint64_t *state);

/* fuzz_buffers.c */
enum kind role_kind(enum role r);
size_t elem_size(int32_t dtype);
void buffers_alloc(Call *k, size_t tensor_len, size_t channel_len, size_t shard_len, size_t offset);
void buffers_share(Call *k, enum role to, enum role from);
void buffers_fill(Call *k, Reader *r);
void buffers_canary(Call *k);
void buffers_snapshot(Call *k);
void buffers_free(Call *k);
int buffer_unchanged(const Call *k, enum role r);
int buffer_has_canary(const Call *k, enum role r);

/* fuzz_checks.c */
int role_used(int op, enum role r);
int role_required(const Call *k, enum role r);
int role_is_output(int op, enum role r);
Faults expected_faults(const Call *k);
int32_t invoke(Call *k);
void check_status(Call *k, Faults f, int32_t status);
void check_written_and_inputs_kept(Call *k);
int op_has_act(int op);
int op_is_generic(int op);

/* fuzz_reference.c */
double decode(int32_t dtype, const void *p, int64_t e);
void encode(int32_t dtype, void *p, int64_t e, double v);
int64_t at(const Call *k, int64_t i, int64_t j, int64_t q);
int64_t channel_of(const Call *k, int64_t e);
double snap_t(const Call *k, enum role r, int64_t e);
double snap_f32(const Call *k, enum role r, int64_t i);
double snap_f64(const Call *k, enum role r, int64_t i);
double out_t(const Call *k, enum role r, int64_t e);
double out_f32(const Call *k, enum role r, int64_t i);
double out_f64(const Call *k, enum role r, int64_t i);
void moments_ref(const Call *k, int64_t j, Moments *mo);
int moderate(double v);
double param_or(const Call *k, enum role r, int64_t j, double absent);
int channel_moderate(const Call *k, enum role r, int64_t j);
double grad_in(const Call *k, int64_t e);
void expect_close(const Call *k, double got, double want, double tol);
void expect_tensor(const Call *k, enum role r, int64_t e, double want, double tol);
double xhat_error(double x, double mean, double invstd, double mean_tol, double invstd_tol);
double sum_error(int64_t m, double abs_sum);
void check_normalized(const Call *k, int64_t j, double mean, double invstd, double mean_tol,
                      double invstd_tol);
void check_running(const Call *k, int64_t j, double mean, double var, double count,
                   double mean_tol, double var_tol);
void check_dz(const Call *k, int64_t j);
void check_values(Call *k);

/* fuzz_phases.c */
void check_phase_values(Call *k);

#endif /* BN_FUZZ_H */
