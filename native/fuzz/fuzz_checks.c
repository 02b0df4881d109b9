/*
 * The contract of batchnorm.h as tables and rules: which pointers each entry point takes,
 * requires and writes, which statuses a call may return, the call itself, and what a
 * successful call must have written and left alone.
 */
#include "fuzz.h"

#include <math.h>
#include <string.h>

#define BIT(code) (1u << (code))

int op_is_generic(int op) { return op >= OP_FWD_TRAIN && op != OP_ISA; }

static int op_is_forward(int op) {
  return op == OP_FWD_TRAIN_F32 || op == OP_FWD_EVAL_F32 || op == OP_FWD_TRAIN ||
         op == OP_FWD_EVAL || op == OP_FROM_STATS;
}

static int op_trains(int op) { /* moves running statistics with a factor */
  return op == OP_FWD_TRAIN_F32 || op == OP_FWD_TRAIN || op == OP_FROM_STATS;
}

static int op_takes_eps(int op) {
  return op_is_forward(op) || op == OP_BWD_EVAL_F32 || op == OP_BWD_EVAL;
}

static int op_takes_count(int op) { return op == OP_FROM_STATS || op == OP_FROM_SUMS; }

int op_has_act(int op) { return op_is_generic(op) && op != OP_STATS && op != OP_MERGE; }

static int op_is_eval(int op) {
  return op == OP_FWD_EVAL_F32 || op == OP_FWD_EVAL || op == OP_BWD_EVAL_F32 || op == OP_BWD_EVAL;
}

#define ROLES(...) (roles_mask((const int[]){__VA_ARGS__, -1}))
static uint32_t roles_mask(const int *list) {
  uint32_t m = 0;
  for (; *list >= 0; list++) m |= 1u << *list;
  return m;
}

static uint32_t used_mask(int op) {
  switch (op) {
  case OP_FWD_TRAIN_F32: return ROLES(R_Y, R_X, R_W, R_B, R_RM, R_RV, R_SM, R_SI);
  case OP_FWD_EVAL_F32: return ROLES(R_Y, R_X, R_W, R_B, R_RM, R_RV);
  case OP_BWD_TRAIN_F32: return ROLES(R_DX, R_DW, R_DB, R_DY, R_X, R_W, R_SM, R_SI);
  case OP_BWD_EVAL_F32: return ROLES(R_DX, R_DW, R_DB, R_DY, R_X, R_W, R_RM, R_RV);
  case OP_FWD_TRAIN: return used_mask(OP_FWD_TRAIN_F32) | ROLES(R_Z);
  case OP_FWD_EVAL: return used_mask(OP_FWD_EVAL_F32) | ROLES(R_Z);
  case OP_BWD_TRAIN: return used_mask(OP_BWD_TRAIN_F32) | ROLES(R_DZ, R_Y);
  case OP_BWD_EVAL: return used_mask(OP_BWD_EVAL_F32) | ROLES(R_DZ, R_Y);
  case OP_STATS: return ROLES(R_MEAN, R_M2, R_X);
  case OP_MERGE: return ROLES(R_TOTAL, R_MEAN, R_M2, R_COUNTS, R_MEANS, R_M2S);
  case OP_FROM_STATS: return used_mask(OP_FWD_TRAIN) | ROLES(R_MEAN, R_M2);
  case OP_BWD_REDUCE: return ROLES(R_SUM_DY, R_SUM_DYX, R_DW, R_DB, R_DY, R_Y, R_X, R_SM, R_SI);
  case OP_FROM_SUMS:
    return ROLES(R_DX, R_DZ, R_DY, R_Y, R_X, R_W, R_SM, R_SI, R_SUM_DY, R_SUM_DYX);
  default: return 0;
  }
}

int role_used(int op, enum role r) { return (used_mask(op) >> r) & 1; }

/* Roles the call may write (running statistics included: they are updated in place). */
int role_is_output(int op, enum role r) {
  uint32_t out;
  if (op == OP_FWD_EVAL_F32 || op == OP_FWD_EVAL) {
    out = ROLES(R_Y);
  } else if (op_is_forward(op)) {
    out = ROLES(R_Y, R_SM, R_SI, R_RM, R_RV);
  } else if (op == OP_STATS || op == OP_MERGE) {
    out = ROLES(R_TOTAL, R_MEAN, R_M2);
  } else if (op == OP_BWD_REDUCE) {
    out = ROLES(R_SUM_DY, R_SUM_DYX, R_DW, R_DB);
  } else {
    out = ROLES(R_DX, R_DZ, R_DW, R_DB);
  }
  return role_used(op, r) && ((out >> r) & 1);
}

int role_required(const Call *k, enum role r) {
  int fused = k->act == BN_ACT_RELU || k->act == BN_ACT_ADD_RELU;
  if (!role_used(k->op, r)) return 0;
  if (r == R_Z) return k->act == BN_ACT_ADD_RELU;
  if (r == R_Y && !op_is_forward(k->op)) return fused;
  switch (k->op) {
  case OP_FWD_TRAIN_F32:
  case OP_FWD_TRAIN:
    return r == R_Y || r == R_X;
  case OP_FWD_EVAL_F32:
  case OP_FWD_EVAL:
    return r == R_Y || r == R_X || r == R_RM || r == R_RV;
  case OP_BWD_EVAL_F32:
  case OP_BWD_EVAL:
    return r == R_DY || r == R_RM || r == R_RV || (r == R_X && k->given[R_DW]);
  case OP_MERGE:
    return r == R_TOTAL || r == R_MEAN || r == R_M2 || k->k > 0;
  case OP_FROM_STATS:
    return r == R_Y || r == R_X || r == R_MEAN || r == R_M2;
  default: /* the training backwards and the statistics: everything but dx, dz, dw, db, w */
    return !(r == R_DX || r == R_DZ || r == R_DW || r == R_DB || r == R_W);
  }
}

/* Outputs a successful call writes in full (the running stats and the count are checked by
 * value instead). */
static int role_written(const Call *k, enum role r) {
  if (!role_is_output(k->op, r) || r == R_RM || r == R_RV || r == R_TOTAL) return 0;
  return r != R_DZ || k->act == BN_ACT_ADD_RELU;
}

static int mul_overflows(int64_t a, int64_t b, int64_t *out) {
  return __builtin_mul_overflow(a, b, out);
}

/* A count and its byte size as doubles both fit in int64_t. */
static int count_fits(int64_t a, int64_t b) {
  int64_t count, bytes;
  return !mul_overflows(a, b, &count) && !mul_overflows(count, (int64_t)sizeof(double), &bytes);
}

static int sizes_bad(const Call *k) { return k->n < 0 || k->c < 1 || k->s < 0; }

/* Bytes per value of the per-channel arrays every call of op certainly takes. */
static int64_t channel_bytes(int op) {
  return op == OP_FWD_TRAIN_F32 || op == OP_FWD_TRAIN || op_is_eval(op) ? 4 : 8;
}

/* The mathematical n*c*s, its byte count or the per-channel arrays' byte count does not fit. */
static int sizes_overflow(const Call *k) {
  int64_t nc, ncs, bytes;
  if (sizes_bad(k)) return 0;
  if (mul_overflows(k->c, channel_bytes(k->op), &bytes)) return 1;
  if (k->n == 0 || k->s == 0) return 0;
  return mul_overflows(k->n, k->c, &nc) || mul_overflows(nc, k->s, &ncs) ||
         mul_overflows(ncs, (int64_t)elem_size(k->dtype), &bytes);
}

/* Intermediate counts that a careful implementation may still refuse even when n*c*s fits (n*c or
 * the row stride c*s when the tensor is empty, their byte sizes, C doubles' byte size). */
static int sizes_may_overflow(const Call *k) {
  int64_t nc;
  if (sizes_bad(k)) return 0;
  return !count_fits(k->n, k->c) || !count_fits(k->c, k->s) || !count_fits(k->n, k->s) ||
         !count_fits(k->c, 1) || mul_overflows(k->n, k->c, &nc) || !count_fits(nc, k->s);
}

static int eps_bad(double eps) { return isnan(eps) || isinf(eps) || eps < 0.0; }
static int factor_bad(double f) { return isnan(f) || f < 0.0 || f > 1.0; }

static void pointer_faults(const Call *k, Faults *f) {
  int fused = k->act == BN_ACT_RELU || k->act == BN_ACT_ADD_RELU;
  for (int r = 0; r < R_NUM; r++) {
    if (!role_required(k, (enum role)r) || k->given[r]) continue;
    /* A missing residual is named by BN_ERR_BAD_ACTIVATION or as a NULL pointer. */
    f->certain |= BIT(BN_ERR_NULL_POINTER) | (r == R_Z ? BIT(BN_ERR_BAD_ACTIVATION) : 0);
  }
  if (role_used(k->op, R_RM) && k->given[R_RM] != k->given[R_RV]) f->certain |= BIT(BN_ERR_NULL_POINTER);
  /* An invalid act cannot say whether y is needed. */
  if (op_has_act(k->op) && !fused && k->act != BN_ACT_NONE && role_used(k->op, R_Y) &&
      !op_is_forward(k->op) && !k->given[R_Y]) {
    f->possible |= BIT(BN_ERR_NULL_POINTER);
  }
}

static void shape_faults(const Call *k, Faults *f) {
  if (sizes_bad(k)) f->certain |= BIT(BN_ERR_BAD_SIZE);
  if (sizes_overflow(k)) f->certain |= BIT(BN_ERR_SIZE_OVERFLOW);
  if (sizes_may_overflow(k)) f->possible |= BIT(BN_ERR_SIZE_OVERFLOW);
  if (k->layout != BN_LAYOUT_NCS && k->layout != BN_LAYOUT_NSC) f->certain |= BIT(BN_ERR_UNSUPPORTED_LAYOUT);
  if (k->dtype != BN_F32 && k->dtype != BN_BF16 && k->dtype != BN_F16) f->certain |= BIT(BN_ERR_UNSUPPORTED_DTYPE);
}

static void scalar_faults(const Call *k, Faults *f) {
  if (op_has_act(k->op) && (k->act < BN_ACT_NONE || k->act > BN_ACT_ADD_RELU)) f->certain |= BIT(BN_ERR_BAD_ACTIVATION);
  if (op_takes_eps(k->op) && eps_bad(k->eps)) f->certain |= BIT(BN_ERR_BAD_EPS);
  if (!op_trains(k->op)) return;
  if (factor_bad(k->factor)) {
    /* Without running buffers the factor is unused: checking it anyway is allowed. */
    f->certain |= k->given[R_RM] && k->given[R_RV] ? BIT(BN_ERR_BAD_FACTOR) : 0;
    f->possible |= BIT(BN_ERR_BAD_FACTOR);
  }
  if (k->flags & ~BN_RUNNING_VAR_BIASED) f->certain |= BIT(BN_ERR_BAD_FLAGS);
}

/* Training needs two values per channel in the batch; the phases' count covers this shard. */
static void count_faults(const Call *k, Faults *f) {
  int64_t m;
  int m_overflows = k->n >= 0 && k->s >= 0 && mul_overflows(k->n, k->s, &m);
  int m_known = k->n >= 0 && k->s >= 0 && !m_overflows;
  if (op_takes_count(k->op)) {
    if (k->count < 0) f->certain |= BIT(BN_ERR_BAD_SIZE);
    if (m_overflows || (m_known && k->count < m)) f->certain |= BIT(BN_ERR_BAD_COUNT);
  }
  if (k->op == OP_FROM_STATS && k->count == 1) f->certain |= BIT(BN_ERR_TOO_FEW_VALUES);
  if ((k->op == OP_FWD_TRAIN_F32 || k->op == OP_FWD_TRAIN) && !sizes_bad(k) && m_known && m == 1) {
    f->certain |= BIT(BN_ERR_TOO_FEW_VALUES);
  }
}

// counts is (k), means and m2s (k, C): negative or overflowing counts, absurd k or c.
static Faults merge_faults(const Call *k) {
  Faults f = {0, 0};
  int64_t kc, bytes;
  pointer_faults(k, &f);
  if (k->k < 0 || k->c < 1) {
    f.certain |= BIT(BN_ERR_BAD_SIZE);
    return f;
  }
  if (mul_overflows(k->c, 8, &bytes) || mul_overflows(k->k, k->c, &kc) || mul_overflows(kc, 8, &bytes)) {
    f.certain |= BIT(BN_ERR_SIZE_OVERFLOW);
  }
  if (!k->allocated || !k->given[R_COUNTS]) return f;
  __int128 total = 0;
  for (int64_t i = 0; i < k->k; i++) {
    int64_t v;
    memcpy(&v, k->buf[R_COUNTS].snapshot + 8 * i, 8);
    if (v < 0) f.certain |= BIT(BN_ERR_BAD_SIZE);
    total += v;
  }
  /* A running sum may overflow before the negative count is seen. */
  if (f.certain & BIT(BN_ERR_BAD_SIZE)) f.possible |= BIT(BN_ERR_SIZE_OVERFLOW);
  if (total > INT64_MAX) f.certain |= BIT(BN_ERR_SIZE_OVERFLOW) | BIT(BN_ERR_BAD_COUNT);
  return f;
}

Faults expected_faults(const Call *k) {
  if (k->op == OP_MERGE) return merge_faults(k);
  Faults f = {0, 0};
  pointer_faults(k, &f);
  shape_faults(k, &f);
  scalar_faults(k, &f);
  count_faults(k, &f);
  return f;
}

void check_status(Call *k, Faults f, int32_t status) {
  CHECK(k, status, status >= BN_OK && status <= BN_ERR_BAD_COUNT);
  CHECK(k, status, strlen(bn_status_message(status)) > 0);
  if (f.certain != 0) {
    CHECK(k, status, status != BN_OK && (((f.certain | f.possible) >> status) & 1));
  } else {
    CHECK(k, status, status == BN_OK || ((f.possible >> status) & 1));
  }
}

static void *ptr(Call *k, enum role r) { return k->given[r] ? k->buf[r].ptr : NULL; }
#define F32(r) ((float *)ptr(k, (r)))
#define F64(r) ((double *)ptr(k, (r)))
#define I64(r) ((int64_t *)ptr(k, (r)))

int32_t invoke(Call *k) {
  switch (k->op) {
  case OP_FWD_TRAIN_F32:
    return bn_forward_train_f32(F32(R_Y), F64(R_SM), F64(R_SI), F32(R_RM), F32(R_RV), F32(R_X),
                                F32(R_W), F32(R_B), k->n, k->c, k->s, k->layout, k->eps, k->factor);
  case OP_FWD_EVAL_F32:
    return bn_forward_eval_f32(F32(R_Y), F32(R_X), F32(R_W), F32(R_B), F32(R_RM), F32(R_RV), k->n,
                               k->c, k->s, k->layout, k->eps);
  case OP_BWD_TRAIN_F32:
    return bn_backward_train_f32(F32(R_DX), F32(R_DW), F32(R_DB), F32(R_DY), F32(R_X), F32(R_W),
                                 F64(R_SM), F64(R_SI), k->n, k->c, k->s, k->layout);
  case OP_BWD_EVAL_F32:
    return bn_backward_eval_f32(F32(R_DX), F32(R_DW), F32(R_DB), F32(R_DY), F32(R_X), F32(R_W),
                                F32(R_RM), F32(R_RV), k->n, k->c, k->s, k->layout, k->eps);
  case OP_FWD_TRAIN:
    return bn_forward_train(ptr(k, R_Y), F64(R_SM), F64(R_SI), F32(R_RM), F32(R_RV), ptr(k, R_X),
                            ptr(k, R_Z), F32(R_W), F32(R_B), k->n, k->c, k->s, k->layout, k->dtype,
                            k->act, k->eps, k->factor, k->flags);
  case OP_FWD_EVAL:
    return bn_forward_eval(ptr(k, R_Y), ptr(k, R_X), ptr(k, R_Z), F32(R_W), F32(R_B), F32(R_RM),
                           F32(R_RV), k->n, k->c, k->s, k->layout, k->dtype, k->act, k->eps);
  case OP_BWD_TRAIN:
    return bn_backward_train(ptr(k, R_DX), ptr(k, R_DZ), F32(R_DW), F32(R_DB), ptr(k, R_DY),
                             ptr(k, R_Y), ptr(k, R_X), F32(R_W), F64(R_SM), F64(R_SI), k->n, k->c,
                             k->s, k->layout, k->dtype, k->act);
  case OP_BWD_EVAL:
    return bn_backward_eval(ptr(k, R_DX), ptr(k, R_DZ), F32(R_DW), F32(R_DB), ptr(k, R_DY),
                            ptr(k, R_Y), ptr(k, R_X), F32(R_W), F32(R_RM), F32(R_RV), k->n, k->c,
                            k->s, k->layout, k->dtype, k->act, k->eps);
  case OP_STATS:
    return bn_stats(F64(R_MEAN), F64(R_M2), ptr(k, R_X), k->n, k->c, k->s, k->layout, k->dtype);
  case OP_MERGE:
    return bn_merge_stats(I64(R_TOTAL), F64(R_MEAN), F64(R_M2), I64(R_COUNTS), F64(R_MEANS),
                          F64(R_M2S), k->k, k->c);
  case OP_FROM_STATS:
    return bn_forward_from_stats(ptr(k, R_Y), F64(R_SM), F64(R_SI), F32(R_RM), F32(R_RV),
                                 ptr(k, R_X), ptr(k, R_Z), F32(R_W), F32(R_B), F64(R_MEAN),
                                 F64(R_M2), k->count, k->n, k->c, k->s, k->layout, k->dtype,
                                 k->act, k->eps, k->factor, k->flags);
  case OP_BWD_REDUCE:
    return bn_backward_reduce(F64(R_SUM_DY), F64(R_SUM_DYX), F32(R_DW), F32(R_DB), ptr(k, R_DY),
                              ptr(k, R_Y), ptr(k, R_X), F64(R_SM), F64(R_SI), k->n, k->c, k->s,
                              k->layout, k->dtype, k->act);
  default:
    return bn_backward_from_sums(ptr(k, R_DX), ptr(k, R_DZ), ptr(k, R_DY), ptr(k, R_Y),
                                 ptr(k, R_X), F32(R_W), F64(R_SM), F64(R_SI), F64(R_SUM_DY),
                                 F64(R_SUM_DYX), k->count, k->n, k->c, k->s, k->layout, k->dtype,
                                 k->act);
  }
}

/* An output that shares this input's memory was written. */
static int overwritten_in_place(const Call *k, enum role r) {
  for (int o = 0; o < R_NUM; o++) {
    if (k->given[o] && k->alias[o] == (int)r && role_is_output(k->op, (enum role)o)) {
      return role_written(k, (enum role)o);
    }
  }
  return 0;
}

/* The running statistics move only when the batch has values (forward_train) or the total count
 * is at least 2 (forward_from_stats); else they are left alone. */
static int running_moved(const Call *k) {
  if (k->op == OP_FROM_STATS) return k->count >= 2;
  return k->n * k->s > 0;
}

/* Every written output holds no canary (it was written in full); every other buffer is as it
 * was, outputs the call does not write included. */
void check_written_and_inputs_kept(Call *k) {
  for (int r = 0; r < R_NUM; r++) {
    if (!k->given[r] || k->alias[r] >= 0 || r == R_TOTAL) continue;
    if (role_written(k, (enum role)r)) {
      CHECK(k, BN_OK, !buffer_has_canary(k, (enum role)r));
    } else if ((r == R_RM || r == R_RV) && role_is_output(k->op, (enum role)r) && running_moved(k)) {
      continue; /* checked against the reference */
    } else if (!overwritten_in_place(k, (enum role)r)) {
      CHECK(k, BN_OK, buffer_unchanged(k, (enum role)r));
    }
  }
}
