/*
 * Replays every testdata/golden/<case>.txt file (format: testdata/golden/FORMAT.md) through the C API,
 * carrying the module state (weight, bias, running buffers, num_batches_tracked) across steps as
 * nn.BatchNorm does, and checks every recorded output. Usage: test_golden <golden dir>.
 * A folder without cases fails: an empty folder must not pass.
 *
 * Tolerances. The golden values are PyTorch's semantics evaluated in float64 on the float32
 * inputs. Float outputs are accepted within 8*U_F32 times their scale (the magnitudes of the
 * terms that make them up): 4 ulps, the bound test_reference derives for the kernels. save_mean
 * and the backward sums are double-accurate (1e-12 relative); save_invstd comes from float
 * partial sums of squares, within 4*U_F32 relative, and that error reaches y, dx and dweight
 * through xhat (included in their 8*U_F32). Our running buffers are float and the golden ones are
 * not rounded the same way, so each step may add up to one ulp of drift: after k steps they are
 * compared within 2*(k+1)*U_F32, and outputs computed from them (eval mode) get that drift times
 * their sensitivity added.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "batchnorm.h"
#include "test_util.h"

typedef struct {
    char key[64];
    int64_t count;
    double *v;
} record;

typedef struct {
    FILE *f;
    char *line;
    size_t cap;
    const char *name;
    int bad;
} reader;

/* The next non-comment record, or 0 at end of file or on a malformed line. */
static int next_record(reader *r, record *rec) {
    free(rec->v);
    rec->v = NULL;
    for (;;) {
        if (getline(&r->line, &r->cap, r->f) < 0)
            return 0;
        if (r->line[0] != '#' && r->line[0] != '\n')
            break;
    }
    char *p = r->line, *end;
    int len = 0;
    if (sscanf(p, "%63s %n", rec->key, &len) != 1)
        goto bad;
    p += len;
    rec->count = strtoll(p, &end, 10);
    if (end == p || rec->count < 0)
        goto bad;
    p = end;
    rec->v = malloc((size_t)(rec->count > 0 ? rec->count : 1) * sizeof(double));
    for (int64_t i = 0; i < rec->count; i++) {
        rec->v[i] = strtod(p, &end);
        if (end == p)
            goto bad;
        p = end;
    }
    return 1;
bad:
    fprintf(stderr, "FAIL %s: malformed record: %.60s\n", r->name, r->line);
    r->bad = 1;
    return 0;
}

/* Reads the record that must come next; 0 (and a failure) when it is something else. */
static int expect(reader *r, record *rec, const char *key, int64_t count) {
    if (!next_record(r, rec) || strcmp(rec->key, key) != 0 || (count >= 0 && rec->count != count)) {
        if (!r->bad)
            fprintf(stderr, "FAIL %s: expected record '%s' (count %lld), got '%s' (count %lld)\n",
                    r->name, key, (long long)count, rec->key, (long long)rec->count);
        r->bad = 1;
        return 0;
    }
    return 1;
}

static float *to_floats(const record *rec) {
    float *p = malloc((size_t)(rec->count > 0 ? rec->count : 1) * sizeof(float));
    for (int64_t i = 0; i < rec->count; i++)
        p[i] = (float)rec->v[i];
    return p;
}

static double *copy_values(const record *rec) {
    double *p = malloc((size_t)(rec->count > 0 ? rec->count : 1) * sizeof(double));
    memcpy(p, rec->v, (size_t)rec->count * sizeof(double));
    return p;
}

typedef struct {
    int64_t n, c, s;
    double eps, momentum;
    int has_momentum, affine, track;
    float *weight, *bias, *rm, *rv;
    int64_t nbt;
} module;

/* The outputs one step records (NULL when absent). */
typedef struct {
    int train;
    double *x, *dy, *y, *save_mean, *save_invstd, *rm, *rv, *nbt, *dx, *dweight, *dbias;
} step;

static const char *g_case;
static int g_step;

static int check_value(const char *what, int64_t i, double got, double want, double tol) {
    if (close_to(got, want, tol)) {
        g_checks++;
        return 1;
    }
    CHECK(0, "%s step %d: %s[%lld] = %.9g, want %.12g (tol %.3g)", g_case, g_step, what,
          (long long)i, got, want, tol);
    return 0;
}

static void free_step(step *st) {
    double **all[] = {&st->x,  &st->dy, &st->y,  &st->save_mean, &st->save_invstd, &st->rm,
                      &st->rv, &st->nbt, &st->dx, &st->dweight,  &st->dbias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
}

/* Reads one step's records up to `end`; 0 on a format error. */
static int read_step(reader *r, record *rec, step *st) {
    for (;;) {
        if (!next_record(r, rec)) {
            if (!r->bad)
                fprintf(stderr, "FAIL %s: file ends inside a step\n", r->name);
            r->bad = 1;
            return 0;
        }
        if (!strcmp(rec->key, "end"))
            return 1;
        static const char *keys[] = {"x",  "dy", "y",  "save_mean", "save_invstd", "running_mean",
                                     "running_var", "num_batches_tracked", "dx", "dweight", "dbias"};
        double **slots[] = {&st->x,  &st->dy, &st->y,   &st->save_mean, &st->save_invstd, &st->rm,
                            &st->rv, &st->nbt, &st->dx, &st->dweight,   &st->dbias};
        size_t k = 0;
        while (k < sizeof keys / sizeof keys[0] && strcmp(rec->key, keys[k]))
            k++;
        if (k == sizeof keys / sizeof keys[0]) {
            fprintf(stderr, "FAIL %s: unknown record '%s' in a step\n", r->name, rec->key);
            r->bad = 1;
            return 0;
        }
        free(*slots[k]);
        *slots[k] = copy_values(rec);
    }
}

/* Runs one step on the module and checks it; `drift` bounds our running buffers' relative
 * distance from the golden ones before the step. */
static void run_step(module *md, const step *st, double drift) {
    int64_t c = md->c, m = md->n * md->s, total = md->n * c * md->s;
    float *x = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    float *dy = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    float *y = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    float *dx = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
    float *dw = malloc((size_t)c * sizeof(float)), *db = malloc((size_t)c * sizeof(float));
    float *rm_old = malloc((size_t)c * sizeof(float)), *rv_old = malloc((size_t)c * sizeof(float));
    double *mean = malloc((size_t)c * sizeof(double)), *invstd = malloc((size_t)c * sizeof(double));
    for (int64_t i = 0; i < total; i++) {
        x[i] = (float)st->x[i];
        dy[i] = (float)st->dy[i];
    }
    if (md->track) {
        memcpy(rm_old, md->rm, (size_t)c * sizeof(float));
        memcpy(rv_old, md->rv, (size_t)c * sizeof(float));
    }
    int eval_running = !st->train && md->track; /* eval with running statistics */
    double factor = 0.0;
    int32_t status;
    if (eval_running) {
        status = bn_forward_eval_f32(y, x, md->weight, md->bias, md->rm, md->rv, md->n, c, md->s,
                                     BN_LAYOUT_NCS, md->eps);
        CHECK(status == BN_OK, "%s step %d: forward_eval status %d", g_case, g_step, status);
        for (int64_t ch = 0; ch < c; ch++) {
            mean[ch] = md->rm[ch];
            invstd[ch] = 1.0 / sqrt((double)md->rv[ch] + md->eps);
        }
        status = bn_backward_eval_f32(dx, md->affine ? dw : NULL, md->affine ? db : NULL, dy, x,
                                      md->weight, md->rm, md->rv, md->n, c, md->s, BN_LAYOUT_NCS,
                                      md->eps);
        CHECK(status == BN_OK, "%s step %d: backward_eval status %d", g_case, g_step, status);
    } else {
        if (st->train && md->track) {
            md->nbt += 1;
            factor = md->has_momentum ? md->momentum : 1.0 / (double)md->nbt;
        }
        int update = st->train && md->track;
        status = bn_forward_train_f32(y, mean, invstd, update ? md->rm : NULL,
                                      update ? md->rv : NULL, x, md->weight, md->bias, md->n, c,
                                      md->s, BN_LAYOUT_NCS, md->eps, factor);
        CHECK(status == BN_OK, "%s step %d: forward_train status %d", g_case, g_step, status);
        status = bn_backward_train_f32(dx, md->affine ? dw : NULL, md->affine ? db : NULL, dy, x,
                                       md->weight, mean, invstd, md->n, c, md->s, BN_LAYOUT_NCS);
        CHECK(status == BN_OK, "%s step %d: backward_train status %d", g_case, g_step, status);
    }

    for (int64_t ch = 0; ch < c; ch++) {
        double w = md->affine ? md->weight[ch] : 1.0, b = md->affine ? md->bias[ch] : 0.0;
        double gm = st->save_mean[ch], gi = st->save_invstd[ch];
        /* the statistics */
        if (eval_running) {
            check_value("save_mean", ch, mean[ch], gm, 2 * drift * fabs(gm) + 1e-30);
            check_value("save_invstd", ch, invstd[ch], gi, drift * fabs(gi));
        } else {
            check_value("save_mean", ch, mean[ch], gm, 1e-12 * (fabs(gm) + 1.0 / gi));
            check_value("save_invstd", ch, invstd[ch], gi, 4 * U_F32 * fabs(gi));
        }
        /* y, and the sums backward needs (for the scale of dx) */
        double sdy = 0, sdyx = 0, ady = 0, adyx = 0;
        int y_ok = 1, dx_ok = 1;
        for (int64_t k = 0; k < m; k++) {
            int64_t i = ((k / md->s) * c + ch) * md->s + k % md->s;
            double xh = (st->x[i] - gm) * gi;
            double tol = 8 * U_F32 * (fabs(xh * w) + fabs(b));
            if (eval_running)
                tol += 2 * drift * fabs(w * gi) * (fabs(gm) + fabs(st->x[i] - gm));
            if (y_ok)
                y_ok = check_value("y", i, y[i], st->y[i], tol);
            sdy += st->dy[i];
            sdyx += st->dy[i] * xh;
            ady += fabs(st->dy[i]);
            adyx += fabs(st->dy[i] * xh);
        }
        for (int64_t k = 0; k < m && dx_ok; k++) {
            int64_t i = ((k / md->s) * c + ch) * md->s + k % md->s;
            double a = fabs(w * gi), tol;
            if (eval_running)
                tol = (8 * U_F32 + drift) * a * fabs(st->dy[i]);
            else
                tol = 8 * U_F32 * a *
                      (fabs(st->dy[i]) + fabs(sdy / (double)m) +
                       fabs((st->x[i] - gm) * gi * sdyx / (double)m));
            dx_ok = check_value("dx", i, dx[i], st->dx[i], tol);
        }
        if (md->affine) {
            check_value("dbias", ch, db[ch], st->dbias[ch], 2 * U_F32 * fabs(st->dbias[ch]) + 1e-12 * ady);
            double tol = 2 * U_F32 * fabs(st->dweight[ch]) + 1e-12 * adyx;
            if (!eval_running)
                tol += 4 * U_F32 * adyx; /* through our save_invstd */
            if (eval_running)
                tol += drift * (fabs(st->dweight[ch]) + 2 * ady * fabs(gm) * gi);
            check_value("dweight", ch, dw[ch], st->dweight[ch], tol);
        }
        /* the running buffers after the step */
        if (md->track) {
            double f = factor, scale_m = (1 - f) * fabs((double)rm_old[ch]) + f * fabs(gm);
            double var_u = m > 1 ? 1.0 / (gi * gi) - md->eps : 0.0;
            double scale_v = (1 - f) * fabs((double)rv_old[ch]) + f * fabs(var_u) * (double)m / (double)(m > 1 ? m - 1 : 1);
            double d = drift + 2 * U_F32;
            check_value("running_mean", ch, md->rm[ch], st->rm[ch], d * scale_m + 1e-30);
            double dv = d * scale_v + 8 * U_F32 * f * fabs(var_u) + 1e-30;
            check_value("running_var", ch, md->rv[ch], st->rv[ch], dv);
        }
    }
    if (md->track)
        CHECK((double)md->nbt == st->nbt[0], "%s step %d: num_batches_tracked %lld, want %.0f",
              g_case, g_step, (long long)md->nbt, st->nbt[0]);
    free(x), free(dy), free(y), free(dx), free(dw), free(db), free(rm_old), free(rv_old);
    free(mean), free(invstd);
}

/* Reads and replays one case file; returns 1 when it could be read completely. */
static int run_case(const char *path, const char *name) {
    reader r = {fopen(path, "r"), NULL, 0, name, 0};
    if (!r.f) {
        fprintf(stderr, "FAIL %s: cannot open\n", path);
        return 0;
    }
    record rec = {{0}, 0, NULL};
    module md = {0};
    md.eps = 0;
    int ok = expect(&r, &rec, "case", 0) && next_record(&r, &rec) && !strcmp(rec.key, "dims") &&
             rec.count >= 2 && rec.count <= 5;
    if (ok) {
        md.n = (int64_t)rec.v[0];
        md.c = (int64_t)rec.v[1];
        md.s = 1;
        for (int64_t i = 2; i < rec.count; i++)
            md.s *= (int64_t)rec.v[i];
    }
    ok = ok && expect(&r, &rec, "eps", 1);
    if (ok)
        md.eps = rec.v[0];
    ok = ok && expect(&r, &rec, "momentum", -1) && rec.count <= 1;
    if (ok) {
        md.has_momentum = rec.count == 1;
        md.momentum = md.has_momentum ? rec.v[0] : 0.0;
    }
    ok = ok && expect(&r, &rec, "affine", 1);
    if (ok)
        md.affine = rec.v[0] != 0;
    ok = ok && expect(&r, &rec, "track_running_stats", 1);
    if (ok)
        md.track = rec.v[0] != 0;
    if (ok && md.affine) {
        ok = expect(&r, &rec, "weight", md.c);
        if (ok)
            md.weight = to_floats(&rec);
        ok = ok && expect(&r, &rec, "bias", md.c);
        if (ok)
            md.bias = to_floats(&rec);
    }
    if (ok && md.track) {
        ok = expect(&r, &rec, "running_mean", md.c);
        if (ok)
            md.rm = to_floats(&rec);
        ok = ok && expect(&r, &rec, "running_var", md.c);
        if (ok)
            md.rv = to_floats(&rec);
        ok = ok && expect(&r, &rec, "num_batches_tracked", 1);
        if (ok)
            md.nbt = (int64_t)rec.v[0];
    }
    g_case = name;
    g_step = 0;
    int train_steps = 0, ended = 0;
    while (ok && next_record(&r, &rec)) {
        if (!strcmp(rec.key, "eof")) {
            ended = 1;
            break;
        }
        if (strcmp(rec.key, "step") || rec.count != 1) {
            fprintf(stderr, "FAIL %s: expected 'step' or 'eof', got '%s'\n", name, rec.key);
            ok = 0;
            break;
        }
        step st = {0};
        st.train = rec.v[0] != 0;
        g_step++;
        ok = read_step(&r, &rec, &st);
        /* the records this step needs must all be there */
        if (ok && (!st.x || !st.dy || !st.y || !st.save_mean || !st.save_invstd || !st.dx ||
                   (md.track && (!st.rm || !st.rv || !st.nbt)) ||
                   (md.affine && (!st.dweight || !st.dbias)))) {
            fprintf(stderr, "FAIL %s step %d: a required record is missing\n", name, g_step);
            ok = 0;
        }
        if (ok)
            run_step(&md, &st, 2 * (train_steps + 1) * U_F32);
        if (st.train)
            train_steps++;
        free_step(&st);
    }
    if (ok && !ended && !r.bad) {
        fprintf(stderr, "FAIL %s: no 'eof' record\n", name);
        ok = 0;
    }
    if (ok && g_step == 0) {
        fprintf(stderr, "FAIL %s: no steps\n", name);
        ok = 0;
    }
    free(rec.v), free(r.line);
    free(md.weight), free(md.bias), free(md.rm), free(md.rv);
    fclose(r.f);
    return ok && !r.bad;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: test_golden <golden dir>\n");
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "FAIL: cannot open golden folder %s\n", argv[1]);
        return 1;
    }
    char *names[4096];
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < 4096) {
        size_t len = strlen(e->d_name);
        if (len > 4 && !strcmp(e->d_name + len - 4, ".txt"))
            names[count++] = strdup(e->d_name);
    }
    closedir(d);
    if (count == 0) {
        fprintf(stderr, "FAIL: no golden cases (*.txt) in %s: generate them with scripts/gen_golden.py\n",
                argv[1]);
        return 1;
    }
    qsort(names, (size_t)count, sizeof names[0], by_name);
    int unreadable = 0;
    for (int i = 0; i < count; i++) {
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        int before = g_failures;
        if (!run_case(path, names[i]))
            unreadable++;
        printf("%-50s %s\n", names[i], g_failures == before ? "ok" : "FAILED");
        free(names[i]);
    }
    if (unreadable)
        fprintf(stderr, "FAIL: %d golden file(s) could not be read\n", unreadable);
    printf("%d golden cases\n", count);
    return finish("test_golden") || unreadable;
}
