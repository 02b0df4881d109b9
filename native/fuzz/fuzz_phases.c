/*
 * The double reference of the statistics phases: bn_stats, bn_merge_stats,
 * bn_forward_from_stats, bn_backward_reduce and bn_backward_from_sums, one channel at a time.
 * The phases return their statistics in double, so those get bounds of a few double roundings
 * per value summed; the float and tensor outputs get the bounds of the whole operations.
 */
#include "fuzz.h"

#include <float.h>
#include <math.h>
#include <string.h>

// mean, m2 are (C); x is (N,C,S): count n*s, mean, m2 = sum of squared deviations.
static void check_stats(Call *k) {
  int64_t m = k->n * k->s;
  for (int64_t j = 0; j < k->c; j++) {
    if (m == 0) {
      CHECK(k, BN_OK, out_f64(k, R_MEAN, j) == 0.0 && out_f64(k, R_M2, j) == 0.0);
      continue;
    }
    if (!channel_moderate(k, R_X, j)) continue;
    Moments mo;
    moments_ref(k, j, &mo);
    expect_close(k, out_f64(k, R_MEAN, j), mo.mean, mo.mean_tol);
    expect_close(k, out_f64(k, R_M2, j), mo.var * (double)m, mo.var_tol * (double)m);
  }
}

static int64_t snap_i64(const Call *k, enum role r, int64_t i) {
  int64_t v;
  memcpy(&v, k->buf[r].snapshot + 8 * i, 8);
  return v;
}

// counts is (k), means and m2s (k, C): channel j merged in double, partials of count 0 skipped.
static void check_merged_channel(Call *k, int64_t j, double total) {
  double sum = 0.0, maxabs = 0.0, m2 = 0.0, spread = 0.0, maxdelta = 0.0;
  if (total == 0.0) {
    CHECK(k, BN_OK, out_f64(k, R_MEAN, j) == 0.0 && out_f64(k, R_M2, j) == 0.0);
    return;
  }
  for (int64_t i = 0; i < k->k; i++) {
    double n = (double)snap_i64(k, R_COUNTS, i), mean = snap_f64(k, R_MEANS, i * k->c + j);
    double part = snap_f64(k, R_M2S, i * k->c + j);
    if (n == 0.0) continue;
    if (!moderate(mean) || !moderate(part) || part < 0.0) return;
    sum += n * mean;
    maxabs = fmax(maxabs, fabs(mean));
    m2 += part;
  }
  double mean = sum / total;
  for (int64_t i = 0; i < k->k; i++) {
    double n = (double)snap_i64(k, R_COUNTS, i), d = snap_f64(k, R_MEANS, i * k->c + j) - mean;
    if (n == 0.0) continue;
    spread += n * d * d;
    maxdelta = fmax(maxdelta, fabs(d));
  }
  /* Chan's formula: each step rounds the mean and the m2 a few times; a mean's error moves the
   * next delta, whose square is weighted by at most the total count. */
  double steps = (double)k->k + 2.0;
  double mean_tol = 4.0 * steps * DBL_EPSILON * maxabs + DBL_TRUE_MIN;
  double m2_tol = 8.0 * steps * DBL_EPSILON * (m2 + spread) + 4.0 * maxdelta * mean_tol * total +
                  DBL_TRUE_MIN;
  expect_close(k, out_f64(k, R_MEAN, j), mean, mean_tol);
  expect_close(k, out_f64(k, R_M2, j), m2 + spread, m2_tol);
}

static void check_merge(Call *k) {
  int64_t total = 0;
  for (int64_t i = 0; i < k->k; i++) total += snap_i64(k, R_COUNTS, i);
  int64_t got;
  memcpy(&got, k->buf[R_TOTAL].ptr, 8);
  CHECK(k, BN_OK, got == total);
  for (int64_t j = 0; j < k->c; j++) check_merged_channel(k, j, (double)total);
}

/* The training forward of one shard from given whole-batch statistics: exact inputs, so the
 * statistics' bounds are a few double roundings. */
static void check_from_stats(Call *k) {
  int64_t m = k->n * k->s;
  double count = (double)k->count;
  for (int64_t j = 0; j < k->c; j++) {
    if (k->count == 0) {
      if (k->given[R_SM]) CHECK(k, BN_OK, out_f64(k, R_SM, j) == 0.0);
      if (k->given[R_SI]) CHECK(k, BN_OK, out_f64(k, R_SI, j) == 0.0);
      continue;
    }
    double mean = snap_f64(k, R_MEAN, j), m2 = snap_f64(k, R_M2, j);
    if (!moderate(mean) || !moderate(m2) || m2 < 0.0 || k->eps < MIN_VAR_EPS) continue;
    double var = m2 / count, invstd = 1.0 / sqrt(var + k->eps);
    double mean_tol = 2.0 * DBL_EPSILON * fabs(mean), var_tol = 4.0 * DBL_EPSILON * var;
    double invstd_tol = 8.0 * DBL_EPSILON * invstd;
    if (k->given[R_SM]) expect_close(k, out_f64(k, R_SM, j), mean, mean_tol);
    if (k->given[R_SI]) expect_close(k, out_f64(k, R_SI, j), invstd, invstd_tol);
    if (m > 0) check_normalized(k, j, mean, invstd, mean_tol, invstd_tol);
    check_running(k, j, mean, var, count, mean_tol, var_tol);
  }
}

// sum_dy, sum_dy_xhat are (C) double; dweight, dbias (C) float; dy, y, x (N,C,S).
static void check_reduce_channel(Call *k, int64_t j) {
  int64_t m = k->n * k->s;
  double mean = snap_f64(k, R_SM, j), invstd = snap_f64(k, R_SI, j), ai = fabs(invstd);
  if (!moderate(mean) || !moderate(invstd) || !channel_moderate(k, R_DY, j) || !channel_moderate(k, R_X, j)) return;
  double sd = 0.0, sdx = 0.0, abs_dy = 0.0, abs_dyx = 0.0, sub_err = 0.0, dw_tol = 4.0 * FLT_MIN;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      int64_t e = at(k, i, j, q);
      double g = grad_in(k, e), x = snap_t(k, R_X, e), xhat = (x - mean) * invstd;
      sd += g;
      sdx += g * xhat;
      abs_dy += fabs(g);
      abs_dyx += fabs(g * xhat);
      sub_err += fabs(g) * (fabs(x) + fabs(mean)) * ai;
      dw_tol += fabs(g) * xhat_error(x, mean, invstd, 0.0, 0.0);
    }
  }
  double steps = (double)m + 2.0;
  expect_close(k, out_f64(k, R_SUM_DY, j), sd, 4.0 * steps * DBL_EPSILON * abs_dy + DBL_TRUE_MIN);
  expect_close(k, out_f64(k, R_SUM_DYX, j), sdx,
               4.0 * steps * DBL_EPSILON * (abs_dyx + sub_err) + DBL_TRUE_MIN);
  if (abs_dy > 1e30 || abs_dyx > 1e30) return; /* the float gradients may overflow */
  if (k->given[R_DB]) expect_close(k, out_f32(k, R_DB, j), sd, sum_error(m, abs_dy));
  if (k->given[R_DW]) expect_close(k, out_f32(k, R_DW, j), sdx, dw_tol + sum_error(m, abs_dyx));
}

static void check_reduce(Call *k) {
  for (int64_t j = 0; j < k->c; j++) {
    if (k->n * k->s > 0) {
      check_reduce_channel(k, j);
      continue;
    }
    CHECK(k, BN_OK, out_f64(k, R_SUM_DY, j) == 0.0 && out_f64(k, R_SUM_DYX, j) == 0.0);
    if (k->given[R_DW]) CHECK(k, BN_OK, out_f32(k, R_DW, j) == 0.0);
    if (k->given[R_DB]) CHECK(k, BN_OK, out_f32(k, R_DB, j) == 0.0);
  }
}

// dx, dz, dy, y, x are (N,C,S): elementwise from the given sums and total count.
static void check_from_sums_channel(Call *k, int64_t j) {
  double w = param_or(k, R_W, j, 1.0), mean = snap_f64(k, R_SM, j), invstd = snap_f64(k, R_SI, j);
  double sd = snap_f64(k, R_SUM_DY, j), sdx = snap_f64(k, R_SUM_DYX, j), cnt = (double)k->count;
  double ai = fabs(invstd);
  check_dz(k, j);
  if (!k->given[R_DX] || !moderate(w) || !moderate(mean) || !moderate(invstd) || !moderate(sd) ||
      !moderate(sdx)) {
    return;
  }
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      int64_t e = at(k, i, j, q);
      double x = snap_t(k, R_X, e), dy = snap_t(k, R_DY, e);
      if (!moderate(x) || !moderate(dy)) continue; /* only this element may be non-finite */
      double g = grad_in(k, e), xhat = (x - mean) * invstd;
      double size = fabs(g) + fabs(sd) / cnt + fabs(xhat * sdx) / cnt;
      if (fabs(w) * ai * size > 1e30) continue; /* dx may overflow float */
      double want = w * invstd * (g - sd / cnt - xhat * sdx / cnt);
      double tol = fabs(w) * ai * 8.0 * FLT_EPSILON * size +
                   fabs(w) * xhat_error(x, mean, invstd, 0.0, 0.0) * fabs(sdx) / cnt + 4.0 * FLT_MIN;
      expect_tensor(k, R_DX, e, want, tol);
    }
  }
}

void check_phase_values(Call *k) {
  switch (k->op) {
  case OP_STATS:
    check_stats(k);
    break;
  case OP_MERGE:
    check_merge(k);
    break;
  case OP_FROM_STATS:
    check_from_stats(k);
    break;
  case OP_BWD_REDUCE:
    check_reduce(k);
    break;
  default:
    if (k->n * k->s == 0) return; /* n may be huge when s == 0 */
    for (int64_t j = 0; j < k->c; j++) check_from_sums_channel(k, j);
    break;
  }
}
