/*
 * native_bench's cases (tensor.h): the fill, and the calls of libbatchnorm and plain-c.
 *
 * libbatchnorm is called through its general entry points (element types, layouts, epilogues)
 * when its header declares them and the library exports them (weak references: a library
 * without them leaves them NULL), and otherwise through the float32 shorthands, which cover
 * float32 ops without an epilogue. A layout or type the library refuses comes back as a
 * BN_ERR_UNSUPPORTED_* status, which native_bench prints as a skipped line.
 */
#include "tensor.h"

#include "batchnorm.h"
#include "plain_bn.h"

#ifdef BN_ACT_NONE /* the header with element types and epilogues */
#define GENERAL_API 1
#pragma weak bn_forward_train
#pragma weak bn_forward_eval
#pragma weak bn_backward_train
#else
#define GENERAL_API 0
#endif
const char *bn_isa(void) __attribute__((weak));

const char *ours_isa(void) {
    return bn_isa != NULL ? bn_isa() : "unknown";
}

static int general_api(void) {
#if GENERAL_API
    return bn_forward_train != NULL && bn_forward_eval != NULL && bn_backward_train != NULL;
#else
    return 0;
#endif
}

int ours_available(const bench_case *k, const char **why) {
    if (general_api() || (k->dtype == DTYPE_F32 && bench_op_act(k->op) == 0)) {
        return 1;
    }
    *why = "the library has only the float32 calls without an epilogue (no bn_forward_train, "
           "bn_backward_train with element types and epilogues)";
    return 0;
}

void ours_run(void *ctx) {
    bench_case *k = ctx;
    const int act = bench_op_act(k->op);
    const int32_t layout = k->layout == LAYOUT_NHWC ? BN_LAYOUT_NSC : BN_LAYOUT_NCS;
    const int64_t n = k->sh.n, c = k->sh.c, s = k->sh.s;
#if GENERAL_API
    if (general_api()) {
        static const int32_t dtypes[] = {BN_F32, BN_BF16, BN_F16};
        static const int32_t acts[] = {BN_ACT_NONE, BN_ACT_RELU, BN_ACT_ADD_RELU};
        const int32_t dt = dtypes[k->dtype];
        if (k->op == OP_EVAL) {
            k->status = bn_forward_eval(k->y, k->x, NULL, k->w, k->b, k->rm, k->rv, n, c, s,
                                        layout, dt, BN_ACT_NONE, BENCH_EPS);
        } else if (bench_op_is_backward(k->op)) {
            k->status = bn_backward_train(k->dx, act == 2 ? k->dz : NULL, k->dw, k->db, k->dy,
                                          act ? k->y : NULL, k->x, k->w, k->sm, k->si, n, c, s,
                                          layout, dt, acts[act]);
        } else {
            k->status = bn_forward_train(k->y, k->sm, k->si, k->rm, k->rv, k->x,
                                         act == 2 ? k->z : NULL, k->w, k->b, n, c, s, layout, dt,
                                         acts[act], BENCH_EPS, BENCH_MOMENTUM, 0);
        }
        return;
    }
#endif
    if (k->dtype != DTYPE_F32 || act != 0) {
        k->status = -1;
    } else if (k->op == OP_EVAL) {
        k->status = bn_forward_eval_f32(k->y, k->x, k->w, k->b, k->rm, k->rv, n, c, s, layout,
                                        BENCH_EPS);
    } else if (k->op == OP_BACKWARD) {
        k->status = bn_backward_train_f32(k->dx, k->dw, k->db, k->dy, k->x, k->w, k->sm, k->si,
                                          n, c, s, layout);
    } else {
        k->status = bn_forward_train_f32(k->y, k->sm, k->si, k->rm, k->rv, k->x, k->w, k->b, n,
                                         c, s, layout, BENCH_EPS, BENCH_MOMENTUM);
    }
}

void plain_run(void *ctx) {
    const bench_case *k = ctx;
    const plain_bn p = {
        .n = k->sh.n, .c = k->sh.c, .s = k->sh.s, .layout = k->layout, .threads = k->threads,
        .x = k->x, .z = k->z, .dy = k->dy, .y = k->y, .dx = k->dx, .dz = k->dz,
        .weight = k->w, .bias = k->b, .running_mean = k->rm, .running_var = k->rv,
        .dweight = k->dw, .dbias = k->db, .save_mean = k->sm, .save_invstd = k->si,
        .scratch = k->scratch, .eps = BENCH_EPS, .momentum = BENCH_MOMENTUM};
    const int act = bench_op_act(k->op);
    if (k->op == OP_EVAL) {
        plain_forward_eval(&p, 0);
    } else if (bench_op_is_backward(k->op)) {
        plain_backward(&p, act);
    } else {
        plain_forward_train(&p, act);
    }
}

void tensor_fill(bench_case *k) {
    const bench_shape *sh = &k->sh;
    uint64_t state = 12345;
    for (int64_t b = 0; b < sh->n; b++) {
        for (int64_t ch = 0; ch < sh->c; ch++) {
            for (int64_t j = 0; j < sh->s; j++) {
                /* three independent uniforms in [0, 1) from two steps of a 64-bit LCG */
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                const float u = (float)(state >> 40) * (1.0f / 16777216.0f);
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                const float v = (float)(state >> 40) * (1.0f / 16777216.0f);
                const float w = (float)((state >> 8) & 0xffffff) * (1.0f / 16777216.0f);
                const int64_t i = tensor_index(sh, k->layout, b, ch, j);
                tensor_set(k->x, k->dtype, i, 3.0f * u - 1.0f + 0.01f * (float)ch);
                tensor_set(k->dy, k->dtype, i, v - 0.5f);
                tensor_set(k->z, k->dtype, i, w - 0.5f);
            }
        }
    }
    for (int64_t ch = 0; ch < sh->c; ch++) {
        k->w[ch] = 1.0f + 0.001f * (float)ch;
        k->b[ch] = 0.01f * (float)ch;
        k->rm[ch] = 0.5f;
        k->rv[ch] = 0.75f;
        k->sm[ch] = 0.5;
        k->si[ch] = 1.0 / 0.866;
    }
}
