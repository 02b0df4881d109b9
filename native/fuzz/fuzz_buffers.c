/*
 * Buffers of one fuzzed call: allocated with their exact size (AddressSanitizer sees any access
 * past them), outputs filled with canaries (bit patterns a correct kernel never writes), inputs
 * filled with the shapes of data that break kernels, and snapshots to compare against.
 */
#include "fuzz.h"

#include <float.h>
#include <math.h>
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

/* Signalling NaNs: arithmetic never produces them, and inputs are scrubbed of them (else an
 * in-place output could look unwritten). */
#define CANARY_F32 0x7fa5a5a5u
#define CANARY_BF16 0x7fa5u
#define CANARY_F16 0x7d5au
#define CANARY_64 0x7ff4a5a5a5a5a5a5ull

enum kind role_kind(enum role r) {
  switch (r) {
  case R_Y: case R_X: case R_Z: case R_DY: case R_DX: case R_DZ:
    return K_TENSOR;
  case R_SM: case R_SI: case R_MEAN: case R_M2: case R_SUM_DY: case R_SUM_DYX:
    return K_F64;
  case R_TOTAL:
    return K_I64_ONE;
  case R_COUNTS:
    return K_I64_SHARDS;
  case R_MEANS: case R_M2S:
    return K_F64_SHARDS;
  default:
    return K_F32;
  }
}

/* Bytes per tensor element; an invalid dtype gets the widest, which is never touched. */
size_t elem_size(int32_t dtype) { return dtype == BN_BF16 || dtype == BN_F16 ? 2 : 4; }

static size_t role_elem(const Call *k, enum role r) {
  enum kind kd = role_kind(r);
  if (kd == K_TENSOR) return elem_size(k->dtype);
  return kd == K_F32 ? 4 : 8;
}

static uint64_t canary_bits(const Call *k, enum role r) {
  if (role_kind(r) != K_TENSOR) return role_elem(k, r) == 4 ? CANARY_F32 : CANARY_64;
  if (k->dtype == BN_BF16) return CANARY_BF16;
  return k->dtype == BN_F16 ? CANARY_F16 : CANARY_F32;
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

// tensors (N,C,S), per-channel arrays (C), partials (k) and (k,C); offset misaligns them.
void buffers_alloc(Call *k, size_t tensor_len, size_t channel_len, size_t shard_len, size_t offset) {
  for (int r = 0; r < R_NUM; r++) {
    if (!k->given[r]) continue;
    size_t elem = role_elem(k, (enum role)r), len = channel_len, off = offset;
    switch (role_kind((enum role)r)) {
    case K_TENSOR:
      len = tensor_len;
      off = elem == 2 ? offset / 2 : offset;
      break;
    case K_I64_ONE:
      len = 1;
      break;
    case K_I64_SHARDS:
      len = shard_len;
      break;
    case K_F64_SHARDS:
      len = k->allocated ? shard_len * channel_len : PROBE_ELEMENTS;
      break;
    default:
      break;
    }
    buf_alloc(&k->buf[r], len, elem, elem == 8 ? offset & 8 : off);
  }
}

void buffers_share(Call *k, enum role to, enum role from) {
  Buf *b = &k->buf[to];
  UNPOISON(b->base, b->offset + b->bytes + 1);
  free(b->base);
  free(b->snapshot);
  *b = k->buf[from];
  b->base = NULL; /* owned by `from` */
  k->alias[to] = (int)from;
}

void buffers_free(Call *k) {
  for (int r = 0; r < R_NUM; r++) {
    Buf *b = &k->buf[r];
    if (b->base == NULL) continue;
    UNPOISON(b->base, b->offset + b->bytes + 1);
    free(b->base);
    free(b->snapshot);
    memset(b, 0, sizeof *b);
  }
}

static float bits_to_float(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static double special_value(uint64_t *rng) {
  static const float table[] = {NAN, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, FLT_TRUE_MIN,
                                -FLT_MIN, 0.0f, -0.0f, 1e38f, 65504.0f, 70000.0f};
  return table[next_random(rng) % (sizeof table / sizeof table[0])];
}

/* Stores element i of a tensor, never as the canary. */
static void put_tensor(Call *k, enum role role, size_t i, double v, int raw, uint32_t bits) {
  char *p = k->buf[role].ptr;
  size_t w = elem_size(k->dtype);
  if (raw) {
    memcpy(p + i * w, &bits, w); /* little-endian: the low bytes */
  } else {
    encode(k->dtype, p, (int64_t)i, v);
  }
  uint32_t now = 0;
  memcpy(&now, p + i * w, w);
  if (now == (uint32_t)canary_bits(k, role)) encode(k->dtype, p, (int64_t)i, NAN);
}

/* Tensor data (x, z, dy, y): mode picks one of the shapes of data that break kernels. */
static void fill_tensor(Call *k, enum role role, Reader *r) {
  if (!k->given[role] || k->alias[role] >= 0) return;
  size_t count = k->buf[role].bytes / elem_size(k->dtype);
  uint8_t mode = take_u8(r) % 7;
  static const double means[] = {0.0, 3.7, 1e4 + 0.3, -1e6 - 0.7, 1e30, 1e-30};
  double mean = means[take_u8(r) % 6];
  double spread = (mean == 0.0 ? 1.0 : fabs(mean) * 1e-5) * (1.0 + (double)(take_u8(r) % 4));
  for (size_t i = 0; i < count; i++) {
    double v = 0.0;
    int raw = 0;
    uint32_t bits = 0;
    switch (mode) {
    case 0:
      v = mean + spread * normal(&k->rng);
      break;
    case 1:
      raw = 1;
      bits = (uint32_t)take_u64(r) ^ (uint32_t)next_random(&k->rng);
      break;
    case 2:
      v = (double)((int)(next_random(&k->rng) % 7) - 3);
      break;
    case 3: /* constant per channel: variance 0 */
      v = mean + (double)(k->allocated ? channel_of(k, (int64_t)i) : 0);
      break;
    case 4:
      v = (next_random(&k->rng) % 16 == 0) ? special_value(&k->rng) : normal(&k->rng);
      break;
    case 5: /* near float overflow */
      v = (uniform(&k->rng) * 2.0 - 1.0) * 3e38;
      break;
    default:
      v = 1e-40 * normal(&k->rng); /* subnormal */
      break;
    }
    put_tensor(k, role, i, v, raw, bits);
  }
}

static void put_channel(Call *k, enum role role, size_t i, double v) {
  if (role_elem(k, role) == 8) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    if (bits == CANARY_64) v = NAN;
    memcpy(k->buf[role].ptr + 8 * i, &v, 8);
  } else {
    float f = (float)v;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if (bits == CANARY_F32) f = NAN;
    memcpy(k->buf[role].ptr + 4 * i, &f, 4);
  }
}

/* Per-channel data; variances, inverse deviations and m2 are positive in the common modes. */
static void fill_channels(Call *k, enum role role, Reader *r) {
  if (!k->given[role]) return;
  size_t count = k->buf[role].bytes / role_elem(k, role);
  int positive = role == R_RV || role == R_SI || role == R_M2 || role == R_M2S;
  uint8_t mode = take_u8(r) % 6;
  for (size_t i = 0; i < count; i++) {
    double v;
    switch (mode) {
    case 0:
    case 1:
      v = normal(&k->rng) + (positive ? 2.0 : 0.0);
      if (positive) v = fabs(v) + 0.01;
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
    put_channel(k, role, i, v);
  }
}

// mean, m2 are (C): the moments of channel j of x, (N,C,S), in double.
static void moments_of_x(const Call *k, int64_t j, double *mean, double *m2) {
  int64_t m = k->n * k->s;
  double sum = 0.0, sq = 0.0;
  *mean = *m2 = 0.0;
  if (m == 0 || !k->given[R_X]) return; /* n may be huge when s == 0 */
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) sum += decode(k->dtype, k->buf[R_X].ptr, at(k, i, j, q));
  }
  *mean = sum / (double)m;
  for (int64_t i = 0; i < k->n; i++) {
    for (int64_t q = 0; q < k->s; q++) {
      double d = decode(k->dtype, k->buf[R_X].ptr, at(k, i, j, q)) - *mean;
      sq += d * d;
    }
  }
  *m2 = sq;
}

/* save_mean/save_invstd for backward: usually the true statistics of x, else fuzzed values. */
static void fill_saved_stats(Call *k, Reader *r) {
  if (take_u8(r) % 4 == 0 || !k->allocated) {
    fill_channels(k, R_SM, r);
    fill_channels(k, R_SI, r);
    return;
  }
  int64_t m = k->n * k->s;
  for (int64_t j = 0; j < k->c; j++) {
    double mean, m2;
    moments_of_x(k, j, &mean, &m2);
    if (k->given[R_SM]) put_channel(k, R_SM, (size_t)j, mean);
    if (k->given[R_SI]) put_channel(k, R_SI, (size_t)j, 1.0 / sqrt((m > 0 ? m2 / (double)m : 0.0) + 1e-5));
  }
}

/* mean/m2 of bn_forward_from_stats: the moments of this shard scaled to the total count (other
 * shards alike), or fuzzed values. */
static void fill_merged_stats(Call *k, Reader *r) {
  if (take_u8(r) % 4 == 0 || !k->allocated) {
    fill_channels(k, R_MEAN, r);
    fill_channels(k, R_M2, r);
    return;
  }
  int64_t m = k->n * k->s;
  double scale = m > 0 ? (double)k->count / (double)m : 1.0;
  for (int64_t j = 0; j < k->c; j++) {
    double mean, m2;
    moments_of_x(k, j, &mean, &m2);
    if (k->given[R_MEAN]) put_channel(k, R_MEAN, (size_t)j, mean);
    if (k->given[R_M2]) put_channel(k, R_M2, (size_t)j, m2 * scale);
  }
}

/* sum_dy/sum_dy_xhat of bn_backward_from_sums: this shard's sums (whole batch when count is
 * n*s), or fuzzed values. */
static void fill_sums(Call *k, Reader *r) {
  int fused = k->act == BN_ACT_RELU || k->act == BN_ACT_ADD_RELU;
  int inputs = k->given[R_SM] && k->given[R_SI] && k->given[R_DY] && k->given[R_X] &&
               (k->given[R_Y] || !fused);
  if (take_u8(r) % 4 == 0 || !k->allocated || !inputs) {
    fill_channels(k, R_SUM_DY, r);
    fill_channels(k, R_SUM_DYX, r);
    return;
  }
  buffers_snapshot(k); /* the reference reads dy, y, x and the saved stats from snapshots */
  for (int64_t j = 0; j < k->c; j++) {
    double mean = snap_f64(k, R_SM, j), invstd = snap_f64(k, R_SI, j), sd = 0.0, sdx = 0.0;
    for (int64_t i = 0; i < k->n && k->n * k->s > 0; i++) {
      for (int64_t q = 0; q < k->s; q++) {
        int64_t e = at(k, i, j, q);
        double g = grad_in(k, e), x = decode(k->dtype, k->buf[R_X].ptr, e);
        sd += g;
        sdx += g * (x - mean) * invstd;
      }
    }
    if (k->given[R_SUM_DY]) put_channel(k, R_SUM_DY, (size_t)j, sd);
    if (k->given[R_SUM_DYX]) put_channel(k, R_SUM_DYX, (size_t)j, sdx);
  }
}

/* Partial counts of bn_merge_stats: small ones with zeros, large ones, negative or raw. */
static void fill_counts(Call *k, Reader *r) {
  if (!k->given[R_COUNTS]) return;
  int64_t *counts = (int64_t *)k->buf[R_COUNTS].ptr;
  size_t len = k->buf[R_COUNTS].bytes / 8;
  uint8_t mode = take_u8(r) % 8;
  for (size_t i = 0; i < len; i++) {
    uint64_t u = next_random(&k->rng);
    int64_t v = (int64_t)(u % 6);
    if (mode == 5) v = (int64_t)(u % 2000000);
    if (mode == 6 && u % 4 == 0) v = (u % 8 == 0) ? -1 - (int64_t)(u % 3) : INT64_MAX - (int64_t)(u % 5);
    if (mode == 7) v = (int64_t)take_u64(r);
    if ((uint64_t)v == CANARY_64) v = 0;
    memcpy(counts + i, &v, 8);
  }
}

static void fill_inputs(Call *k, Reader *r) {
  fill_tensor(k, R_X, r);
  fill_tensor(k, R_DY, r);
  fill_channels(k, R_W, r);
  fill_channels(k, R_B, r);
  fill_channels(k, R_RM, r);
  fill_channels(k, R_RV, r);
  if (role_used(k->op, R_SM) && !role_is_output(k->op, R_SM)) fill_saved_stats(k, r);
  if (role_used(k->op, R_Z)) fill_tensor(k, R_Z, r);
  if (role_used(k->op, R_Y) && !role_is_output(k->op, R_Y)) fill_tensor(k, R_Y, r);
  if (role_used(k->op, R_MEAN) && !role_is_output(k->op, R_MEAN)) fill_merged_stats(k, r);
  if (role_used(k->op, R_SUM_DY) && !role_is_output(k->op, R_SUM_DY)) fill_sums(k, r);
  fill_counts(k, r);
  fill_channels(k, R_MEANS, r);
  fill_channels(k, R_M2S, r);
}

/* The fill order is part of the input format: the committed seeds rely on x, dy, weight, bias,
 * running stats and saved stats coming first. */
void buffers_fill(Call *k, Reader *r) { fill_inputs(k, r); }

/* Running stats are both inputs and outputs: whether they are written is checked by value. */
void buffers_canary(Call *k) {
  for (int r = 0; r < R_NUM; r++) {
    if (!k->given[r] || k->alias[r] >= 0 || !role_is_output(k->op, (enum role)r)) continue;
    if (r == R_RM || r == R_RV) continue;
    size_t w = role_elem(k, (enum role)r);
    uint64_t bits = canary_bits(k, (enum role)r);
    for (size_t i = 0; i < k->buf[r].bytes / w; i++) memcpy(k->buf[r].ptr + w * i, &bits, w);
  }
}

void buffers_snapshot(Call *k) {
  for (int r = 0; r < R_NUM; r++) {
    if (k->given[r]) memcpy(k->buf[r].snapshot, k->buf[r].ptr, k->buf[r].bytes);
  }
}

int buffer_unchanged(const Call *k, enum role r) {
  return memcmp(k->buf[r].ptr, k->buf[r].snapshot, k->buf[r].bytes) == 0;
}

/* Some element still holds the canary: the buffer was not written in full. */
int buffer_has_canary(const Call *k, enum role r) {
  size_t w = role_elem(k, r);
  uint64_t canary = canary_bits(k, r);
  for (size_t i = 0; i < k->buf[r].bytes / w; i++) {
    uint64_t bits = 0;
    memcpy(&bits, k->buf[r].ptr + w * i, w);
    if (bits == canary) return 1;
  }
  return 0;
}
