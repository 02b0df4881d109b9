/*
 * Several threads calling large kernels at once. At most one call at a time gets the OpenMP team
 * (the process-wide team slot); the others run on their own thread. Whichever a call gets, its
 * results must be the bits of a serial run: each caller checks every output of every call
 * against results computed beforehand with one thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "test_util.h"

#define CALLERS 4
#define CALLS 6

typedef struct {
    int64_t n, c, s;
} shape;

/* A shape of each schedule the team would use at 2 threads: by channel, split. */
static const shape shapes[] = {{8, 16, 1024}, {4, 3, 40000}};
#define SHAPES (sizeof shapes / sizeof shapes[0])

/* Everything one round of the four entry points writes. */
typedef struct {
    float *y, *ye, *dx, *rm, *rv, *dw, *db;
    double *sm, *si;
} outputs;

typedef struct {
    const float *x, *dy, *w, *b;
    outputs want;
} input;

static input inputs[SHAPES];

static void alloc(outputs *o, shape sh) {
    size_t t = (size_t)(sh.n * sh.c * sh.s) * sizeof(float), cf = (size_t)sh.c * sizeof(float);
    o->y = malloc(t), o->ye = malloc(t), o->dx = malloc(t);
    o->rm = malloc(cf), o->rv = malloc(cf), o->dw = malloc(cf), o->db = malloc(cf);
    o->sm = malloc((size_t)sh.c * sizeof(double)), o->si = malloc((size_t)sh.c * sizeof(double));
}

static void release(outputs *o) {
    free(o->y), free(o->ye), free(o->dx), free(o->rm), free(o->rv), free(o->dw), free(o->db);
    free(o->sm), free(o->si);
}

static int32_t run(outputs *o, const input *in, shape sh) {
    for (int64_t ch = 0; ch < sh.c; ch++)
        o->rm[ch] = 0.25f, o->rv[ch] = 1.5f;
    int32_t st = bn_forward_train_f32(o->y, o->sm, o->si, o->rm, o->rv, in->x, in->w, in->b, sh.n,
                                      sh.c, sh.s, BN_LAYOUT_NCS, 1e-5, 0.1);
    st |= bn_forward_eval_f32(o->ye, in->x, in->w, in->b, o->rm, o->rv, sh.n, sh.c, sh.s,
                              BN_LAYOUT_NCS, 1e-5);
    st |= bn_backward_train_f32(o->dx, o->dw, o->db, in->dy, in->x, in->w, o->sm, o->si, sh.n,
                                sh.c, sh.s, BN_LAYOUT_NCS);
    return st;
}

/* 0 when o holds exactly the serial results. */
static int differs(const outputs *o, const outputs *w, shape sh) {
    size_t t = (size_t)(sh.n * sh.c * sh.s) * sizeof(float), cf = (size_t)sh.c * sizeof(float);
    size_t cd = (size_t)sh.c * sizeof(double);
    return memcmp(o->y, w->y, t) || memcmp(o->ye, w->ye, t) || memcmp(o->dx, w->dx, t) ||
           memcmp(o->rm, w->rm, cf) || memcmp(o->rv, w->rv, cf) || memcmp(o->dw, w->dw, cf) ||
           memcmp(o->db, w->db, cf) || memcmp(o->sm, w->sm, cd) || memcmp(o->si, w->si, cd);
}

/* Per caller: how many calls failed or differed. */
static int bad[CALLERS];

static void *caller(void *arg) {
    int id = (int)(intptr_t)arg;
    outputs o[SHAPES];
    for (size_t k = 0; k < SHAPES; k++)
        alloc(&o[k], shapes[k]);
    for (int call = 0; call < CALLS; call++) {
        size_t k = (size_t)(id + call) % SHAPES;
        if (run(&o[k], &inputs[k], shapes[k]) != BN_OK || differs(&o[k], &inputs[k].want, shapes[k]))
            bad[id]++;
    }
    for (size_t k = 0; k < SHAPES; k++)
        release(&o[k]);
    return NULL;
}

int main(void) {
    rng r = {99};
    bn_set_num_threads(1);
    for (size_t k = 0; k < SHAPES; k++) {
        shape sh = shapes[k];
        int64_t total = sh.n * sh.c * sh.s;
        float *x = malloc((size_t)total * sizeof(float)), *dy = malloc((size_t)total * sizeof(float));
        float *w = malloc((size_t)sh.c * sizeof(float)), *b = malloc((size_t)sh.c * sizeof(float));
        for (int64_t i = 0; i < total; i++) {
            x[i] = (float)(4321.123 + 0.7 * rng_normal(&r) + (double)((i / sh.s) % sh.c));
            dy[i] = (float)rng_normal(&r);
        }
        for (int64_t ch = 0; ch < sh.c; ch++)
            w[ch] = (float)(0.5 + rng_uniform(&r)), b[ch] = (float)(rng_uniform(&r) - 0.5);
        inputs[k] = (input){x, dy, w, b, {0}};
        alloc(&inputs[k].want, sh);
        CHECK(run(&inputs[k].want, &inputs[k], sh) == BN_OK, "serial run of shape %zu", k);
    }
    for (int threads = 2; threads <= 3; threads++) {
        bn_set_num_threads(threads);
        pthread_t t[CALLERS];
        for (int i = 0; i < CALLERS; i++)
            CHECK(pthread_create(&t[i], NULL, caller, (void *)(intptr_t)i) == 0, "pthread_create");
        for (int i = 0; i < CALLERS; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < CALLERS; i++) {
            CHECK(bad[i] == 0, "%d threads: caller %d got %d of %d calls wrong", threads, i, bad[i],
                  CALLS);
            bad[i] = 0;
        }
    }
    for (size_t k = 0; k < SHAPES; k++) {
        free((void *)inputs[k].x), free((void *)inputs[k].dy), free((void *)inputs[k].w);
        free((void *)inputs[k].b), release(&inputs[k].want);
    }
    return finish("test_concurrency");
}
