/*
 * libFuzzer harness for libbatchnorm: every entry point, fuzzed sizes, enums, flags and scalars.
 *
 * The input is read as a small program of up to MAX_CALLS calls (bytes past the end read as 0).
 * Each call picks an entry point, sizes (small valid ones, a medium size that takes the
 * parallel paths, or raw 64-bit values: negative, huge, overflowing), which pointers are NULL,
 * eps and factor (normal values, edge values, NaN/Inf/negative, raw bit patterns), the layout,
 * in-place use, buffer misalignment and how the data is filled; the generic entry points also
 * take the element type, the epilogue, the flags, the total count of the phases and k.
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
 *
 * Bytes of one kernel call, in order: op, size class and sizes, null choices, a byte of
 * harness flags (dropping a required pointer, misalignment, in-place), eps, factor, layout, an
 * 8-byte data seed; then for the generic entry points dtype, act, flags, a byte of aliasing
 * choices, the total count and k; then the fill modes of the buffers.
 */
#include "fuzz.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CALLS 6

static int32_t default_threads = 1;

void fuzz_fail(const Call *k, int32_t status, const char *cond, const char *file, int line) {
  fprintf(stderr, "contract violated: %s (%s:%d)\n", cond, file, line);
  fprintf(stderr, "call: op=%d n=%lld c=%lld s=%lld layout=%d dtype=%d act=%d flags=%d eps=%a "
                  "factor=%a count=%lld k=%lld allocated=%d status=%d threads=%d\n  given:",
          k->op, (long long)k->n, (long long)k->c, (long long)k->s, k->layout, k->dtype, k->act,
          k->flags, k->eps, k->factor, (long long)k->count, (long long)k->k, k->allocated, status,
          bn_get_num_threads());
  for (int r = 0; r < R_NUM; r++) {
    if (!k->given[r]) continue;
    fprintf(stderr, " %d(+%zu)", r, k->buf[r].offset);
    if (k->alias[r] >= 0) fprintf(stderr, "=%d", k->alias[r]);
  }
  fprintf(stderr, "\n");
  abort();
}

uint8_t take_u8(Reader *r) {
  if (r->left == 0) return 0;
  r->left--;
  return *r->p++;
}

uint64_t take_u64(Reader *r) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)take_u8(r) << (8 * i);
  return v;
}

uint64_t next_random(uint64_t *state) { /* splitmix64 */
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double uniform(uint64_t *state) { return (double)(next_random(state) >> 11) * 0x1p-53; }

double normal(uint64_t *state) { /* Irwin-Hall, 4 terms: bell-shaped enough, and cheap */
  double sum = 0.0;
  for (int i = 0; i < 4; i++) sum += uniform(state);
  return (sum - 2.0) * 1.7320508075688772;
}

static double bits_to_double(uint64_t bits) {
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
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

/* A valid value of an enum most of the time, else one of a few invalid ones. */
static int32_t take_enum(Reader *r, int32_t valid, const int32_t *bad, int bad_count) {
  uint8_t pick = take_u8(r);
  if (pick < 240) return (int32_t)(pick % valid);
  return bad[pick % bad_count];
}

static int32_t take_layout(Reader *r) {
  static const int32_t bad[] = {-1, 2, INT32_MAX, INT32_MIN, 3};
  uint8_t pick = take_u8(r);
  if (pick < 128) return BN_LAYOUT_NCS; /* the committed seeds use 0 */
  if (pick < 250) return BN_LAYOUT_NSC;
  return bad[pick % 5];
}

/* The total count of a phase: usually this shard's n*s or more, sometimes less or absurd. */
static int64_t take_count(Reader *r, const Call *k) {
  static const int64_t table[] = {0, 1, 2, -1, INT64_MIN, INT64_MAX};
  uint64_t m = (uint64_t)k->n * (uint64_t)k->s; /* wraps for absurd sizes: fine */
  uint8_t pick = take_u8(r);
  switch (pick % 8) {
  case 3:
    return (int64_t)(m + take_u8(r));
  case 4:
    return (int64_t)(2 * m + 1);
  case 5:
    return (int64_t)(m - 1);
  case 6:
    return table[take_u8(r) % 6];
  case 7:
    return (int64_t)take_u64(r);
  default:
    return (int64_t)m;
  }
}

static int64_t take_shards(Reader *r) {
  static const int64_t table[] = {-1, INT64_MIN, INT64_MAX, INT64_MAX / 8, (int64_t)1 << 40};
  uint8_t pick = take_u8(r);
  if (pick < 200) return pick % (MAX_SHARDS + 1);
  if (pick < 250) return table[pick % 5];
  return (int64_t)take_u64(r);
}

static void take_sizes(Call *k, Reader *r) {
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
}

/* dtype, act, flags, aliasing, count and k: only the generic entry points read these bytes. */
static uint8_t take_generic(Call *k, Reader *r) {
  static const int32_t bad_dtype[] = {3, -1, INT32_MAX, INT32_MIN, 7};
  static const int32_t bad_act[] = {3, -1, 100, INT32_MIN};
  static const int32_t bad_flags[] = {2, 3, -1, INT32_MIN, 0x100};
  k->dtype = take_enum(r, 3, bad_dtype, 5);
  k->act = take_enum(r, 3, bad_act, 4);
  k->flags = take_enum(r, 2, bad_flags, 5);
  uint8_t aliasing = take_u8(r);
  k->count = take_count(r, k);
  k->k = take_shards(r);
  return aliasing;
}

/* Every size fits in memory: n*c*s elements (k*c for the merge) and c channels. */
static int call_fits_memory(const Call *k) {
  if (k->c < 1 || k->c > MAX_CHANNELS) return 0;
  if (k->op == OP_MERGE) return k->k >= 0 && k->k <= MAX_SHARDS;
  if (k->n < 0 || k->s < 0) return 0;
  if (k->n == 0 || k->s == 0) return 1; /* empty: no data, however large the other size */
  if (k->n > MAX_ELEMENTS || k->s > MAX_ELEMENTS) return 0;
  return k->n * k->s <= MAX_ELEMENTS / k->c;
}

/* Which pointers are NULL: one bit per used role, and one call in 8 drops a required one. */
static void choose_given(Call *k, uint8_t nulls, uint8_t hflags) {
  int null_required = (hflags & 7) == 0;
  int role_index = 0;
  for (int role = 0; role < R_NUM; role++) {
    if (!role_used(k->op, (enum role)role)) continue;
    int optional_null = (nulls >> (role_index++ % 8)) & 1;
    k->given[role] = 1;
    if (optional_null && (nulls & 0x80)) k->given[role] = 0; /* half the calls keep everything */
    if (null_required && (int)(hflags >> 3) % R_NUM == role) k->given[role] = 0;
  }
  for (int role = 0; role < R_NUM; role++) { /* requirements depend on what is given (x/dweight) */
    if (k->given[role] || !role_used(k->op, (enum role)role)) continue;
    if (role_required(k, (enum role)role) && !null_required) k->given[role] = 1;
  }
}

/* In place: y = x, dx = dy or dz = dy; inputs may also share memory (z = x, or y = x in a
 * backward). Only the sharings batchnorm.h allows. */
static void choose_aliases(Call *k, uint8_t hflags, uint8_t aliasing) {
  int forward = role_is_output(k->op, R_Y);
  enum role out = forward ? R_Y : R_DX, in = forward ? R_X : R_DY;
  if ((aliasing & 1) && !forward && role_used(k->op, R_DZ)) out = R_DZ;
  if ((hflags & 0x20) && role_used(k->op, out) && k->given[out] && k->given[in]) {
    buffers_share(k, out, in);
  }
  enum role other = forward ? R_Z : R_Y;
  if ((aliasing & 2) && role_used(k->op, other) && k->given[other] && k->given[R_X] &&
      k->alias[R_Y] < 0 && k->buf[other].bytes == k->buf[R_X].bytes) {
    buffers_share(k, other, R_X);
  }
}

static void run_kernel_call(Call *k, Reader *r) {
  take_sizes(k, r);
  uint8_t nulls = take_u8(r), hflags = take_u8(r);
  k->eps = take_eps(r);
  k->factor = take_factor(r);
  k->layout = take_layout(r);
  k->rng = take_u64(r);
  uint8_t aliasing = 0;
  k->dtype = BN_F32;
  k->act = BN_ACT_NONE;
  k->flags = 0;
  if (op_is_generic(k->op)) aliasing = take_generic(k, r);

  k->allocated = call_fits_memory(k);
  size_t tensor_len = !k->allocated || k->op == OP_MERGE ? PROBE_ELEMENTS /* merge: n, s unused */
                      : k->n == 0 || k->s == 0 ? 0 : (size_t)(k->n * k->c * k->s);
  size_t channel_len = k->allocated ? (size_t)k->c : PROBE_ELEMENTS;
  size_t shard_len = k->allocated && k->op == OP_MERGE ? (size_t)k->k : PROBE_ELEMENTS;
  choose_given(k, nulls, hflags);
  size_t offset = (size_t)((hflags >> 6) & 3) * 4; /* 0, 4, 8 or 12 bytes: off SIMD alignment */
  buffers_alloc(k, tensor_len, channel_len, shard_len, offset);
  choose_aliases(k, hflags, aliasing);
  buffers_fill(k, r);
  buffers_canary(k);
  buffers_snapshot(k);

  Faults faults = expected_faults(k);
  if (!k->allocated && faults.certain == 0) return; /* valid but too large to back with memory */
  int32_t status = invoke(k);
  check_status(k, faults, status);
  if (status != BN_OK) {
    for (int role = 0; role < R_NUM; role++) {
      if (k->given[role]) CHECK(k, status, buffer_unchanged(k, (enum role)role));
    }
    return;
  }
  check_written_and_inputs_kept(k);
  if (op_is_generic(k->op) && k->op >= OP_STATS) {
    check_phase_values(k);
  } else {
    check_values(k);
  }
}

static void run_threads_call(Reader *r) {
  static const int32_t table[] = {1, 2, 3, 4, 0, -1, INT32_MIN, 1025, INT32_MAX, 1};
  int32_t before = bn_get_num_threads();
  int32_t want = table[take_u8(r) % 10];
  int32_t status = bn_set_num_threads(want);
  Call k = {.op = OP_THREADS, .n = want};
  if (want < 1 || want > 1024) {
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

/* The kernel set is chosen once at load time: always the same static string. */
static void run_isa_call(void) {
  static const char *first;
  const char *isa = bn_isa();
  Call k = {.op = OP_ISA};
  CHECK(&k, 0, isa != NULL);
  CHECK(&k, 0, !strcmp(isa, "avx512bf16") || !strcmp(isa, "avx512") || !strcmp(isa, "avx2") ||
                   !strcmp(isa, "generic"));
  if (first == NULL) first = isa;
  CHECK(&k, 0, isa == first);
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
    } else if (op == OP_ISA) {
      run_isa_call();
    } else {
      Call k;
      memset(&k, 0, sizeof k);
      for (int role = 0; role < R_NUM; role++) k.alias[role] = -1;
      k.op = op;
      run_kernel_call(&k, &r);
      buffers_free(&k);
    }
  }
  return 0;
}
