/*
 * libbatchnorm: BatchNorm forward and backward with PyTorch semantics, for float32, bfloat16 and
 * float16 tensors in channels-first (NCHW) or channels-last (NHWC) layout, with fused ReLU and
 * Add+ReLU epilogues, and the statistics as public phases for data-parallel training.
 *
 * Every tensor is viewed as (N, C, S): N the batch, C the channels, S the product of the
 * spatial dims (S = 1 for BatchNorm1d on (N, C), H*W for 2d, D*H*W for 3d). M = N*S values
 * belong to each channel. The layout says how the three dims lie in memory:
 *   BN_LAYOUT_NCS  (N, C, S) contiguous: PyTorch's default (NCL, NCHW, NCDHW);
 *   BN_LAYOUT_NSC  (N, S, C) contiguous: channels-last (NLC, NHWC, NDHWC), PyTorch's
 *                  channels_last / channels_last_3d, TensorFlow's default.
 * For S == 1 the two layouts are the same memory.
 *
 * Element types (the dtype argument) of the tensors x, y, z, dy, dx, dz: BN_F32, BN_BF16 (bfloat16)
 * or BN_F16 (IEEE binary16); every tensor of one call has the same type. Per-channel arrays are
 * float (weight, bias, their gradients, running statistics) or double (statistics), whatever
 * the tensors' type. Statistics accumulate in double; every output element is rounded once, to
 * nearest-even, from its value computed in double (float32 outputs) or in float (16-bit outputs,
 * as PyTorch does; per-channel constants too large or small for float keep double for the call).
 *
 * Epilogues (the act argument), PyTorch's composition:
 *   BN_ACT_NONE      y = bn(x)
 *   BN_ACT_RELU      y = relu(bn(x))
 *   BN_ACT_ADD_RELU  y = relu(bn(x) + z), z (the residual) of x's shape, layout and type.
 * The backward of a fused forward takes that forward's output y and masks dy with y > 0 (ReLU's
 * gradient is 0 at 0); for Add+ReLU it also writes dz, the masked dy.
 *
 * Conventions:
 *  - Outputs first, then inputs, then sizes and scalars.
 *  - Every function returns a status: BN_OK (0) or a positive BN_ERR_* code; bn_status_message
 *    turns it into text. On an error return nothing has been written.
 *  - Pointers marked "optional" may be NULL. weight == NULL means gamma = 1, bias == NULL means
 *    beta = 0 (affine = false). running_mean and running_var are both given or both NULL.
 *  - Per-channel statistics handed from forward to backward (save_mean, save_invstd) are double:
 *    that keeps backward accurate for channels whose mean is large against their spread.
 *  - Sizes are int64_t; n >= 0, c >= 1, s >= 0 and n*c*s must fit in int64_t. An empty tensor
 *    (n == 0 or s == 0) is valid and touches no data.
 *  - In-place use: y may equal x, dx may equal dy, dz may equal dy (the exact same pointer). Any
 *    other overlap between an output and an input, or between two outputs, is the caller's error.
 *  - Results are bit-identical for any thread count: every reduction's order is a function of the
 *    shape, layout and type alone.
 *  - The library never calls exit() or abort() and never allocates.
 */
#ifndef BATCHNORM_H
#define BATCHNORM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BN_API __attribute__((visibility("default")))
#else
#define BN_API
#endif

/* Memory layouts (the layout argument). */
#define BN_LAYOUT_NCS 0 /* (N, C, S): NCHW, NCL, NCDHW */
#define BN_LAYOUT_NSC 1 /* (N, S, C): channels-last NHWC, NLC, NDHWC */

/* Element types (the dtype argument). */
#define BN_F32 0  /* IEEE binary32 */
#define BN_BF16 1 /* bfloat16: the high 16 bits of a binary32 */
#define BN_F16 2  /* IEEE binary16 */

/* Epilogues (the act argument). */
#define BN_ACT_NONE 0
#define BN_ACT_RELU 1
#define BN_ACT_ADD_RELU 2

/* Flags of the running-statistics update (the flags argument). */
#define BN_RUNNING_VAR_BIASED 1 /* store the biased batch variance (ONNX, oneDNN, DL4J) instead of
                                   PyTorch's unbiased var*M/(M-1) */

/* Status codes. */
#define BN_OK 0
#define BN_ERR_NULL_POINTER 1       /* a required pointer is NULL, or only one running buffer given */
#define BN_ERR_BAD_SIZE 2           /* n < 0, c < 1, s < 0, k < 0, or a count < 0 */
#define BN_ERR_SIZE_OVERFLOW 3      /* n*c*s (or a byte count derived from it) overflows int64_t */
#define BN_ERR_TOO_FEW_VALUES 4     /* training with exactly one value per channel (count == 1) */
#define BN_ERR_BAD_EPS 5            /* eps is NaN, infinite or negative */
#define BN_ERR_BAD_FACTOR 6         /* running-stat factor is NaN or outside [0, 1] */
#define BN_ERR_UNSUPPORTED_LAYOUT 7 /* layout is neither BN_LAYOUT_NCS nor BN_LAYOUT_NSC */
#define BN_ERR_BAD_THREADS 8        /* thread count < 1 or > 1024 */
#define BN_ERR_UNSUPPORTED_DTYPE 9  /* dtype is not BN_F32, BN_BF16 or BN_F16 */
#define BN_ERR_BAD_ACTIVATION 10    /* act is not a BN_ACT_* value, or z is missing for Add+ReLU */
#define BN_ERR_BAD_FLAGS 11         /* flags has bits other than BN_RUNNING_VAR_BIASED */
#define BN_ERR_BAD_COUNT 12         /* a total count smaller than this shard's n*s */

/* A static, NUL-terminated English description of a status code (never NULL). */
BN_API const char *bn_status_message(int32_t status);

/* ---------------------------------------------------------------------------------------------
 * Whole operations.
 * ------------------------------------------------------------------------------------------- */

/*
 * Forward pass, training mode.
 * x, y, z are (N,C,S) in `layout`, of type `dtype`; weight, bias, running_mean, running_var are
 * (C) float; save_mean, save_invstd are (C) double.
 *   mean = (1/M) sum x, var = (1/M) sum (x-mean)^2, invstd = 1/sqrt(var+eps),
 *   y = act((x-mean)*invstd*weight + bias [+ z]),
 *   running_mean = (1-factor)*running_mean + factor*mean,
 *   running_var  = (1-factor)*running_var  + factor*var*M/(M-1)   (unbiased; biased with
 *                  BN_RUNNING_VAR_BIASED in flags).
 * factor is PyTorch's momentum, or 1/num_batches_tracked for the cumulative average.
 * As in PyTorch, invstd = 0 when var == 0 and eps == 0 (y = act(bias [+ z])).
 * Optional: weight, bias, running_mean + running_var (together), save_mean, save_invstd; z only
 * for BN_ACT_ADD_RELU (required there).
 * M == 0 (empty batch): y untouched, running stats untouched, save_mean = 0, save_invstd = 0.
 * M == 1: BN_ERR_TOO_FEW_VALUES.
 */
BN_API int32_t bn_forward_train(void *y, double *save_mean, double *save_invstd,
                                float *running_mean, float *running_var,
                                const void *x, const void *z, const float *weight,
                                const float *bias, int64_t n, int64_t c, int64_t s,
                                int32_t layout, int32_t dtype, int32_t act, double eps,
                                double factor, int32_t flags);

/*
 * Forward pass, eval mode, from the running statistics (which are only read).
 * x, y, z are (N,C,S); weight, bias, running_mean, running_var are (C).
 *   y = act((x-running_mean)/sqrt(running_var+eps)*weight + bias [+ z]).
 * Optional: weight, bias; z only for BN_ACT_ADD_RELU. Required: running_mean, running_var.
 */
BN_API int32_t bn_forward_eval(void *y, const void *x, const void *z, const float *weight,
                               const float *bias, const float *running_mean,
                               const float *running_var, int64_t n, int64_t c, int64_t s,
                               int32_t layout, int32_t dtype, int32_t act, double eps);

/*
 * Backward pass of a training-mode forward, from the statistics it saved.
 * dx, dz, dy, y, x are (N,C,S); dweight, dbias, weight are (C); save_mean, save_invstd are (C).
 *   g = dy (BN_ACT_NONE) or dy*(y > 0) (ReLU, Add+ReLU; y the fused forward's output),
 *   xhat = (x-save_mean)*save_invstd,
 *   dbias = sum g, dweight = sum g*xhat,
 *   dx = weight*save_invstd*(g - dbias/M - xhat*dweight/M), dz = g (Add+ReLU).
 * dweight and dbias are overwritten (not accumulated).
 * Optional: dx, dweight, dbias (each written only when given), weight; y is required for the
 * fused epilogues and unused otherwise; dz is optional for Add+ReLU and unused otherwise.
 */
BN_API int32_t bn_backward_train(void *dx, void *dz, float *dweight, float *dbias,
                                 const void *dy, const void *y, const void *x,
                                 const float *weight, const double *save_mean,
                                 const double *save_invstd, int64_t n, int64_t c, int64_t s,
                                 int32_t layout, int32_t dtype, int32_t act);

/*
 * Backward pass of an eval-mode forward: the running statistics are constants.
 * dx, dz, dy, y, x are (N,C,S); dweight, dbias, weight, running_mean, running_var are (C).
 *   g as in bn_backward_train, invstd = 1/sqrt(running_var+eps),
 *   dx = g*weight*invstd, dweight = sum g*(x-running_mean)*invstd, dbias = sum g, dz = g.
 * Optional: dx, dz, dweight, dbias, weight. x is needed only when dweight is given; y only for
 * the fused epilogues.
 */
BN_API int32_t bn_backward_eval(void *dx, void *dz, float *dweight, float *dbias,
                                const void *dy, const void *y, const void *x,
                                const float *weight, const float *running_mean,
                                const float *running_var, int64_t n, int64_t c, int64_t s,
                                int32_t layout, int32_t dtype, int32_t act, double eps);

/* ---------------------------------------------------------------------------------------------
 * Statistics phases, for a batch split into shards (data-parallel training): PyTorch's
 * batch_norm_stats, batch_norm_gather_stats_with_counts, batch_norm_elemt,
 * batch_norm_backward_reduce and batch_norm_backward_elemt, with the statistics in double.
 *
 *   forward:  bn_stats on every shard -> exchange (count, mean, m2) -> bn_merge_stats in shard
 *             order -> bn_forward_from_stats on every shard with the merged statistics;
 *   backward: bn_backward_reduce on every shard -> exchange (sum_dy, sum_dy_xhat) -> add them in
 *             shard order -> bn_backward_from_sums on every shard with the total count.
 * One whole-batch call of bn_forward_train is these phases with a single shard.
 * ------------------------------------------------------------------------------------------- */

/*
 * Per-channel statistics of x: count = n*s values per channel, their mean and m2 = sum of squared
 * deviations from the mean. x is (N,C,S); mean, m2 are (C) double. For n*s == 0 both are 0.
 */
BN_API int32_t bn_stats(double *mean, double *m2, const void *x, int64_t n, int64_t c,
                        int64_t s, int32_t layout, int32_t dtype);

/*
 * Merges k partial statistics in order 0..k-1 with Chan's formula (the same bits on every
 * caller that passes the same partials in the same order). counts is (k); means, m2s are (k, C)
 * row-major; count is (1); mean, m2 are (C). Partials with count 0 are skipped; k == 0 or all
 * counts 0 give count 0, mean 0, m2 0.
 */
BN_API int32_t bn_merge_stats(int64_t *count, double *mean, double *m2, const int64_t *counts,
                              const double *means, const double *m2s, int64_t k, int64_t c);

/*
 * The training forward of one shard from the statistics of the whole batch (count values per
 * channel, mean, m2 as from bn_merge_stats): finalize (save_mean, save_invstd, and the running
 * statistics moved with the total count's variance, as bn_forward_train) then y of this shard.
 * count must be >= n*s; count == 1 gives BN_ERR_TOO_FEW_VALUES; count == 0 behaves as an empty
 * batch. Other arguments as bn_forward_train.
 */
BN_API int32_t bn_forward_from_stats(void *y, double *save_mean, double *save_invstd,
                                     float *running_mean, float *running_var, const void *x,
                                     const void *z, const float *weight, const float *bias,
                                     const double *mean, const double *m2, int64_t count,
                                     int64_t n, int64_t c, int64_t s, int32_t layout,
                                     int32_t dtype, int32_t act, double eps, double factor,
                                     int32_t flags);

/*
 * This shard's backward sums: sum_dy = sum g, sum_dy_xhat = sum g*xhat (double, (C)), with g and
 * xhat as in bn_backward_train, and optionally the same as float gradients dweight, dbias (this
 * shard's share; the batch's gradients are the sums over shards).
 */
BN_API int32_t bn_backward_reduce(double *sum_dy, double *sum_dy_xhat, float *dweight,
                                  float *dbias, const void *dy, const void *y, const void *x,
                                  const double *save_mean, const double *save_invstd, int64_t n,
                                  int64_t c, int64_t s, int32_t layout, int32_t dtype,
                                  int32_t act);

/*
 * dx (and dz for Add+ReLU) of one shard from the whole batch's sums and count:
 *   dx = weight*save_invstd*(g - sum_dy/count - xhat*sum_dy_xhat/count).
 * count must be >= n*s.
 */
BN_API int32_t bn_backward_from_sums(void *dx, void *dz, const void *dy, const void *y,
                                     const void *x, const float *weight,
                                     const double *save_mean, const double *save_invstd,
                                     const double *sum_dy, const double *sum_dy_xhat,
                                     int64_t count, int64_t n, int64_t c, int64_t s,
                                     int32_t layout, int32_t dtype, int32_t act);

/* ---------------------------------------------------------------------------------------------
 * float32 NCHW shorthands: the calls above with dtype BN_F32, no epilogue and PyTorch's running
 * variance; layout is still an argument.
 * ------------------------------------------------------------------------------------------- */

BN_API int32_t bn_forward_train_f32(float *y, double *save_mean, double *save_invstd,
                                    float *running_mean, float *running_var, const float *x,
                                    const float *weight, const float *bias, int64_t n,
                                    int64_t c, int64_t s, int32_t layout, double eps,
                                    double factor);

BN_API int32_t bn_forward_eval_f32(float *y, const float *x, const float *weight,
                                   const float *bias, const float *running_mean,
                                   const float *running_var, int64_t n, int64_t c, int64_t s,
                                   int32_t layout, double eps);

BN_API int32_t bn_backward_train_f32(float *dx, float *dweight, float *dbias, const float *dy,
                                     const float *x, const float *weight,
                                     const double *save_mean, const double *save_invstd,
                                     int64_t n, int64_t c, int64_t s, int32_t layout);

BN_API int32_t bn_backward_eval_f32(float *dx, float *dweight, float *dbias, const float *dy,
                                    const float *x, const float *weight,
                                    const float *running_mean, const float *running_var,
                                    int64_t n, int64_t c, int64_t s, int32_t layout, double eps);

/* ---------------------------------------------------------------------------------------------
 * Threads and dispatch.
 * ------------------------------------------------------------------------------------------- */

/*
 * Thread count used by every later call (all calling threads), in 1..1024; any other value
 * returns BN_ERR_BAD_THREADS and keeps the setting (the OpenMP runtime kills the process when it
 * cannot create the threads of a team, so an absurd count is refused up front). The default is
 * the number of processors OpenMP reports, at most 1024. Results do not depend on it.
 *
 * Oversubscription policy: one team for the whole process. A call large enough to go parallel
 * takes a process-wide team slot and runs with this many threads; a call that finds the slot
 * taken (another thread's call is running its team) runs on its calling thread alone, with the
 * same results. So k threads calling at once use at most k + T - 1 threads (T this count), never
 * k*T. Small calls never use a team. The OpenMP runtime keeps the helpers of every thread that
 * has led a team alive (idle) until that thread exits.
 */
BN_API int32_t bn_set_num_threads(int32_t num_threads);

/* The thread count currently in force. */
BN_API int32_t bn_get_num_threads(void);

/* The kernel set chosen for this CPU at load time: "avx512bf16" (AVX-512 with its bfloat16
 * conversions), "avx512", "avx2" or "generic" (BN_ISA=avx512, avx2 or generic in the environment
 * caps it). A static string, never NULL. */
BN_API const char *bn_isa(void);

#ifdef __cplusplus
}
#endif

#endif /* BATCHNORM_H */
