/*
 * libbatchnorm: BatchNorm forward and backward for float32 tensors, PyTorch semantics.
 *
 * Every tensor is viewed as (N, C, S): N the batch, C the channels, S the product of the
 * spatial dims (S = 1 for BatchNorm1d on (N, C), H*W for 2d, D*H*W for 3d). M = N*S values
 * belong to each channel. Layout BN_LAYOUT_NCS is the contiguous PyTorch layout (NCHW);
 * the layout argument exists so that channels-last (BN_LAYOUT_NSC) can arrive later without
 * breaking callers, and other data types arrive as new functions with a new suffix (_f32 now).
 *
 * Conventions:
 *  - Outputs first, then inputs, then sizes and scalars.
 *  - Every function returns a status: BN_OK (0) or a positive BN_ERR_* code; bn_status_message
 *    turns it into text. On an error return nothing has been written.
 *  - Pointers marked "optional" may be NULL. weight == NULL means gamma = 1, bias == NULL means
 *    beta = 0 (affine = false). running_mean and running_var are both given or both NULL.
 *  - Per-channel statistics handed from forward to backward (save_mean, save_invstd) are double:
 *    keeping them in double is what lets backward stay accurate for channels whose mean is large
 *    against their spread.
 *  - Sizes are int64_t; n >= 0, c >= 1, s >= 0 and n*c*s must fit in int64_t. An empty tensor
 *    (n == 0 or s == 0) is valid and touches no data.
 *  - In-place use: y may equal x, dx may equal dy (the exact same pointer). Any other overlap
 *    between an output and an input, or between two outputs, is the caller's error.
 *  - The library never calls exit() or abort() and never allocates on the hot path.
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

/* Memory layouts (the `layout` argument). */
#define BN_LAYOUT_NCS 0 /* contiguous (N, C, S): NCHW, NCL, NCDHW */
#define BN_LAYOUT_NSC 1 /* channels-last (N, S, C): reserved, returns BN_ERR_UNSUPPORTED_LAYOUT */

/* Status codes. */
#define BN_OK 0
#define BN_ERR_NULL_POINTER 1       /* a required pointer is NULL, or only one running buffer given */
#define BN_ERR_BAD_SIZE 2           /* n < 0, c < 1 or s < 0 */
#define BN_ERR_SIZE_OVERFLOW 3      /* n*c*s (or a byte count derived from it) overflows int64_t */
#define BN_ERR_TOO_FEW_VALUES 4     /* training with exactly one value per channel (n*s == 1) */
#define BN_ERR_BAD_EPS 5            /* eps is NaN, infinite or negative */
#define BN_ERR_BAD_FACTOR 6         /* running-stat factor is NaN or outside [0, 1] */
#define BN_ERR_UNSUPPORTED_LAYOUT 7 /* layout is not BN_LAYOUT_NCS */
#define BN_ERR_BAD_THREADS 8        /* thread count < 1 or > 1024 */

/* A static, NUL-terminated English description of a status code (never NULL). */
BN_API const char *bn_status_message(int32_t status);

/*
 * Forward pass, training mode.
 * x, y are (N,C,S); weight, bias, running_mean, running_var are (C); save_mean, save_invstd are (C).
 *   mean = (1/M) sum x, var = (1/M) sum (x-mean)^2, invstd = 1/sqrt(var+eps),
 *   y = (x-mean)*invstd*weight + bias,
 *   running_mean = (1-factor)*running_mean + factor*mean,
 *   running_var  = (1-factor)*running_var  + factor*var*M/(M-1)   (unbiased).
 * factor is PyTorch's momentum, or 1/num_batches_tracked for the cumulative average.
 * As in PyTorch, invstd = 0 when var == 0 and eps == 0 (y = bias; backward then gives dx = 0).
 * Statistics are accumulated in double; the variance comes from deviations (from the mean, or in
 * one pass from a value of the data, which bounds the cancellation), never from E[x^2]-E[x]^2.
 * Optional: weight, bias, running_mean + running_var (together), save_mean, save_invstd.
 * M == 0 (empty batch): y untouched, running stats untouched, save_mean = 0, save_invstd = 0.
 * M == 1: BN_ERR_TOO_FEW_VALUES.
 */
BN_API int32_t bn_forward_train_f32(float *y, double *save_mean, double *save_invstd,
                             float *running_mean, float *running_var,
                             const float *x, const float *weight, const float *bias,
                             int64_t n, int64_t c, int64_t s, int32_t layout,
                             double eps, double factor);

/*
 * Forward pass, eval mode, from the running statistics (which are only read).
 * x, y are (N,C,S); weight, bias, running_mean, running_var are (C).
 *   y = (x-running_mean)/sqrt(running_var+eps)*weight + bias.
 * Optional: weight, bias. Required: running_mean, running_var.
 */
BN_API int32_t bn_forward_eval_f32(float *y,
                            const float *x, const float *weight, const float *bias,
                            const float *running_mean, const float *running_var,
                            int64_t n, int64_t c, int64_t s, int32_t layout,
                            double eps);

/*
 * Backward pass of a training-mode forward, from the statistics it saved.
 * dx, dy, x are (N,C,S); dweight, dbias, weight are (C); save_mean, save_invstd are (C).
 *   xhat = (x-save_mean)*save_invstd,
 *   dbias = sum dy, dweight = sum dy*xhat,
 *   dx = weight*save_invstd*(dy - dbias/M - xhat*dweight/M).
 * dweight and dbias are overwritten (not accumulated).
 * Optional: dx, dweight, dbias (each output is written only when given), weight.
 */
BN_API int32_t bn_backward_train_f32(float *dx, float *dweight, float *dbias,
                              const float *dy, const float *x, const float *weight,
                              const double *save_mean, const double *save_invstd,
                              int64_t n, int64_t c, int64_t s, int32_t layout);

/*
 * Backward pass of an eval-mode forward: the running statistics are constants.
 * dx, dy, x are (N,C,S); dweight, dbias, weight, running_mean, running_var are (C).
 *   invstd = 1/sqrt(running_var+eps),
 *   dx = dy*weight*invstd, dweight = sum dy*(x-running_mean)*invstd, dbias = sum dy.
 * Optional: dx, dweight, dbias, weight. x is needed only when dweight is given.
 */
BN_API int32_t bn_backward_eval_f32(float *dx, float *dweight, float *dbias,
                             const float *dy, const float *x, const float *weight,
                             const float *running_mean, const float *running_var,
                             int64_t n, int64_t c, int64_t s, int32_t layout,
                             double eps);

/*
 * Thread count used by every later call (all calling threads), in 1..1024; any other value
 * returns BN_ERR_BAD_THREADS and keeps the setting (the OpenMP runtime kills the process when it
 * cannot create the threads of a team, so an absurd count is refused up front). The default is
 * the number of processors OpenMP reports, at most 1024. Results do not depend on it: the
 * reduction order is a function of the shape alone.
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

#ifdef __cplusplus
}
#endif

#endif /* BATCHNORM_H */
