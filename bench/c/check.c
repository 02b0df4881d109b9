/*
 * native_bench's correctness check (check.h). The reference works in double on the inputs as
 * rounded to the case's element type; a backward gets the reference's own forward statistics and
 * fused output y (rounded to the type), so that it is checked alone.
 */
#include "check.h"

#include <math.h>
#include <stdlib.h>

#include "batchnorm.h"
#include "tensor.h"

const char *const impl_names[IMPL_COUNT] = {"panama-batchnorm-c", "plain-c"};

static const char *const check_shapes[] = {"3x5x7x9", "2x18x47x41"};

/* Largest error allowed, relative to the output's largest magnitude: a few roundings of float32;
 * for 16-bit outputs, a rounding of the type (2^-9 bfloat16, 2^-12 float16) several times over. */
static const double tolerance[BENCH_NUM_DTYPES] = {1e-5, 1e-2, 2e-3};

/* The reference's outputs for one case: y, dx, dz are (N,C,S) in the case's layout; the rest (C). */
typedef struct {
    double *y, *dx, *dz, *rm, *rv, *dw, *db, *sm, *si;
} reference;

// ref.y, ref.sm, ref.si, ref.rm, ref.rv from k's x, z, w, b, rm, rv
static void reference_forward(reference *ref, const bench_case *k, int train, int act) {
    const bench_shape *sh = &k->sh;
    const double m = (double)(sh->n * sh->s);
    for (int64_t ch = 0; ch < sh->c; ch++) {
        double mean = k->rm[ch], var = k->rv[ch];
        if (train) {
            double sum = 0.0, m2 = 0.0;
            for (int64_t b = 0; b < sh->n; b++)
                for (int64_t j = 0; j < sh->s; j++)
                    sum += tensor_get(k->x, k->dtype, tensor_index(sh, k->layout, b, ch, j));
            mean = sum / m;
            for (int64_t b = 0; b < sh->n; b++)
                for (int64_t j = 0; j < sh->s; j++) {
                    double d = tensor_get(k->x, k->dtype, tensor_index(sh, k->layout, b, ch, j)) - mean;
                    m2 += d * d;
                }
            var = m2 / m;
            ref->rm[ch] = (1 - BENCH_MOMENTUM) * k->rm[ch] + BENCH_MOMENTUM * mean;
            ref->rv[ch] = (1 - BENCH_MOMENTUM) * k->rv[ch] + BENCH_MOMENTUM * m2 / (m - 1);
        } else {
            ref->rm[ch] = k->rm[ch];
            ref->rv[ch] = k->rv[ch];
        }
        const double invstd = 1.0 / sqrt(var + BENCH_EPS);
        ref->sm[ch] = mean;
        ref->si[ch] = invstd;
        for (int64_t b = 0; b < sh->n; b++)
            for (int64_t j = 0; j < sh->s; j++) {
                const int64_t i = tensor_index(sh, k->layout, b, ch, j);
                double v = (tensor_get(k->x, k->dtype, i) - mean) * invstd * k->w[ch] + k->b[ch];
                if (act == 2)
                    v += tensor_get(k->z, k->dtype, i);
                ref->y[i] = act && v < 0 ? 0.0 : v;
            }
    }
}

// ref.dx, ref.dz, ref.dw, ref.db from k's dy, x, y (the fused forward's output), sm, si
static void reference_backward(reference *ref, const bench_case *k, int act) {
    const bench_shape *sh = &k->sh;
    const double m = (double)(sh->n * sh->s);
    for (int64_t ch = 0; ch < sh->c; ch++) {
        double sum_g = 0.0, sum_gx = 0.0;
        for (int64_t b = 0; b < sh->n; b++)
            for (int64_t j = 0; j < sh->s; j++) {
                const int64_t i = tensor_index(sh, k->layout, b, ch, j);
                const double g = act && !(tensor_get(k->y, k->dtype, i) > 0)
                                     ? 0.0 : tensor_get(k->dy, k->dtype, i);
                sum_g += g;
                sum_gx += g * (tensor_get(k->x, k->dtype, i) - k->sm[ch]) * k->si[ch];
            }
        ref->db[ch] = sum_g;
        ref->dw[ch] = sum_gx;
        for (int64_t b = 0; b < sh->n; b++)
            for (int64_t j = 0; j < sh->s; j++) {
                const int64_t i = tensor_index(sh, k->layout, b, ch, j);
                const double g = act && !(tensor_get(k->y, k->dtype, i) > 0)
                                     ? 0.0 : tensor_get(k->dy, k->dtype, i);
                const double xhat = (tensor_get(k->x, k->dtype, i) - k->sm[ch]) * k->si[ch];
                ref->dx[i] = k->w[ch] * k->si[ch] * (g - sum_g / m - xhat * sum_gx / m);
                ref->dz[i] = g;
            }
    }
}

/* max |actual - expected| / max |expected| over count values; actual is of dtype (or float). */
static double rel_error(const void *actual, int dtype, const double *expected, int64_t count) {
    double diff = 0.0, scale = 0.0;
    for (int64_t i = 0; i < count; i++) {
        const double a = tensor_get(actual, dtype, i);
        const double d = isnan(a) ? INFINITY : fabs(a - expected[i]);
        diff = d > diff ? d : diff;
        scale = fmax(scale, fabs(expected[i]));
    }
    return diff == 0.0 ? 0.0 : diff / scale;
}

static void *alloc_bytes(int64_t bytes) {
    return aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64));
}

/* Runs impl on one case; returns its worst relative error, names the output in *worst, or
 * returns -1 when the impl lacks the call or refuses it. */
static double check_case(bench_case *k, int impl, reference *ref, const char **worst) {
    const int act = bench_op_act(k->op);
    const int64_t count = k->sh.n * k->sh.c * k->sh.s, c = k->sh.c;
    tensor_fill(k);
    if (bench_op_is_backward(k->op)) {
        /* the reference's forward statistics and fused output, as a training forward leaves them */
        reference_forward(ref, k, 1, act);
        for (int64_t i = 0; i < count; i++)
            tensor_set(k->y, k->dtype, i, (float)ref->y[i]);
        for (int64_t ch = 0; ch < c; ch++) {
            k->sm[ch] = ref->sm[ch];
            k->si[ch] = ref->si[ch];
        }
        reference_backward(ref, k, act);
    } else {
        reference_forward(ref, k, k->op != OP_EVAL, act);
    }
    if (impl == IMPL_OURS) {
        const char *why;
        if (!ours_available(k, &why))
            return -1;
        ours_run(k);
        if (k->status != BN_OK)
            return -1;
    } else {
        plain_run(k);
    }
    typedef struct {
        const char *name;
        const void *actual;
        int dtype;
        const double *expected;
        int64_t count;
    } output;
    output outputs[4];
    int n = 0;
    if (bench_op_is_backward(k->op)) {
        outputs[n++] = (output){"dx", k->dx, k->dtype, ref->dx, count};
        outputs[n++] = (output){"dweight", k->dw, DTYPE_F32, ref->dw, c};
        outputs[n++] = (output){"dbias", k->db, DTYPE_F32, ref->db, c};
        if (act == 2)
            outputs[n++] = (output){"dz", k->dz, k->dtype, ref->dz, count};
    } else {
        outputs[n++] = (output){"y", k->y, k->dtype, ref->y, count};
        outputs[n++] = (output){"running_mean", k->rm, DTYPE_F32, ref->rm, c};
        outputs[n++] = (output){"running_var", k->rv, DTYPE_F32, ref->rv, c};
    }
    double error = 0.0;
    for (int o = 0; o < n; o++) {
        double e = rel_error(outputs[o].actual, outputs[o].dtype, outputs[o].expected,
                             outputs[o].count);
        if (o == 0 || !(e <= error)) {
            error = e;
            *worst = outputs[o].name;
        }
    }
    return error;
}

int check_all(const bench_plan *plan, int threads, int have_plain,
              int passed[IMPL_COUNT][BENCH_NUM_LAYOUTS][BENCH_NUM_DTYPES][BENCH_NUM_OPS]) {
    int failures = 0;
    const int shapes = (int)(sizeof check_shapes / sizeof check_shapes[0]);
    bench_case cases[2];
    reference refs[2];
    for (int si = 0; si < shapes; si++) {
        bench_case *k = &cases[si];
        memset(k, 0, sizeof *k);
        bench_parse_shape(&k->sh, check_shapes[si]);
        const int64_t count = k->sh.n * k->sh.c * k->sh.s, c = k->sh.c;
        void **tensors[] = {&k->x, &k->z, &k->y, &k->dy, &k->dx, &k->dz};
        for (int t = 0; t < 6; t++)
            *tensors[t] = alloc_bytes(count * 4);
        float **chan[] = {&k->w, &k->b, &k->rm, &k->rv, &k->dw, &k->db};
        for (int t = 0; t < 6; t++)
            *chan[t] = alloc_bytes(c * 4);
        k->sm = alloc_bytes(c * 8);
        k->si = alloc_bytes(c * 8);
        k->scratch = alloc_bytes(3 * (int64_t)threads * c * 8);
        double **outs[] = {&refs[si].y, &refs[si].dx, &refs[si].dz};
        for (int t = 0; t < 3; t++)
            *outs[t] = alloc_bytes(count * 8);
        double **couts[] = {&refs[si].rm, &refs[si].rv, &refs[si].dw, &refs[si].db,
                            &refs[si].sm, &refs[si].si};
        for (int t = 0; t < 6; t++)
            *couts[t] = alloc_bytes(c * 8);
        k->threads = threads;
    }
    bn_set_num_threads(threads);
    for (int impl = 0; impl < IMPL_COUNT; impl++)
        for (int l = 0; l < BENCH_NUM_LAYOUTS; l++)
            for (int d = 0; d < BENCH_NUM_DTYPES; d++)
                for (int op = 0; op < BENCH_NUM_OPS; op++) {
                    passed[impl][l][d][op] = 1;
                    if (!plan->layouts[l] || !plan->dtypes[d] || !plan->ops[op] ||
                        (impl == IMPL_PLAIN && (d != DTYPE_F32 || !have_plain)))
                        continue;
                    double error = 0.0;
                    const char *worst = "", *worst_shape = "";
                    int applies = 1;
                    for (int si = 0; si < shapes && applies; si++) {
                        bench_case *k = &cases[si];
                        k->layout = l, k->dtype = d, k->op = op;
                        const char *name = "";
                        double e = check_case(k, impl, &refs[si], &name);
                        applies = e >= 0.0;
                        if (si == 0 || !(e <= error)) {
                            error = e;
                            worst = name;
                            worst_shape = check_shapes[si];
                        }
                    }
                    if (!applies)
                        continue;
                    passed[impl][l][d][op] = error <= tolerance[d];
                    failures += !passed[impl][l][d][op];
                    printf("# check %s %s %s %s threads=%d: max rel err %.2e (%s on %s)%s\n",
                           impl_names[impl], bench_layout_names[l], bench_dtype_names[d],
                           bench_op_names[op], threads, error, worst, worst_shape,
                           passed[impl][l][d][op] ? "" : " FAILED");
                }
    for (int si = 0; si < shapes; si++) {
        bench_case *k = &cases[si];
        void *all[] = {k->x, k->z, k->y, k->dy, k->dx, k->dz, k->w, k->b, k->rm, k->rv,
                       k->dw, k->db, k->sm, k->si, k->scratch, refs[si].y, refs[si].dx,
                       refs[si].dz, refs[si].rm, refs[si].rv, refs[si].dw, refs[si].db,
                       refs[si].sm, refs[si].si};
        for (size_t t = 0; t < sizeof all / sizeof all[0]; t++)
            free(all[t]);
    }
    fflush(stdout);
    return failures;
}
