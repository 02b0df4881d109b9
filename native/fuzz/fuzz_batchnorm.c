/*
 * libFuzzer harness for libbatchnorm: every entry point, fuzzed sizes, flags and scalars.
 *
 * The input is read as a small program of up to MAX_CALLS calls (bytes past the end read as 0).
 * Each call picks an entry point, sizes (small valid ones, a medium size that takes the
 * parallel paths, or raw 64-bit values: negative, huge, overflowing), which pointers are NULL,
 * eps and factor (normal values, edge values, NaN/Inf/negative, raw bit patterns), the layout,
 * in-place use, buffer misalignment and how the data is filled.
 *
 * The harness asserts the contract of batchnorm.h, not just the absence of crashes:
 *  - the status is BN_OK exactly when the call is valid, and an error that names one of the
 *    call's actual faults otherwise;
 *  - on an error nothing was written (every buffer compared byte for byte);
 *  - on success every given output was written in full, no input was changed, and on each
 *    channel whose inputs are finite and moderate the results are finite and agree with a double
 *    reference (per channel, so a NaN in one channel must not disturb the others).
 * Buffers are allocated with their exact size so that AddressSanitizer sees any access past
 * them; calls whose sizes are valid but too large to allocate are not made.
 */
#include "batchnorm.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#endif
#endif
#ifndef POISON
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define MAX_CALLS 6
#define MAX_CHANNELS 64
#define MAX_ELEMENTS (1 << 20)
#define PROBE_ELEMENTS 4 /* buffer size handed to calls whose sizes are invalid */
/* Values of at most this magnitude cannot overflow float in any intermediate of a correct kernel. */
#define MODERATE 1e18
#define MIN_VAR_EPS 1e-20

/* Bit patterns written into outputs before a call: any left afterwards was not written. */
#define CANARY_F32 0x7fa5a5a5u
#define CANARY_F64 0x7ff4a5a5a5a5a5a5ull

enum op { OP_FWD_TRAIN, OP_FWD_EVAL, OP_BWD_TRAIN, OP_BWD_EVAL, OP_THREADS, OP_MESSAGE, OP_COUNT };

/* Buffer roles; per-channel ones hold C values, tensor ones N*C*S. */
enum role { R_Y, R_X, R_W, R_B, R_RM, R_RV, R_SM, R_SI, R_DY, R_DX, R_DW, R_DB, R_COUNT };
static const char *const ROLE_NAMES[R_COUNT] = {"y",  "x",  "weight", "bias",      "running_mean",
                                                "running_var", "save_mean", "save_invstd", "dy",
                                                "dx", "dweight", "dbias"};

static int role_is_tensor(enum role r) { return r == R_Y || r == R_X || r == R_DY || r == R_DX; }
static int role_is_double(enum role r) { return r == R_SM || r == R_SI; }

typedef struct {
  const uint8_t *p;
  size_t left;
} Reader;

typedef struct {
  void *base;     /* what malloc returned */
  char *ptr;      /* what the call sees: base + offset */
  size_t bytes;   /* bytes from ptr to the end of the allocation */
  size_t offset;  /* misalignment in bytes */
  char *snapshot; /* contents before the call */
} Buf;

typedef struct {
  int op;
  int64_t n, c, s;
  int32_t layout;
  double eps, factor;
  int in_place;
  int allocated; /* buffers have the call's real sizes (else PROBE_ELEMENTS) */
  int given[R_COUNT];
  Buf buf[R_COUNT];
  uint64_t rng;
} Call;

static int32_t default_threads = 1;

static void describe(const Call *k, int32_t status) {
  fprintf(stderr, "call: op=%d n=%lld c=%lld s=%lld layout=%d eps=%a factor=%a in_place=%d "
                  "allocated=%d status=%d threads=%d\n  given:",
          k->op, (long long)k->n, (long long)k->c, (long long)k->s, k->layout, k->eps, k->factor,
          k->in_place, k->allocated, status, bn_get_num_threads());
  for (int r = 0; r < R_COUNT; r++) {
    if (k->given[r]) fprintf(stderr, " %s(+%zu)", ROLE_NAMES[r], k->buf[r].offset);
  }
  fprintf(stderr, "\n");
}

#define CHECK(k, status, cond)                                                        \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "contract violated: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      describe((k), (status));                                                        \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

static uint8_t take_u8(Reader *r) {
  if (r->left == 0) return 0;
  r->left--;
  return *r->p++;
}

static uint64_t take_u64(Reader *r) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)take_u8(r) << (8 * i);
  return v;
}

static uint64_t next_random(uint64_t *state) { /* splitmix64 */
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double uniform(uint64_t *state) { return (double)(next_random(state) >> 11) * 0x1p-53; }

static double normal(uint64_t *state) { /* Irwin-Hall, 4 terms: bell-shaped enough, and cheap */
  double sum = 0.0;
  for (int i = 0; i < 4; i++) sum += uniform(state);
  return (sum - 2.0) * 1.7320508075688772;
}

static double bits_to_double(uint64_t bits) {
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

static float bits_to_float(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static int64_t take_size(Reader *r) {
  static const int64_t table[] = {
      0, 1, 2, 3, 4, -1, -2, INT64_MIN, INT64_MAX, INT64_MAX / 2, INT64_MAX / 4, INT64_MAX / 4 + 1,
      INT64_MAX / 8, INT64_MAX / 8 + 1, (int64_t)1 << 31, ((int64_t)1 << 31) + 1, (int64_t)1 << 32,
      3037000499, 3037000500, 2097151, 2097152, (int64_t)1 << 62, 65536, 1 << 20};
  uint8_t pick = take_u8(r);
  if (pick < sizeof table / sizeof table[0]) return table[pick];
  if (pick < 200) return (int64_t)(pick % 7);
  return (int64_t)take_u64(r);
}

static double take_eps(Reader *r) {
  static const double table[] = {1e-5, 1e-3, 0.1, 1.0, 1e-5, 1e-5, 0.0, -0.0,
                                 1e-30, 1e300, DBL_MAX, DBL_TRUE_MIN, -1e-5, -DBL_TRUE_MIN,
                                 NAN, -NAN, INFINITY, -INFINITY};
  uint8_t pick = take_u8(r);
  if (pick < sizeof table / sizeof table[0]) return table[pick];
  if (pick < 240) return 1e-5;
  return bits_to_double(take_u64(r));
}

static double take_factor(Reader *r) {
  static const double table[] = {0.1, 0.1, 0.0, 1.0, 0.5, 1.0 / 3.0, -0.0, 1e-300,
                                 0x1.0000000000001p0, -1e-300, 2.0, -0.1,
                                 NAN, INFINITY, -INFINITY};
  uint8_t pick = take_u8(r);
  if (pick < sizeof table / sizeof table[0]) return table[pick];
  if (pick < 240) return 0.1;
  return bits_to_double(take_u64(r));
}

static int32_t take_layout(Reader *r) {
  static const int32_t table[] = {BN_LAYOUT_NSC, -1, 2, INT32_MAX, INT32_MIN};
  uint8_t pick = take_u8(r);
  if (pick < 250) return BN_LAYOUT_NCS;
  return table[pick % 5];
}

/* Which buffers an entry point takes, which of them it requires, which it writes. */
static int role_used(int op, enum role r) {
  switch (op) {
  case OP_FWD_TRAIN:
    return r == R_Y || r == R_X || r == R_W || r == R_B || r == R_RM || r == R_RV || r == R_SM ||
           r == R_SI;
  case OP_FWD_EVAL:
    return r == R_Y || r == R_X || r == R_W || r == R_B || r == R_RM || r == R_RV;
  case OP_BWD_TRAIN:
    return r == R_DX || r == R_DW || r == R_DB || r == R_DY || r == R_X || r == R_W || r == R_SM ||
           r == R_SI;
  case OP_BWD_EVAL:
    return r == R_DX || r == R_DW || r == R_DB || r == R_DY || r == R_X || r == R_W || r == R_RM ||
           r == R_RV;
  default:
    return 0;
  }
}

static int role_required(const Call *k, enum role r) {
  switch (k->op) {
  case OP_FWD_TRAIN:
    return r == R_Y || r == R_X;
  case OP_FWD_EVAL:
    return r == R_Y || r == R_X || r == R_RM || r == R_RV;
  case OP_BWD_TRAIN:
    return r == R_DY || r == R_X || r == R_SM || r == R_SI;
  case OP_BWD_EVAL:
    return r == R_DY || r == R_RM || r == R_RV || (r == R_X && k->given[R_DW]);
  default:
    return 0;
  }
}

static int role_written(int op, enum role r) {
  switch (op) {
  case OP_FWD_TRAIN:
    return r == R_Y || r == R_SM || r == R_SI || r == R_RM || r == R_RV;
  case OP_FWD_EVAL:
    return r == R_Y;
  case OP_BWD_TRAIN:
  case OP_BWD_EVAL:
    return r == R_DX || r == R_DW || r == R_DB;
  default:
    return 0;
  }
}

/* a*b*...: 0 when the product fits in int64_t (result in *out), 1 when it overflows. */
static int mul_overflows(int64_t a, int64_t b, int64_t *out) {
  return __builtin_mul_overflow(a, b, out);
}

static int sizes_bad(const Call *k) { return k->n < 0 || k->c < 1 || k->s < 0; }

/* The mathematical n*c*s does not fit, or its float byte count does not: certainly an error. */
static int sizes_overflow(const Call *k) {
  int64_t nc, ncs, bytes;
  if (sizes_bad(k)) return 0;
  if (k->n == 0 || k->s == 0) return 0;
  return mul_overflows(k->n, k->c, &nc) || mul_overflows(nc, k->s, &ncs) ||
         mul_overflows(ncs, (int64_t)sizeof(float), &bytes);
}

/* A count and its byte size as doubles both fit in int64_t. */
static int count_fits(int64_t a, int64_t b) {
  int64_t count, bytes;
  return !mul_overflows(a, b, &count) && !mul_overflows(count, (int64_t)sizeof(double), &bytes);
}

/* Intermediate counts that a careful implementation may still refuse even when n*c*s fits (n*c or
 * the row stride c*s when the tensor is empty, their byte sizes, C doubles' byte size). */
static int sizes_may_overflow(const Call *k) {
  int64_t nc;
  if (sizes_bad(k)) return 0;
  return !count_fits(k->n, k->c) || !count_fits(k->c, k->s) || !count_fits(k->n, k->s) ||
         !count_fits(k->c, 1) || mul_overflows(k->n, k->c, &nc) || !count_fits(nc, k->s);
}

static int64_t element_count(const Call *k) { return k->n * k->c * k->s; }

static int eps_bad(double eps) { return isnan(eps) || isinf(eps) || eps < 0.0; }

static int factor_bad(double f) { return isnan(f) || f < 0.0 || f > 1.0; }

/* Bit sets of error codes: the faults this call certainly has, and ones it may be refused for. */
typedef struct {
  uint32_t certain;
  uint32_t possible;
} Faults;

static Faults expected_faults(const Call *k) {
  Faults f = {0, 0};
  for (int r = 0; r < R_COUNT; r++) {
    if (role_used(k->op, (enum role)r) && role_required(k, (enum role)r) && !k->given[r]) {
      f.certain |= 1u << BN_ERR_NULL_POINTER;
    }
  }
  if (k->op == OP_FWD_TRAIN && k->given[R_RM] != k->given[R_RV]) f.certain |= 1u << BN_ERR_NULL_POINTER;
  if (sizes_bad(k)) f.certain |= 1u << BN_ERR_BAD_SIZE;
  if (sizes_overflow(k)) f.certain |= 1u << BN_ERR_SIZE_OVERFLOW;
  if (sizes_may_overflow(k)) f.possible |= 1u << BN_ERR_SIZE_OVERFLOW;
  if (k->op == OP_FWD_TRAIN && !sizes_bad(k) && k->n == 1 && k->s == 1) {
    f.certain |= 1u << BN_ERR_TOO_FEW_VALUES;
  }
  if (k->op != OP_BWD_TRAIN && eps_bad(k->eps)) f.certain |= 1u << BN_ERR_BAD_EPS;
  if (k->op == OP_FWD_TRAIN && factor_bad(k->factor)) {
    /* Without running buffers the factor is unused: checking it anyway is allowed. */
    if (k->given[R_RM] && k->given[R_RV]) {
      f.certain |= 1u << BN_ERR_BAD_FACTOR;
    } else {
      f.possible |= 1u << BN_ERR_BAD_FACTOR;
    }
  }
  if (k->layout != BN_LAYOUT_NCS) f.certain |= 1u << BN_ERR_UNSUPPORTED_LAYOUT;
  return f;
}

static void buf_alloc(Buf *b, size_t count, size_t elem, size_t offset) {
  size_t bytes = count * elem;
  b->base = malloc(offset + bytes + 1);
  b->ptr = (char *)b->base + offset;
  b->bytes = bytes;
  b->offset = offset;
  b->snapshot = malloc(bytes + 1);
  /* Past-the-end bytes of the allocation are ours: hide them from the library. */
  POISON(b->ptr + bytes, 1);
  if (offset >= 8) POISON(b->base, 8);
}

static void buf_free(Buf *b) {
  if (b->base == NULL) return;
  UNPOISON(b->base, b->offset + b->bytes + 1);
  free(b->base);
  free(b->snapshot);
  memset(b, 0, sizeof *b);
}

static float *f32(Call *k, enum role r) { return k->given[r] ? (float *)k->buf[r].ptr : NULL; }
static double *f64(Call *k, enum role r) { return k->given[r] ? (double *)k->buf[r].ptr : NULL; }

/* Never put the canary into an input: it would look like an unwritten output after in-place use. */
static float scrub(float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits);
  return bits == CANARY_F32 ? NAN : v;
}

static float special_value(uint64_t *rng) {
  static const float table[] = {NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, FLT_TRUE_MIN,
                                -FLT_MIN, 0.0f, -0.0f, 1e38f};
  return table[next_random(rng) % (sizeof table / sizeof table[0])];
}

/* Tensor data (x, dy): mode picks one of the shapes of data that break kernels. */
static void fill_tensor(Call *k, enum role role, Reader *r) {
  if (!k->given[role]) return;
  float *t = (float *)k->buf[role].ptr;
  size_t count = k->buf[role].bytes / sizeof(float);
  uint8_t mode = take_u8(r) % 7;
  static const double means[] = {0.0, 3.7, 1e4 + 0.3, -1e6 - 0.7, 1e30, 1e-30};
  double mean = means[take_u8(r) % 6];
  double spread = (mean == 0.0 ? 1.0 : fabs(mean) * 1e-5) * (1.0 + (double)(take_u8(r) % 4));
  size_t s = k->allocated && k->s > 0 ? (size_t)k->s : 1, c = k->allocated ? (size_t)k->c : 1;
  for (size_t i = 0; i < count; i++) {
    switch (mode) {
    case 0:
      t[i] = (float)(mean + spread * normal(&k->rng));
      break;
    case 1:
      t[i] = bits_to_float((uint32_t)take_u64(r) ^ (uint32_t)next_random(&k->rng));
      break;
    case 2:
      t[i] = (float)((int)(next_random(&k->rng) % 7) - 3);
      break;
    case 3: /* constant per channel: variance 0 */
      t[i] = (float)(mean + (double)((i / s) % c));
      break;
    case 4:
      t[i] = (next_random(&k->rng) % 16 == 0) ? special_value(&k->rng) : (float)normal(&k->rng);
      break;
    case 5: /* near float overflow */
      t[i] = (float)((uniform(&k->rng) * 2.0 - 1.0) * 3e38);
      break;
    default:
      t[i] = (float)(1e-40 * normal(&k->rng)); /* subnormal */
      break;
    }
    t[i] = scrub(t[i]);
  }
}

static void fill_channels(Call *k, enum role role, Reader *r) {
  if (!k->given[role]) return;
  size_t count = k->buf[role].bytes / (role_is_double(role) ? sizeof(double) : sizeof(float));
  uint8_t mode = take_u8(r) % 6;
  for (size_t i = 0; i < count; i++) {
    double v;
    switch (mode) {
    case 0:
    case 1:
      v = normal(&k->rng) + (role == R_RV || role == R_SI ? 2.0 : 0.0);
      if (role == R_RV || role == R_SI) v = fabs(v) + 0.01;
      break;
    case 2:
      v = (double)((int)(next_random(&k->rng) % 3) - 1); /* -1, 0, 1: var 0 and negative var */
      break;
    case 3:
      v = special_value(&k->rng);
      break;
    case 4:
      v = bits_to_float((uint32_t)take_u64(r));
      break;
    default:
      v = 1e5 * normal(&k->rng);
      break;
    }
    if (role_is_double(role)) {
      ((double *)k->buf[role].ptr)[i] = v;
    } else {
      ((float *)k->buf[role].ptr)[i] = scrub((float)v);
    }
  }
}

static void fill_canary(Buf *b, int is_double) {
  if (is_double) {
    for (size_t i = 0; i < b->bytes / 8; i++) memcpy(b->ptr + 8 * i, &(uint64_t){CANARY_F64}, 8);
  } else {
    for (size_t i = 0; i < b->bytes / 4; i++) memcpy(b->ptr + 4 * i, &(uint32_t){CANARY_F32}, 4);
  }
}

/* save_mean/save_invstd for backward: usually the true statistics of x, else fuzzed values. */
static void fill_saved_stats(Call *k, Reader *r) {
  if (take_u8(r) % 4 == 0 || !k->allocated) {
    fill_channels(k, R_SM, r);
    fill_channels(k, R_SI, r);
    return;
  }
  const float *x = f32(k, R_X);
  int64_t m = k->n * k->s;
  if (m == 0) x = NULL; /* n may be huge when s == 0 */
  for (int64_t j = 0; j < k->c; j++) {
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < k->n && x; i++) {
      for (int64_t q = 0; q < k->s; q++) sum += x[(i * k->c + j) * k->s + q];
    }
    double mean = m > 0 && x ? sum / (double)m : 0.0;
    for (int64_t i = 0; i < k->n && x; i++) {
      for (int64_t q = 0; q < k->s; q++) {
        double d = x[(i * k->c + j) * k->s + q] - mean;
        sq += d * d;
      }
    }
    if (k->given[R_SM]) f64(k, R_SM)[j] = mean;
    if (k->given[R_SI]) f64(k, R_SI)[j] = 1.0 / sqrt((m > 0 ? sq / (double)m : 0.0) + 1e-5);
  }
}

static int32_t invoke(Call *k) {
  switch (k->op) {
  case OP_FWD_TRAIN:
    return bn_forward_train_f32(f32(k, R_Y), f64(k, R_SM), f64(k, R_SI), f32(k, R_RM), f32(k, R_RV),
                                f32(k, R_X), f32(k, R_W), f32(k, R_B), k->n, k->c, k->s, k->layout,
                                k->eps, k->factor);
  case OP_FWD_EVAL:
    return bn_forward_eval_f32(f32(k, R_Y), f32(k, R_X), f32(k, R_W), f32(k, R_B), f32(k, R_RM),
                               f32(k, R_RV), k->n, k->c, k->s, k->layout, k->eps);
  case OP_BWD_TRAIN:
    return bn_backward_train_f32(f32(k, R_DX), f32(k, R_DW), f32(k, R_DB), f32(k, R_DY), f32(k, R_X),
                                 f32(k, R_W), f64(k, R_SM), f64(k, R_SI), k->n, k->c, k->s,
                                 k->layout);
  default:
    return bn_backward_eval_f32(f32(k, R_DX), f32(k, R_DW), f32(k, R_DB), f32(k, R_DY), f32(k, R_X),
                                f32(k, R_W), f32(k, R_RM), f32(k, R_RV), k->n, k->c, k->s,
                                k->layout, k->eps);
  }
}

/* ---- reference checks on success, one channel at a time ---- */

static double snap_f32(const Call *k, enum role r, int64_t i) {
  float v;
  memcpy(&v, k->buf[r].snapshot + 4 * i, 4);
  return v;
}

static double snap_f64(const Call *k, enum role r, int64_t i) {
  double v;
  memcpy(&v, k->buf[r].snapshot + 8 * i, 8);
  return v;
}

static int moderate(double v) { return isfinite(v) && fabs(v) <= MODERATE; }

static double param_or(const Call *k, enum role r, int64_t j, double absent) {
  return k->given[r] ? snap_f32(k, r, j) : absent;
}

/* All values of one channel of a tensor snapshot are moderate. */
static int channel_moderate(const Call *k, enum role r, int64_t j) {
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      if (!moderate(snap_f32(k, r, (i * k->c + j) * k->s + q))) return 0;
    }
  }
  return 1;
}

static int64_t at(const Call *k, int64_t i, int64_t j, int64_t q) { return (i * k->c + j) * k->s + q; }

static void expect_close(const Call *k, double got, double want, double tol) {
  CHECK(k, BN_OK, isfinite(got));
  if (!(fabs(got - want) <= tol)) {
    fprintf(stderr, "got %.17g want %.17g tol %.3g\n", got, want, tol);
    CHECK(k, BN_OK, fabs(got - want) <= tol);
  }
}

/*
 * Error bound of a correct float kernel on xhat = (x - mean) * invstd: the subtraction may round
 * (mean rounded to float first, subnormals), and mean and invstd carry their own errors.
 */
static double xhat_error(double x, double mean, double invstd, double mean_tol, double invstd_tol) {
  return (8.0 * FLT_EPSILON * (fabs(x) + fabs(mean)) + 2.0 * FLT_TRUE_MIN + mean_tol) * fabs(invstd) +
         fabs(x - mean) * invstd_tol;
}

/* Error bound of a sum of m terms accumulated in double (or pairwise in float) then rounded. */
static double sum_error(int64_t m, double abs_sum) {
  return (4.0 * FLT_EPSILON + 4.0 * (double)m * DBL_EPSILON) * abs_sum + 4.0 * FLT_MIN;
}

static void check_forward_train(Call *k) {
  int64_t m = k->n * k->s;
  const float *y = f32(k, R_Y);
  for (int64_t j = 0; j < k->c; j++) {
    double w = param_or(k, R_W, j, 1.0), b = param_or(k, R_B, j, 0.0);
    if (m == 0) {
      if (k->given[R_SM]) CHECK(k, BN_OK, f64(k, R_SM)[j] == 0.0);
      if (k->given[R_SI]) CHECK(k, BN_OK, f64(k, R_SI)[j] == 0.0);
      continue;
    }
    int ok = channel_moderate(k, R_X, j) && moderate(w) && moderate(b) && k->eps >= MIN_VAR_EPS;
    if (k->given[R_RM]) ok = ok && moderate(snap_f32(k, R_RM, j)) && moderate(snap_f32(k, R_RV, j));
    if (!ok) continue;
    double sum = 0.0, sq = 0.0, maxabs = 0.0;
    for (int64_t i = 0; i < k->n; i++) {
      for (int64_t q = 0; q < k->s; q++) {
        sum += snap_f32(k, R_X, at(k, i, j, q));
        maxabs = fmax(maxabs, fabs(snap_f32(k, R_X, at(k, i, j, q))));
      }
    }
    double mean = sum / (double)m;
    for (int64_t i = 0; i < k->n; i++) {
      for (int64_t q = 0; q < k->s; q++) {
        double d = snap_f32(k, R_X, at(k, i, j, q)) - mean;
        sq += d * d;
      }
    }
    double var = sq / (double)m;
    double invstd = 1.0 / sqrt(var + k->eps);
    /* Statistics are accumulated in double (header): any summation order stays within these. */
    double mean_tol = 4.0 * (double)m * DBL_EPSILON * maxabs + DBL_TRUE_MIN;
    double var_tol = 2.0 * mean_tol * sqrt(var) + mean_tol * mean_tol + 4.0 * (double)m * DBL_EPSILON * var;
    double invstd_tol = invstd * (var_tol / (var + k->eps) + 1e-12);
    if (k->given[R_SM]) expect_close(k, f64(k, R_SM)[j], mean, mean_tol);
    if (k->given[R_SI]) expect_close(k, f64(k, R_SI)[j], invstd, invstd_tol);
    for (int64_t i = 0; i < k->n; i++) {
      for (int64_t q = 0; q < k->s; q++) {
        double x = snap_f32(k, R_X, at(k, i, j, q)), xhat = (x - mean) * invstd;
        double tol = fabs(w) * xhat_error(x, mean, invstd, mean_tol, invstd_tol) +
                     8.0 * FLT_EPSILON * (fabs(xhat * w) + fabs(b)) + 4.0 * FLT_MIN;
        expect_close(k, y[at(k, i, j, q)], xhat * w + b, tol);
      }
    }
    if (k->given[R_RM]) {
      double f = k->factor, rm = snap_f32(k, R_RM, j), rv = snap_f32(k, R_RV, j);
      double unbiased = var * (double)m / (double)(m - 1);
      expect_close(k, f32(k, R_RM)[j], (1.0 - f) * rm + f * mean,
                   4.0 * FLT_EPSILON * (fabs((1.0 - f) * rm) + fabs(f * mean)) + f * mean_tol + 4.0 * FLT_MIN);
      expect_close(k, f32(k, R_RV)[j], (1.0 - f) * rv + f * unbiased,
                   4.0 * FLT_EPSILON * (fabs((1.0 - f) * rv) + fabs(f * unbiased)) + 2.0 * f * var_tol +
                       4.0 * FLT_MIN);
    }
  }
}

/* 1/sqrt(running_var+eps) when it is safely finite, else -1. */
static double eval_invstd(const Call *k, int64_t j) {
  double rv = snap_f32(k, R_RV, j);
  if (!moderate(rv) || rv < 0.0 || rv + k->eps < MIN_VAR_EPS) return -1.0;
  return 1.0 / sqrt(rv + k->eps);
}

static void check_forward_eval(Call *k) {
  const float *y = f32(k, R_Y);
  if (k->n * k->s == 0) return; /* n may be huge when s == 0 */
  for (int64_t j = 0; j < k->c; j++) {
    double w = param_or(k, R_W, j, 1.0), b = param_or(k, R_B, j, 0.0), rm = snap_f32(k, R_RM, j);
    double invstd = eval_invstd(k, j);
    if (invstd < 0.0 || !moderate(w) || !moderate(b) || !moderate(rm)) continue;
    for (int64_t i = 0; i < k->n; i++) {
      for (int64_t q = 0; q < k->s; q++) {
        double x = snap_f32(k, R_X, at(k, i, j, q)), xhat = (x - rm) * invstd;
        if (!moderate(x)) continue; /* eval is elementwise: only this element may be non-finite */
        double tol = fabs(w) * xhat_error(x, rm, invstd, 0.0, 8.0 * FLT_EPSILON * invstd) +
                     8.0 * FLT_EPSILON * (fabs(xhat * w) + fabs(b)) + 4.0 * FLT_MIN;
        expect_close(k, y[at(k, i, j, q)], xhat * w + b, tol);
      }
    }
  }
}

/* Backward in both modes: mean/invstd are the saved or the running statistics. */
static void check_backward(Call *k, int64_t j, double mean, double invstd) {
  int64_t m = k->n * k->s;
  double w = param_or(k, R_W, j, 1.0), ai = fabs(invstd);
  int need_x = k->op == OP_BWD_TRAIN || k->given[R_DW];
  if (m == 0) {
    if (k->given[R_DW]) CHECK(k, BN_OK, f32(k, R_DW)[j] == 0.0f);
    if (k->given[R_DB]) CHECK(k, BN_OK, f32(k, R_DB)[j] == 0.0f);
    return;
  }
  if (!moderate(w) || !moderate(mean) || !moderate(invstd) || !channel_moderate(k, R_DY, j)) return;
  if (need_x && !channel_moderate(k, R_X, j)) return;
  double sum_dy = 0.0, sum_dy_xhat = 0.0, abs_dy = 0.0, abs_dy_xhat = 0.0, dw_tol = 4.0 * FLT_MIN;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      double dy = snap_f32(k, R_DY, at(k, i, j, q));
      sum_dy += dy;
      abs_dy += fabs(dy);
      if (need_x) {
        double x = snap_f32(k, R_X, at(k, i, j, q)), xhat = (x - mean) * invstd;
        sum_dy_xhat += dy * xhat;
        abs_dy_xhat += fabs(dy * xhat);
        dw_tol += fabs(dy) * xhat_error(x, mean, invstd, 0.0, 0.0);
      }
    }
  }
  /* Beyond these magnitudes the float results may legitimately overflow. */
  double xhat_max = 2.0 * MODERATE * ai;
  if (abs_dy > 1e30 || abs_dy_xhat > 1e30 || fabs(w) * ai * (abs_dy + xhat_max * abs_dy_xhat) > 1e30) return;
  double db_tol = sum_error(m, abs_dy);
  dw_tol += sum_error(m, abs_dy_xhat);
  if (k->given[R_DB]) expect_close(k, f32(k, R_DB)[j], sum_dy, db_tol);
  if (k->given[R_DW]) expect_close(k, f32(k, R_DW)[j], sum_dy_xhat, dw_tol);
  if (!k->given[R_DX]) return;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      double dy = snap_f32(k, R_DY, at(k, i, j, q)), want, tol;
      if (k->op == OP_BWD_TRAIN) {
        double x = snap_f32(k, R_X, at(k, i, j, q)), xhat = (x - mean) * invstd;
        double xhat_err = xhat_error(x, mean, invstd, 0.0, 0.0);
        double mm = (double)m;
        want = w * invstd * (dy - sum_dy / mm - xhat * sum_dy_xhat / mm);
        tol = fabs(w) * ai *
                  (8.0 * FLT_EPSILON * (fabs(dy) + fabs(sum_dy) / mm + fabs(xhat * sum_dy_xhat) / mm) +
                   db_tol / mm + (xhat_err * fabs(sum_dy_xhat) + fabs(xhat) * dw_tol) / mm) +
              4.0 * FLT_MIN;
      } else {
        want = dy * w * invstd;
        tol = 8.0 * FLT_EPSILON * fabs(want) + 4.0 * FLT_MIN;
      }
      expect_close(k, f32(k, R_DX)[at(k, i, j, q)], want, tol);
    }
  }
}

static void check_values(Call *k) {
  switch (k->op) {
  case OP_FWD_TRAIN:
    check_forward_train(k);
    break;
  case OP_FWD_EVAL:
    check_forward_eval(k);
    break;
  case OP_BWD_TRAIN:
    for (int64_t j = 0; j < k->c; j++) check_backward(k, j, snap_f64(k, R_SM, j), snap_f64(k, R_SI, j));
    break;
  default:
    for (int64_t j = 0; j < k->c; j++) {
      double invstd = eval_invstd(k, j);
      if (invstd >= 0.0) check_backward(k, j, snap_f32(k, R_RM, j), invstd);
    }
    break;
  }
}

/* Every given output holds no canary (it was written in full) and every input is unchanged. */
static void check_written_and_inputs_kept(Call *k) {
  for (int r = 0; r < R_COUNT; r++) {
    if (!k->given[r]) continue;
    Buf *b = &k->buf[r];
    int aliased_output = k->in_place && ((k->op <= OP_FWD_EVAL && r == R_X) || (k->op >= OP_BWD_TRAIN && r == R_DY));
    if (role_written(k->op, (enum role)r)) {
      int is_double = role_is_double((enum role)r);
      for (size_t i = 0; i < b->bytes; i += is_double ? 8 : 4) {
        uint64_t bits = 0;
        memcpy(&bits, b->ptr + i, is_double ? 8 : 4);
        CHECK(k, BN_OK, bits != (is_double ? CANARY_F64 : CANARY_F32));
      }
    } else if (!aliased_output) {
      CHECK(k, BN_OK, memcmp(b->ptr, b->snapshot, b->bytes) == 0);
    }
  }
  /* Empty batch in training: running statistics are left alone. */
  if (k->op == OP_FWD_TRAIN && k->n * k->s == 0 && k->given[R_RM] && k->given[R_RV]) {
    CHECK(k, BN_OK, memcmp(k->buf[R_RM].ptr, k->buf[R_RM].snapshot, k->buf[R_RM].bytes) == 0);
    CHECK(k, BN_OK, memcmp(k->buf[R_RV].ptr, k->buf[R_RV].snapshot, k->buf[R_RV].bytes) == 0);
  }
}

/* Running stats are both inputs and outputs: an M == 0 call must not write them, M > 0 must. */
static int role_gets_canary(const Call *k, enum role r) {
  if (!role_written(k->op, r)) return 0;
  if (r == R_RM || r == R_RV) return 0;
  if (k->in_place && ((k->op <= OP_FWD_EVAL && r == R_Y) || (k->op >= OP_BWD_TRAIN && r == R_DX))) return 0;
  return 1;
}

static void run_kernel_call(Call *k, Reader *r) {
  uint8_t size_class = take_u8(r) % 8;
  if (size_class < 5) {
    k->n = take_u8(r) % 7;
    k->c = 1 + take_u8(r) % 5;
    k->s = take_u8(r) % 7;
  } else if (size_class == 5) { /* often past the library's parallel threshold (65536) */
    k->n = 1 + take_u8(r) % 8;
    k->c = 1 + take_u8(r) % 4;
    k->s = 2048 + (int64_t)(take_u8(r) | (take_u8(r) << 8)) % 8192;
  } else {
    k->n = take_size(r);
    k->c = take_size(r);
    k->s = take_size(r);
  }
  uint8_t nulls = take_u8(r), flags = take_u8(r);
  k->eps = take_eps(r);
  k->factor = take_factor(r);
  k->layout = take_layout(r);
  k->rng = take_u64(r);

  int64_t count = 0;
  k->allocated = !sizes_bad(k) && !sizes_overflow(k) && !sizes_may_overflow(k) && k->c <= MAX_CHANNELS &&
                 (count = element_count(k)) <= MAX_ELEMENTS;
  size_t tensor_len = k->allocated ? (size_t)count : PROBE_ELEMENTS;
  size_t channel_len = k->allocated ? (size_t)k->c : PROBE_ELEMENTS;
  int null_required = (flags & 7) == 0; /* one call in 8 drops a required pointer */
  int role_index = 0;
  for (int role = 0; role < R_COUNT; role++) {
    if (!role_used(k->op, (enum role)role)) continue;
    int optional_null = (nulls >> (role_index++ % 8)) & 1;
    k->given[role] = 1;
    if (optional_null && (nulls & 0x80)) k->given[role] = 0; /* half the calls keep everything */
    if (null_required && (int)(flags >> 3) % R_COUNT == role) k->given[role] = 0;
  }
  for (int role = 0; role < R_COUNT; role++) { /* requirements depend on what is given (x/dweight) */
    if (k->given[role] || !role_used(k->op, (enum role)role)) continue;
    if (role_required(k, (enum role)role) && !null_required) k->given[role] = 1;
  }
  size_t offset = (size_t)((flags >> 6) & 3) * 4; /* 0, 4, 8 or 12 bytes: off SIMD alignment */
  for (int role = 0; role < R_COUNT; role++) {
    if (!k->given[role]) continue;
    size_t elem = role_is_double((enum role)role) ? sizeof(double) : sizeof(float);
    buf_alloc(&k->buf[role], role_is_tensor((enum role)role) ? tensor_len : channel_len, elem,
              role_is_double((enum role)role) ? offset & 8 : offset);
  }
  k->in_place = (flags & 0x20) != 0;
  enum role out = k->op <= OP_FWD_EVAL ? R_Y : R_DX, in = k->op <= OP_FWD_EVAL ? R_X : R_DY;
  if (!(k->given[out] && k->given[in])) k->in_place = 0;

  fill_tensor(k, R_X, r);
  fill_tensor(k, R_DY, r);
  fill_channels(k, R_W, r);
  fill_channels(k, R_B, r);
  fill_channels(k, R_RM, r);
  fill_channels(k, R_RV, r);
  if (k->op == OP_BWD_TRAIN) fill_saved_stats(k, r);
  for (int role = 0; role < R_COUNT; role++) {
    if (k->given[role] && role_gets_canary(k, (enum role)role)) {
      fill_canary(&k->buf[role], role_is_double((enum role)role));
    }
  }
  if (k->in_place) {
    buf_free(&k->buf[out]);
    k->buf[out] = k->buf[in];
    k->buf[out].base = NULL; /* owned by the input's entry */
  }
  for (int role = 0; role < R_COUNT; role++) {
    if (k->given[role]) memcpy(k->buf[role].snapshot, k->buf[role].ptr, k->buf[role].bytes);
  }

  Faults faults = expected_faults(k);
  if (!k->allocated && faults.certain == 0) return; /* valid but too large to back with memory */

  int32_t status = invoke(k);
  CHECK(k, status, status >= 0 && status <= BN_ERR_BAD_THREADS);
  CHECK(k, status, strlen(bn_status_message(status)) > 0);
  if (faults.certain != 0) {
    CHECK(k, status, status != BN_OK && (((faults.certain | faults.possible) >> status) & 1));
  } else {
    CHECK(k, status, status == BN_OK || ((faults.possible >> status) & 1));
  }
  if (status != BN_OK) {
    for (int role = 0; role < R_COUNT; role++) {
      if (k->given[role]) CHECK(k, status, memcmp(k->buf[role].ptr, k->buf[role].snapshot, k->buf[role].bytes) == 0);
    }
    return;
  }
  check_written_and_inputs_kept(k);
  check_values(k);
}

static void free_call(Call *k) {
  for (int role = 0; role < R_COUNT; role++) buf_free(&k->buf[role]);
}

static void run_threads_call(Reader *r) {
  static const int32_t table[] = {1, 2, 3, 4, 0, -1, INT32_MIN, 1};
  int32_t before = bn_get_num_threads();
  int32_t want = table[take_u8(r) % 8];
  int32_t status = bn_set_num_threads(want);
  Call k = {.op = OP_THREADS, .n = want};
  if (want < 1) {
    CHECK(&k, status, status == BN_ERR_BAD_THREADS);
    CHECK(&k, status, bn_get_num_threads() == before);
  } else {
    CHECK(&k, status, status == BN_OK);
    CHECK(&k, status, bn_get_num_threads() == want);
  }
}

static void run_message_call(Reader *r) {
  int32_t code = (int32_t)(uint32_t)take_u64(r);
  const char *text = bn_status_message(code);
  Call k = {.op = OP_MESSAGE, .n = code};
  CHECK(&k, code, text != NULL && strlen(text) > 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  default_threads = bn_get_num_threads();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader r = {data, size};
  bn_set_num_threads(default_threads);
  for (int i = 0; i < MAX_CALLS && r.left > 0; i++) {
    int op = take_u8(&r) % OP_COUNT;
    if (op == OP_THREADS) {
      run_threads_call(&r);
    } else if (op == OP_MESSAGE) {
      run_message_call(&r);
    } else {
      Call k;
      memset(&k, 0, sizeof k);
      k.op = op;
      run_kernel_call(&k, &r);
      free_call(&k);
    }
  }
  return 0;
}
