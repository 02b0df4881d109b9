/*
 * Every status code, provoked through every entry point that can return it, and proof that a
 * failing call writes nothing: all outputs hold a sentinel before the call and after it.
 * Also the valid edge cases: empty tensors and all-optional-outputs-absent calls.
 */
#include <string.h>

#include "batchnorm.h"
#include "test_util.h"

#define C 3
#define LEN 24 /* N*C*S for the (2, 3, 4) tensor used by the valid-shape calls */

static float y[LEN], dx[LEN], rm[C], rv[C], dw[C], db[C];
static double sm[C], si[C];
static const float x[LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                             21, 22, 23, 24};
static const float dy[LEN] = {1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 1, 1, 1, 1, 2, 2, 2, 2, 0,
                              0, 0, 1};
static const float w[C] = {1, 2, 3}, b[C] = {0, 1, 2};
static const double cm[C] = {1, 2, 3}, ci[C] = {1, 1, 1};
static const float crm[C] = {0, 1, 2}, crv[C] = {1, 2, 3};

static const float SENTINEL = -12345.5f;

static void arm(void) {
    for (int i = 0; i < LEN; i++)
        y[i] = dx[i] = SENTINEL;
    for (int i = 0; i < C; i++) {
        rm[i] = rv[i] = dw[i] = db[i] = SENTINEL;
        sm[i] = si[i] = SENTINEL;
    }
}

static int untouched(void) {
    for (int i = 0; i < LEN; i++)
        if (y[i] != SENTINEL || dx[i] != SENTINEL)
            return 0;
    for (int i = 0; i < C; i++)
        if (rm[i] != SENTINEL || rv[i] != SENTINEL || dw[i] != SENTINEL || db[i] != SENTINEL ||
            sm[i] != SENTINEL || si[i] != SENTINEL)
            return 0;
    return 1;
}

/* Runs a call that must fail with `want` and leave every output as armed. */
#define EXPECT(want, call)                                                                    \
    do {                                                                                      \
        arm();                                                                                \
        int32_t got_ = (call);                                                                \
        CHECK(got_ == (want), "%s: got %d (%s), want %d", #call, got_, bn_status_message(got_), \
              (want));                                                                        \
        CHECK(untouched(), "%s wrote an output on error", #call);                             \
    } while (0)

static int32_t ftrain(float *yy, float *r_m, float *r_v, const float *xx, int64_t n, int64_t c,
                      int64_t s, int32_t layout, double eps, double factor) {
    return bn_forward_train_f32(yy, sm, si, r_m, r_v, xx, w, b, n, c, s, layout, eps, factor);
}

static int32_t feval(float *yy, const float *xx, const float *r_m, const float *r_v, int64_t n,
                     int64_t c, int64_t s, int32_t layout, double eps) {
    return bn_forward_eval_f32(yy, xx, w, b, r_m, r_v, n, c, s, layout, eps);
}

static int32_t btrain(const float *g, const float *xx, const double *m, const double *is, int64_t n,
                      int64_t c, int64_t s, int32_t layout) {
    return bn_backward_train_f32(dx, dw, db, g, xx, w, m, is, n, c, s, layout);
}

static int32_t beval(float *dwp, const float *g, const float *xx, const float *r_m,
                     const float *r_v, int64_t n, int64_t c, int64_t s, int32_t layout,
                     double eps) {
    return bn_backward_eval_f32(dx, dwp, db, g, xx, w, r_m, r_v, n, c, s, layout, eps);
}

static void null_pointers(void) {
    const int E = BN_ERR_NULL_POINTER;
    EXPECT(E, ftrain(NULL, rm, rv, x, 2, C, 4, BN_LAYOUT_NCS, 1e-5, 0.1));
    EXPECT(E, ftrain(y, rm, rv, NULL, 2, C, 4, BN_LAYOUT_NCS, 1e-5, 0.1));
    EXPECT(E, ftrain(y, rm, NULL, x, 2, C, 4, BN_LAYOUT_NCS, 1e-5, 0.1));
    EXPECT(E, ftrain(y, NULL, rv, x, 2, C, 4, BN_LAYOUT_NCS, 1e-5, 0.1));
    EXPECT(E, feval(NULL, x, crm, crv, 2, C, 4, BN_LAYOUT_NCS, 1e-5));
    EXPECT(E, feval(y, NULL, crm, crv, 2, C, 4, BN_LAYOUT_NCS, 1e-5));
    EXPECT(E, feval(y, x, NULL, crv, 2, C, 4, BN_LAYOUT_NCS, 1e-5));
    EXPECT(E, feval(y, x, crm, NULL, 2, C, 4, BN_LAYOUT_NCS, 1e-5));
    EXPECT(E, btrain(NULL, x, cm, ci, 2, C, 4, BN_LAYOUT_NCS));
    EXPECT(E, btrain(dy, NULL, cm, ci, 2, C, 4, BN_LAYOUT_NCS));
    EXPECT(E, btrain(dy, x, NULL, ci, 2, C, 4, BN_LAYOUT_NCS));
    EXPECT(E, btrain(dy, x, cm, NULL, 2, C, 4, BN_LAYOUT_NCS));
    EXPECT(E, beval(dw, NULL, x, crm, crv, 2, C, 4, BN_LAYOUT_NCS, 1e-5));
    EXPECT(E, beval(dw, dy, x, NULL, crv, 2, C, 4, BN_LAYOUT_NCS, 1e-5));
    EXPECT(E, beval(dw, dy, x, crm, NULL, 2, C, 4, BN_LAYOUT_NCS, 1e-5));
    EXPECT(E, beval(dw, dy, NULL, crm, crv, 2, C, 4, BN_LAYOUT_NCS, 1e-5)); /* dweight needs x */
}

/* Sizes that are negative, zero channels, or whose element or byte counts overflow int64_t. */
static void sizes(void) {
    static const struct {
        int64_t n, c, s;
        int32_t want;
    } cases[] = {
        {-1, C, 4, BN_ERR_BAD_SIZE},
        {2, 0, 4, BN_ERR_BAD_SIZE},
        {2, -3, 4, BN_ERR_BAD_SIZE},
        {2, C, -1, BN_ERR_BAD_SIZE},
        {INT64_MIN, C, 4, BN_ERR_BAD_SIZE},
        {INT64_MAX, 2, 1, BN_ERR_SIZE_OVERFLOW},           /* n*c overflows */
        {1, 3, INT64_MAX / 2, BN_ERR_SIZE_OVERFLOW},       /* c*s overflows */
        {(int64_t)1 << 62, 1, 1, BN_ERR_SIZE_OVERFLOW},    /* n*c*s fits, bytes do not */
        {3, 1, (int64_t)1 << 61, BN_ERR_SIZE_OVERFLOW},    /* c*s*4 fits, n*c*s does not */
        {0, (int64_t)1 << 61, 1, BN_ERR_SIZE_OVERFLOW},    /* empty, but the row stride's bytes overflow */
        {0, ((int64_t)1 << 60) + 1, 1, BN_ERR_SIZE_OVERFLOW}, /* c doubles overflow */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t n = cases[i].n, c = cases[i].c, s = cases[i].s;
        int32_t e = cases[i].want;
        EXPECT(e, ftrain(y, rm, rv, x, n, c, s, BN_LAYOUT_NCS, 1e-5, 0.1));
        EXPECT(e, feval(y, x, crm, crv, n, c, s, BN_LAYOUT_NCS, 1e-5));
        EXPECT(e, btrain(dy, x, cm, ci, n, c, s, BN_LAYOUT_NCS));
        EXPECT(e, beval(dw, dy, x, crm, crv, n, c, s, BN_LAYOUT_NCS, 1e-5));
    }
}

static void values(void) {
    const int F = BN_ERR_TOO_FEW_VALUES;
    EXPECT(F, ftrain(y, rm, rv, x, 1, C, 1, BN_LAYOUT_NCS, 1e-5, 0.1));
    EXPECT(F, ftrain(y, NULL, NULL, x, 1, 1, 1, BN_LAYOUT_NCS, 1e-5, 0.1));
    EXPECT(F, bn_forward_train_f32(y, NULL, NULL, NULL, NULL, x, NULL, NULL, 1, 2, 1,
                                   BN_LAYOUT_NCS, 1e-5, 0.1));

    static const double bad_eps[] = {NAN, INFINITY, -INFINITY, -1e-5, -0.0 - 1e-300};
    for (size_t i = 0; i < sizeof bad_eps / sizeof bad_eps[0]; i++) {
        double e = bad_eps[i];
        EXPECT(BN_ERR_BAD_EPS, ftrain(y, rm, rv, x, 2, C, 4, BN_LAYOUT_NCS, e, 0.1));
        EXPECT(BN_ERR_BAD_EPS, feval(y, x, crm, crv, 2, C, 4, BN_LAYOUT_NCS, e));
        EXPECT(BN_ERR_BAD_EPS, beval(dw, dy, x, crm, crv, 2, C, 4, BN_LAYOUT_NCS, e));
    }
    static const double bad_factor[] = {NAN, -0.1, 1.0000001, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad_factor / sizeof bad_factor[0]; i++) {
        EXPECT(BN_ERR_BAD_FACTOR, ftrain(y, rm, rv, x, 2, C, 4, BN_LAYOUT_NCS, 1e-5, bad_factor[i]));
        EXPECT(BN_ERR_BAD_FACTOR, ftrain(y, NULL, NULL, x, 2, C, 4, BN_LAYOUT_NCS, 1e-5, bad_factor[i]));
    }
    static const int32_t bad_layout[] = {-1, 2, 1000};
    for (size_t i = 0; i < sizeof bad_layout / sizeof bad_layout[0]; i++) {
        int32_t l = bad_layout[i], E = BN_ERR_UNSUPPORTED_LAYOUT;
        EXPECT(E, ftrain(y, rm, rv, x, 2, C, 4, l, 1e-5, 0.1));
        EXPECT(E, feval(y, x, crm, crv, 2, C, 4, l, 1e-5));
        EXPECT(E, btrain(dy, x, cm, ci, 2, C, 4, l));
        EXPECT(E, beval(dw, dy, x, crm, crv, 2, C, 4, l, 1e-5));
    }
}

/* The general entry points and the phases: element type, epilogue, flags, counts, pointers. */
static void variants(void) {
    static double mean[C], m2[C], sdy[C], sdx[C];
    static const int64_t counts[2] = {8, 0};
    static const double means[2 * C] = {1, 2, 3, 4, 5, 6}, m2s[2 * C] = {1, 1, 1, 2, 2, 2};
    int64_t count = -7;
    static const int32_t bad_dtype[] = {-1, 3, 99};
    for (size_t i = 0; i < sizeof bad_dtype / sizeof bad_dtype[0]; i++) {
        int32_t d = bad_dtype[i], E = BN_ERR_UNSUPPORTED_DTYPE;
        EXPECT(E, bn_forward_train(y, sm, si, rm, rv, x, NULL, w, b, 2, C, 4, BN_LAYOUT_NSC, d,
                                   BN_ACT_NONE, 1e-5, 0.1, 0));
        EXPECT(E, bn_forward_eval(y, x, NULL, w, b, crm, crv, 2, C, 4, BN_LAYOUT_NCS, d,
                                  BN_ACT_RELU, 1e-5));
        EXPECT(E, bn_backward_train(dx, NULL, dw, db, dy, NULL, x, w, cm, ci, 2, C, 4,
                                    BN_LAYOUT_NCS, d, BN_ACT_NONE));
        EXPECT(E, bn_backward_eval(dx, NULL, dw, db, dy, NULL, x, w, crm, crv, 2, C, 4,
                                   BN_LAYOUT_NCS, d, BN_ACT_NONE, 1e-5));
        EXPECT(E, bn_stats(sm, si, x, 2, C, 4, BN_LAYOUT_NCS, d));
        EXPECT(E, bn_forward_from_stats(y, sm, si, rm, rv, x, NULL, w, b, cm, ci, 8, 2, C, 4,
                                        BN_LAYOUT_NCS, d, BN_ACT_NONE, 1e-5, 0.1, 0));
        EXPECT(E, bn_backward_from_sums(dx, NULL, dy, NULL, x, w, cm, ci, cm, ci, 8, 2, C, 4,
                                        BN_LAYOUT_NCS, d, BN_ACT_NONE));
    }
    static const int32_t bad_act[] = {-1, 3, 1000};
    for (size_t i = 0; i < sizeof bad_act / sizeof bad_act[0]; i++) {
        int32_t a = bad_act[i], E = BN_ERR_BAD_ACTIVATION;
        EXPECT(E, bn_forward_train(y, sm, si, rm, rv, x, x, w, b, 2, C, 4, BN_LAYOUT_NCS, BN_F32,
                                   a, 1e-5, 0.1, 0));
        EXPECT(E, bn_forward_eval(y, x, x, w, b, crm, crv, 2, C, 4, BN_LAYOUT_NCS, BN_F32, a,
                                  1e-5));
        EXPECT(E, bn_backward_train(dx, NULL, dw, db, dy, y, x, w, cm, ci, 2, C, 4,
                                    BN_LAYOUT_NCS, BN_F32, a));
    }
    /* Add+ReLU needs z; the fused backwards need y */
    EXPECT(BN_ERR_BAD_ACTIVATION, bn_forward_train(y, sm, si, rm, rv, x, NULL, w, b, 2, C, 4,
                                                   BN_LAYOUT_NCS, BN_F32, BN_ACT_ADD_RELU, 1e-5,
                                                   0.1, 0));
    EXPECT(BN_ERR_BAD_ACTIVATION, bn_forward_eval(y, x, NULL, w, b, crm, crv, 2, C, 4,
                                                  BN_LAYOUT_NCS, BN_F32, BN_ACT_ADD_RELU, 1e-5));
    EXPECT(BN_ERR_NULL_POINTER, bn_backward_train(dx, NULL, dw, db, dy, NULL, x, w, cm, ci, 2, C,
                                                  4, BN_LAYOUT_NCS, BN_F32, BN_ACT_RELU));
    EXPECT(BN_ERR_NULL_POINTER, bn_backward_eval(dx, NULL, dw, db, dy, NULL, x, w, crm, crv, 2,
                                                 C, 4, BN_LAYOUT_NCS, BN_F32, BN_ACT_ADD_RELU,
                                                 1e-5));
    EXPECT(BN_ERR_BAD_FLAGS, bn_forward_train(y, sm, si, rm, rv, x, NULL, w, b, 2, C, 4,
                                              BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE, 1e-5, 0.1, 2));
    EXPECT(BN_ERR_BAD_FLAGS, bn_forward_from_stats(y, sm, si, rm, rv, x, NULL, w, b, cm, ci, 8,
                                                   2, C, 4, BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE,
                                                   1e-5, 0.1, -1));
    /* phases: pointers, counts */
    EXPECT(BN_ERR_NULL_POINTER, bn_stats(NULL, si, x, 2, C, 4, BN_LAYOUT_NCS, BN_F32));
    EXPECT(BN_ERR_NULL_POINTER, bn_stats(sm, si, NULL, 2, C, 4, BN_LAYOUT_NCS, BN_F32));
    EXPECT(BN_ERR_BAD_SIZE, bn_stats(sm, si, x, -1, C, 4, BN_LAYOUT_NCS, BN_F32));
    EXPECT(BN_ERR_UNSUPPORTED_LAYOUT, bn_stats(sm, si, x, 2, C, 4, 5, BN_F32));
    EXPECT(BN_ERR_NULL_POINTER, bn_merge_stats(&count, sm, si, NULL, means, m2s, 2, C));
    EXPECT(BN_ERR_BAD_SIZE, bn_merge_stats(&count, sm, si, counts, means, m2s, -1, C));
    EXPECT(BN_ERR_BAD_SIZE, bn_merge_stats(&count, sm, si, counts, means, m2s, 2, 0));
    static const int64_t negative[2] = {8, -1};
    EXPECT(BN_ERR_BAD_SIZE, bn_merge_stats(&count, sm, si, negative, means, m2s, 2, C));
    static const int64_t huge[2] = {INT64_MAX, 1};
    EXPECT(BN_ERR_SIZE_OVERFLOW, bn_merge_stats(&count, sm, si, huge, means, m2s, 2, C));
    CHECK(count == -7, "a failed merge wrote its count");
    /* no partials, but C doubles of output that no buffer can hold */
    EXPECT(BN_ERR_SIZE_OVERFLOW, bn_merge_stats(&count, sm, si, NULL, NULL, NULL, 0, (int64_t)1 << 60));
    EXPECT(BN_ERR_BAD_COUNT, bn_forward_from_stats(y, sm, si, rm, rv, x, NULL, w, b, cm, ci, 7, 2,
                                                   C, 4, BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE,
                                                   1e-5, 0.1, 0));
    EXPECT(BN_ERR_BAD_SIZE, bn_forward_from_stats(y, sm, si, rm, rv, x, NULL, w, b, cm, ci, -1, 0,
                                                  C, 4, BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE,
                                                  1e-5, 0.1, 0));
    EXPECT(BN_ERR_TOO_FEW_VALUES, bn_forward_from_stats(y, sm, si, rm, rv, x, NULL, w, b, cm, ci,
                                                        1, 1, C, 1, BN_LAYOUT_NCS, BN_F32,
                                                        BN_ACT_NONE, 1e-5, 0.1, 0));
    EXPECT(BN_ERR_NULL_POINTER, bn_forward_from_stats(y, sm, si, rm, rv, x, NULL, w, b, NULL, ci,
                                                      8, 2, C, 4, BN_LAYOUT_NCS, BN_F32,
                                                      BN_ACT_NONE, 1e-5, 0.1, 0));
    EXPECT(BN_ERR_BAD_FACTOR, bn_forward_from_stats(y, sm, si, rm, rv, x, NULL, w, b, cm, ci, 8,
                                                    2, C, 4, BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE,
                                                    1e-5, 1.5, 0));
    EXPECT(BN_ERR_NULL_POINTER, bn_backward_reduce(NULL, sdx, dw, db, dy, NULL, x, cm, ci, 2, C,
                                                   4, BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE));
    EXPECT(BN_ERR_NULL_POINTER, bn_backward_reduce(sdy, sdx, dw, db, dy, NULL, x, NULL, ci, 2, C,
                                                   4, BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE));
    EXPECT(BN_ERR_BAD_COUNT, bn_backward_from_sums(dx, NULL, dy, NULL, x, w, cm, ci, cm, ci, 3, 2,
                                                   C, 4, BN_LAYOUT_NCS, BN_F32, BN_ACT_NONE));
    EXPECT(BN_ERR_NULL_POINTER, bn_backward_from_sums(dx, NULL, dy, NULL, x, w, cm, ci, NULL, ci,
                                                      8, 2, C, 4, BN_LAYOUT_NCS, BN_F32,
                                                      BN_ACT_NONE));
    /* valid merges: skipped empty partials, and no partials at all */
    CHECK(bn_merge_stats(&count, mean, m2, counts, means, m2s, 2, C) == BN_OK && count == 8 &&
              mean[0] == 1 && mean[2] == 3 && m2[1] == 1,
          "a merge with an empty partial copies the other");
    CHECK(bn_merge_stats(&count, mean, m2, NULL, NULL, NULL, 0, C) == BN_OK && count == 0 &&
              mean[1] == 0 && m2[1] == 0,
          "a merge of nothing is empty");
    CHECK(strcmp(bn_isa(), "avx512bf16") == 0 || strcmp(bn_isa(), "avx512") == 0 ||
              strcmp(bn_isa(), "avx2") == 0 || strcmp(bn_isa(), "generic") == 0,
          "bn_isa() = %s", bn_isa());
}

static void threads(void) {
    CHECK(bn_get_num_threads() >= 1, "default thread count %d", bn_get_num_threads());
    CHECK(bn_set_num_threads(3) == BN_OK, "set 3");
    CHECK(bn_set_num_threads(0) == BN_ERR_BAD_THREADS, "set 0");
    CHECK(bn_set_num_threads(-2) == BN_ERR_BAD_THREADS, "set -2");
    CHECK(bn_set_num_threads(INT32_MIN) == BN_ERR_BAD_THREADS, "set INT32_MIN");
    CHECK(bn_set_num_threads(1025) == BN_ERR_BAD_THREADS, "set 1025");
    CHECK(bn_set_num_threads(1 << 20) == BN_ERR_BAD_THREADS, "set 2^20");
    CHECK(bn_set_num_threads(INT32_MAX) == BN_ERR_BAD_THREADS, "set INT32_MAX");
    CHECK(bn_get_num_threads() == 3, "a rejected count changed the setting: %d", bn_get_num_threads());
    CHECK(bn_set_num_threads(1024) == BN_OK && bn_get_num_threads() == 1024, "set 1024");
    CHECK(bn_set_num_threads(1) == BN_OK && bn_get_num_threads() == 1, "set 1");
}

static void messages(void) {
    for (int32_t a = 0; a <= BN_ERR_BAD_COUNT; a++) {
        const char *ma = bn_status_message(a);
        CHECK(ma != NULL && strlen(ma) > 0, "message %d", a);
        for (int32_t b2 = 0; b2 < a; b2++)
            CHECK(strcmp(ma, bn_status_message(b2)) != 0, "messages %d and %d are equal", a, b2);
    }
    CHECK(strcmp(bn_status_message(-1), "unknown status code") == 0, "message -1");
    CHECK(strcmp(bn_status_message(99), "unknown status code") == 0, "message 99");
}

/* Valid calls that touch no data: empty tensors, and all optional outputs absent. */
static void empty(void) {
    static const int64_t shapes[][3] = {{0, C, 4}, {2, C, 0}, {0, C, 0}};
    for (int i = 0; i < 3; i++) {
        int64_t n = shapes[i][0], c = shapes[i][1], s = shapes[i][2];
        arm();
        CHECK(ftrain(y, rm, rv, x, n, c, s, BN_LAYOUT_NCS, 1e-5, 0.1) == BN_OK, "empty train");
        int ok = 1;
        for (int k = 0; k < LEN; k++)
            ok &= y[k] == SENTINEL;
        for (int k = 0; k < C; k++)
            ok &= sm[k] == 0.0 && si[k] == 0.0 && rm[k] == SENTINEL && rv[k] == SENTINEL;
        CHECK(ok, "empty forward_train: y and running stats untouched, save stats zero");
        arm();
        CHECK(feval(y, x, crm, crv, n, c, s, BN_LAYOUT_NCS, 1e-5) == BN_OK, "empty eval");
        CHECK(untouched(), "empty forward_eval wrote");
        arm();
        CHECK(btrain(dy, x, cm, ci, n, c, s, BN_LAYOUT_NCS) == BN_OK, "empty backward_train");
        ok = 1;
        for (int k = 0; k < LEN; k++)
            ok &= dx[k] == SENTINEL;
        for (int k = 0; k < C; k++)
            ok &= dw[k] == 0.0f && db[k] == 0.0f;
        CHECK(ok, "empty backward_train: dx untouched, dweight = dbias = 0");
        arm();
        CHECK(beval(dw, dy, x, crm, crv, n, c, s, BN_LAYOUT_NCS, 1e-5) == BN_OK, "empty backward_eval");
        ok = 1;
        for (int k = 0; k < LEN; k++)
            ok &= dx[k] == SENTINEL;
        for (int k = 0; k < C; k++)
            ok &= dw[k] == 0.0f && db[k] == 0.0f;
        CHECK(ok, "empty backward_eval: dx untouched, dweight = dbias = 0");
    }
    arm();
    CHECK(bn_backward_train_f32(NULL, NULL, NULL, dy, x, w, cm, ci, 2, C, 4, BN_LAYOUT_NCS) == BN_OK &&
              bn_backward_eval_f32(NULL, NULL, NULL, dy, NULL, NULL, crm, crv, 2, C, 4,
                                   BN_LAYOUT_NCS, 1e-5) == BN_OK &&
              untouched(),
          "backward with no outputs requested");
    /* The sentinel check can see a write: a valid call on the same buffers changes them. */
    arm();
    CHECK(ftrain(y, rm, rv, x, 2, C, 4, BN_LAYOUT_NCS, 1e-5, 0.1) == BN_OK && !untouched(),
          "a valid call writes");
}

int main(void) {
    null_pointers();
    sizes();
    values();
    variants();
    threads();
    messages();
    empty();
    return finish("test_errors");
}
