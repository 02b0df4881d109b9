/*
 * The double reference of the whole operations, one channel at a time, and what it needs:
 * bfloat16/float16 decoding and encoding, NCS/NSC indexing, the epilogues, error bounds.
 *
 * A channel is checked when its inputs are finite and moderate: then a correct kernel's
 * results are finite and within the bounds below of the double value. float32 outputs get
 * bounds of a few float roundings; 16-bit outputs, which the kernel rounds once from double,
 * get one unit in the last place of their type on top.
 */
#include "fuzz.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static double f16_to_double(uint16_t h) {
  int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
  return (h & 0x8000) ? -v : v;
}

/* Round to nearest-even; NaN stays NaN, overflow goes to infinity. */
static uint16_t double_to_f16(double v) {
  uint16_t sign = signbit(v) ? 0x8000 : 0;
  double a = fabs(v);
  if (isnan(v)) return sign | 0x7e00;
  if (a >= 65520.0) return sign | 0x7c00;
  int e;
  frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
  if (a == 0.0 || e - 1 < -14) return sign | (uint16_t)nearbyint(a * 0x1p24); /* subnormal */
  double mant = nearbyint(ldexp(a, 11 - e)); /* in [1024, 2048] */
  if (mant == 2048.0) {
    mant = 1024.0;
    e++;
  }
  if (e - 1 + 15 >= 31) return sign | 0x7c00;
  return sign | (uint16_t)((e - 1 + 15) << 10) | (uint16_t)(mant - 1024.0);
}

static uint16_t float_to_bf16(float f) {
  uint32_t bits;
  memcpy(&bits, &f, 4);
  if (isnan(f)) return (uint16_t)((bits >> 16) | 0x40);
  return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

double decode(int32_t dtype, const void *p, int64_t e) {
  if (dtype == BN_BF16 || dtype == BN_F16) {
    uint16_t h;
    memcpy(&h, (const char *)p + 2 * e, 2);
    if (dtype == BN_F16) return f16_to_double(h);
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
  }
  float f;
  memcpy(&f, (const char *)p + 4 * e, 4);
  return f;
}

void encode(int32_t dtype, void *p, int64_t e, double v) {
  if (dtype == BN_BF16 || dtype == BN_F16) {
    uint16_t h = dtype == BN_F16 ? double_to_f16(v) : float_to_bf16((float)v);
    memcpy((char *)p + 2 * e, &h, 2);
    return;
  }
  float f = (float)v;
  memcpy((char *)p + 4 * e, &f, 4);
}

/* Element (i, j, q) of an (N,C,S) tensor in the call's layout. */
int64_t at(const Call *k, int64_t i, int64_t j, int64_t q) {
  return k->layout == BN_LAYOUT_NSC ? (i * k->s + q) * k->c + j : (i * k->c + j) * k->s + q;
}

int64_t channel_of(const Call *k, int64_t e) {
  return k->layout == BN_LAYOUT_NSC ? e % k->c : (e / k->s) % k->c;
}

double snap_t(const Call *k, enum role r, int64_t e) { return decode(k->dtype, k->buf[r].snapshot, e); }
double out_t(const Call *k, enum role r, int64_t e) { return decode(k->dtype, k->buf[r].ptr, e); }

double snap_f32(const Call *k, enum role r, int64_t i) {
  float v;
  memcpy(&v, k->buf[r].snapshot + 4 * i, 4);
  return v;
}

double snap_f64(const Call *k, enum role r, int64_t i) {
  double v;
  memcpy(&v, k->buf[r].snapshot + 8 * i, 8);
  return v;
}

double out_f32(const Call *k, enum role r, int64_t i) {
  float v;
  memcpy(&v, k->buf[r].ptr + 4 * i, 4);
  return v;
}

double out_f64(const Call *k, enum role r, int64_t i) {
  double v;
  memcpy(&v, k->buf[r].ptr + 8 * i, 8);
  return v;
}

int moderate(double v) { return isfinite(v) && fabs(v) <= MODERATE; }

double param_or(const Call *k, enum role r, int64_t j, double absent) {
  return k->given[r] ? snap_f32(k, r, j) : absent;
}

/* All values of channel j of a tensor snapshot are moderate. */
int channel_moderate(const Call *k, enum role r, int64_t j) {
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      if (!moderate(snap_t(k, r, at(k, i, j, q)))) return 0;
    }
  }
  return 1;
}

/* g of element e: dy, masked by y > 0 after a fused forward (ReLU's gradient is 0 at 0). */
double grad_in(const Call *k, int64_t e) {
  double dy = snap_t(k, R_DY, e);
  if (k->act != BN_ACT_RELU && k->act != BN_ACT_ADD_RELU) return dy;
  return snap_t(k, R_Y, e) > 0.0 ? dy : 0.0;
}

void expect_close(const Call *k, double got, double want, double tol) {
  CHECK(k, BN_OK, isfinite(got));
  if (!(fabs(got - want) <= tol)) {
    fprintf(stderr, "got %.17g want %.17g tol %.3g\n", got, want, tol);
    CHECK(k, BN_OK, fabs(got - want) <= tol);
  }
}

/* One unit in the last place of |v| in a 16-bit type (p significant bits). */
static double ulp16(int32_t dtype, double v) {
  int p = dtype == BN_BF16 ? 8 : 11, e;
  double min = dtype == BN_BF16 ? 0x1p-133 : 0x1p-24;
  frexp(fabs(v), &e);
  return v == 0.0 ? min : fmax(ldexp(1.0, e - p), min);
}

/* Element e of a tensor output against its reference; a 16-bit result may also be off by one
 * unit in its last place. A reference near the type's maximum may round to infinity. */
void expect_tensor(const Call *k, enum role r, int64_t e, double want, double tol) {
  int half = k->dtype == BN_BF16 || k->dtype == BN_F16;
  double max = k->dtype == BN_BF16 ? 0x1.fep127 : k->dtype == BN_F16 ? 65504.0 : FLT_MAX;
  if (fabs(want) + tol >= max) return;
  expect_close(k, out_t(k, r, e), want, half ? tol + ulp16(k->dtype, want) : tol);
}

/*
 * Error bound of a correct float kernel on xhat = (x - mean) * invstd: the subtraction may round
 * (mean rounded to float first, subnormals), and mean and invstd carry their own errors.
 */
double xhat_error(double x, double mean, double invstd, double mean_tol, double invstd_tol) {
  return (8.0 * FLT_EPSILON * (fabs(x) + fabs(mean)) + 2.0 * FLT_TRUE_MIN + mean_tol) * fabs(invstd) +
         fabs(x - mean) * invstd_tol;
}

/* Error bound of a sum of m terms accumulated in double (or pairwise in float) then rounded. */
double sum_error(int64_t m, double abs_sum) {
  return (4.0 * FLT_EPSILON + 4.0 * (double)m * DBL_EPSILON) * abs_sum + 4.0 * FLT_MIN;
}

// y, x, z are (N,C,S): channel j of y = act((x - mean)*invstd*w + b [+ z]), elementwise.
void check_normalized(const Call *k, int64_t j, double mean, double invstd, double mean_tol,
                      double invstd_tol) {
  double w = param_or(k, R_W, j, 1.0), b = param_or(k, R_B, j, 0.0);
  int add = k->act == BN_ACT_ADD_RELU, relu = add || k->act == BN_ACT_RELU;
  if (!moderate(w) || !moderate(b)) return;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      int64_t e = at(k, i, j, q);
      double x = snap_t(k, R_X, e), z = add ? snap_t(k, R_Z, e) : 0.0;
      if (!moderate(x) || !moderate(z)) continue; /* only this element may be non-finite */
      double xhat = (x - mean) * invstd, v = xhat * w + b + z;
      double tol = fabs(w) * xhat_error(x, mean, invstd, mean_tol, invstd_tol) +
                   8.0 * FLT_EPSILON * (fabs(xhat * w) + fabs(b) + fabs(z)) + 4.0 * FLT_MIN;
      expect_tensor(k, R_Y, e, relu ? fmax(v, 0.0) : v, tol);
    }
  }
}

// running_mean, running_var are (C): moved by factor towards the batch's mean and variance.
void check_running(const Call *k, int64_t j, double mean, double var, double count,
                   double mean_tol, double var_tol) {
  if (!k->given[R_RM]) return;
  double f = k->factor, rm = snap_f32(k, R_RM, j), rv = snap_f32(k, R_RV, j);
  if (!moderate(rm) || !moderate(rv)) return;
  double stored = (k->flags & BN_RUNNING_VAR_BIASED) ? var : var * count / (count - 1.0);
  double stored_tol = (k->flags & BN_RUNNING_VAR_BIASED) ? var_tol : 2.0 * var_tol;
  expect_close(k, out_f32(k, R_RM, j), (1.0 - f) * rm + f * mean,
               4.0 * FLT_EPSILON * (fabs((1.0 - f) * rm) + fabs(f * mean)) + f * mean_tol + 4.0 * FLT_MIN);
  expect_close(k, out_f32(k, R_RV, j), (1.0 - f) * rv + f * stored,
               4.0 * FLT_EPSILON * (fabs((1.0 - f) * rv) + fabs(f * stored)) + f * stored_tol +
                   4.0 * FLT_MIN);
}

// dz, dy, y are (N,C,S): dz of Add+ReLU is g exactly (a masked copy of dy).
void check_dz(const Call *k, int64_t j) {
  if (k->act != BN_ACT_ADD_RELU || !k->given[R_DZ]) return;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      int64_t e = at(k, i, j, q);
      double g = grad_in(k, e);
      if (isfinite(snap_t(k, R_DY, e))) CHECK(k, BN_OK, out_t(k, R_DZ, e) == g);
    }
  }
}

/*
 * Channel j of x, (N,C,S), n*s > 0: mean and biased variance in double, with bounds that hold
 * for any summation order in double (the header's promise) and for a shifted two-pass or
 * one-pass algorithm: the cancellation is bounded through the largest deviation.
 */
void moments_ref(const Call *k, int64_t j, Moments *mo) {
  int64_t m = k->n * k->s;
  double sum = 0.0, sq = 0.0, maxabs = 0.0, maxdev = 0.0;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      double x = snap_t(k, R_X, at(k, i, j, q));
      sum += x;
      maxabs = fmax(maxabs, fabs(x));
    }
  }
  double mean = sum / (double)m;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      double d = snap_t(k, R_X, at(k, i, j, q)) - mean;
      sq += d * d;
      maxdev = fmax(maxdev, fabs(d));
    }
  }
  double var = sq / (double)m, md = (double)m;
  mo->mean = mean;
  mo->var = var;
  mo->mean_tol = 4.0 * md * DBL_EPSILON * maxabs + DBL_TRUE_MIN;
  mo->var_tol = 2.0 * mo->mean_tol * sqrt(var) + mo->mean_tol * mo->mean_tol +
                4.0 * (md + 2.0) * DBL_EPSILON * (var + 4.0 * maxdev * maxdev);
}

static void check_forward_train(Call *k) {
  int64_t m = k->n * k->s;
  for (int64_t j = 0; j < k->c; j++) {
    if (m == 0) {
      if (k->given[R_SM]) CHECK(k, BN_OK, out_f64(k, R_SM, j) == 0.0);
      if (k->given[R_SI]) CHECK(k, BN_OK, out_f64(k, R_SI, j) == 0.0);
      continue;
    }
    if (!channel_moderate(k, R_X, j) || k->eps < MIN_VAR_EPS) continue;
    Moments mo;
    moments_ref(k, j, &mo);
    double invstd = 1.0 / sqrt(mo.var + k->eps);
    double invstd_tol = invstd * (mo.var_tol / (mo.var + k->eps) + 1e-12);
    if (k->given[R_SM]) expect_close(k, out_f64(k, R_SM, j), mo.mean, mo.mean_tol);
    if (k->given[R_SI]) expect_close(k, out_f64(k, R_SI, j), invstd, invstd_tol);
    check_normalized(k, j, mo.mean, invstd, mo.mean_tol, invstd_tol);
    check_running(k, j, mo.mean, mo.var, (double)m, mo.mean_tol, mo.var_tol);
  }
}

/* 1/sqrt(running_var+eps) when it is safely finite, else -1. */
static double eval_invstd(const Call *k, int64_t j) {
  double rv = snap_f32(k, R_RV, j);
  if (!moderate(rv) || rv < 0.0 || rv + k->eps < MIN_VAR_EPS) return -1.0;
  return 1.0 / sqrt(rv + k->eps);
}

static void check_forward_eval(Call *k) {
  if (k->n * k->s == 0) return; /* n may be huge when s == 0 */
  for (int64_t j = 0; j < k->c; j++) {
    double rm = snap_f32(k, R_RM, j), invstd = eval_invstd(k, j);
    if (invstd < 0.0 || !moderate(rm)) continue;
    check_normalized(k, j, rm, invstd, 0.0, 8.0 * FLT_EPSILON * invstd);
  }
}

/* Backward in both modes: mean/invstd are the saved or the running statistics. */
static void check_backward(Call *k, int64_t j, double mean, double invstd) {
  int64_t m = k->n * k->s;
  double w = param_or(k, R_W, j, 1.0), ai = fabs(invstd);
  int train = k->op == OP_BWD_TRAIN || k->op == OP_BWD_TRAIN_F32;
  int need_x = train || k->given[R_DW];
  if (m == 0) {
    if (k->given[R_DW]) CHECK(k, BN_OK, out_f32(k, R_DW, j) == 0.0);
    if (k->given[R_DB]) CHECK(k, BN_OK, out_f32(k, R_DB, j) == 0.0);
    return;
  }
  check_dz(k, j);
  if (!moderate(w) || !moderate(mean) || !moderate(invstd) || !channel_moderate(k, R_DY, j)) return;
  if (need_x && !channel_moderate(k, R_X, j)) return;
  double sum_dy = 0.0, sum_dy_xhat = 0.0, abs_dy = 0.0, abs_dy_xhat = 0.0, dw_tol = 4.0 * FLT_MIN;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      int64_t e = at(k, i, j, q);
      double g = grad_in(k, e);
      sum_dy += g;
      abs_dy += fabs(g);
      if (need_x) {
        double x = snap_t(k, R_X, e), xhat = (x - mean) * invstd;
        sum_dy_xhat += g * xhat;
        abs_dy_xhat += fabs(g * xhat);
        dw_tol += fabs(g) * xhat_error(x, mean, invstd, 0.0, 0.0);
      }
    }
  }
  /* Beyond these magnitudes the float results may legitimately overflow. */
  double xhat_max = 2.0 * MODERATE * ai;
  if (abs_dy > 1e30 || abs_dy_xhat > 1e30 || fabs(w) * ai * (abs_dy + xhat_max * abs_dy_xhat) > 1e30) return;
  double db_tol = sum_error(m, abs_dy);
  dw_tol += sum_error(m, abs_dy_xhat);
  if (k->given[R_DB]) expect_close(k, out_f32(k, R_DB, j), sum_dy, db_tol);
  if (k->given[R_DW]) expect_close(k, out_f32(k, R_DW, j), sum_dy_xhat, dw_tol);
  if (!k->given[R_DX]) return;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      int64_t e = at(k, i, j, q);
      double g = grad_in(k, e), want, tol;
      if (train) {
        double x = snap_t(k, R_X, e), xhat = (x - mean) * invstd;
        double xhat_err = xhat_error(x, mean, invstd, 0.0, 0.0), mm = (double)m;
        want = w * invstd * (g - sum_dy / mm - xhat * sum_dy_xhat / mm);
        tol = fabs(w) * ai *
                  (8.0 * FLT_EPSILON * (fabs(g) + fabs(sum_dy) / mm + fabs(xhat * sum_dy_xhat) / mm) +
                   db_tol / mm + (xhat_err * fabs(sum_dy_xhat) + fabs(xhat) * dw_tol) / mm) +
              4.0 * FLT_MIN;
      } else {
        want = g * w * invstd;
        tol = 8.0 * FLT_EPSILON * fabs(want) + 4.0 * FLT_MIN;
      }
      expect_tensor(k, R_DX, e, want, tol);
    }
  }
}

void check_values(Call *k) {
  switch (k->op) {
  case OP_FWD_TRAIN_F32:
  case OP_FWD_TRAIN:
    check_forward_train(k);
    break;
  case OP_FWD_EVAL_F32:
  case OP_FWD_EVAL:
    check_forward_eval(k);
    break;
  case OP_BWD_TRAIN_F32:
  case OP_BWD_TRAIN:
    for (int64_t j = 0; j < k->c; j++) check_backward(k, j, snap_f64(k, R_SM, j), snap_f64(k, R_SI, j));
    break;
  default:
    for (int64_t j = 0; j < k->c; j++) {
      double invstd = eval_invstd(k, j);
      if (invstd >= 0.0) check_backward(k, j, snap_f32(k, R_RM, j), invstd);
      else if (k->n * k->s > 0) check_dz(k, j);
    }
    break;
  }
}
