/*
 * plain-c: the BatchNorm a C programmer writes in an afternoon, as the peer our library must
 * clearly beat. Two passes over the data with PyTorch's numerics: `omp simd` float partial sums
 * per row, added in double; the variance from deviations from the mean; y = (x-mean)*a + b.
 * OpenMP over channels (NCHW training and backward: a channel's rows, each contiguous, stay in
 * the core's cache between the passes), over rows in memory order (NCHW eval), or over blocks of
 * positions (NHWC, where a position's C channels are contiguous); small tensors (< 65536 values)
 * on the calling thread. float32 only. Built with -O3 -march=x86-64-v3 (AVX2 + FMA): the flags a user
 * would pick for the machines this runs on.
 */
#ifndef BENCH_PLAIN_BN_H
#define BENCH_PLAIN_BN_H

#include <stdint.h>

/*
 * One call's tensors: x, z, y, dy, dx, dz are (N,C,S) in the layout (0 NCHW, 1 NHWC); the rest
 * (C). y is the forward's output and, in a fused backward, the fused forward's output it reads.
 * scratch holds 3 * threads * C doubles (the NHWC per-thread sums).
 */
typedef struct {
    int64_t n, c, s;
    int layout, threads;
    const float *x, *z, *dy;
    float *y, *dx, *dz;
    const float *weight, *bias;
    float *running_mean, *running_var, *dweight, *dbias;
    double *save_mean, *save_invstd, *scratch;
    double eps, momentum;
} plain_bn;

/* act: 0 none, 1 ReLU, 2 Add+ReLU (z the residual); as the library's BN_ACT_*. */
void plain_forward_train(const plain_bn *p, int act);
void plain_forward_eval(const plain_bn *p, int act);
/* From save_mean/save_invstd; for act 1 and 2, dy is masked by y > 0, and act 2 writes dz. */
void plain_backward(const plain_bn *p, int act);

#endif /* BENCH_PLAIN_BN_H */
