package dev.panamabn.reference;

/**
 * BatchNorm on float32 Java arrays in plain scalar Java, shaped like the C API
 * ({@code batchnorm.h}): outputs first, then inputs, then sizes; tensors {@code (N, C, S)} in NCHW
 * order; a null weight means gamma = 1, a null bias beta = 0, null running buffers mean none.
 * Statistics are two-pass with double accumulators.
 *
 * <p>This is the "java-scalar" baseline of the benchmarks and the demo: what a careful Java
 * programmer writes without native code or the Vector API.
 */
public final class ScalarBatchNorm {

    private ScalarBatchNorm() {
    }

    /**
     * Forward pass, training mode. x, y are (N,C,S); weight, bias, running buffers are (C);
     * saveMean and saveInvstd (C) receive the batch mean and 1/sqrt(var + eps) (0 when var and
     * eps are both 0, as in PyTorch).
     * {@code factor} is the momentum, or 1/numBatchesTracked for the cumulative average.
     */
    public static void forwardTrain(float[] y, double[] saveMean, double[] saveInvstd,
                                    float[] runningMean, float[] runningVar,
                                    float[] x, float[] weight, float[] bias,
                                    long n, long c, long s, double eps, double factor) {
        int nn = (int) n;
        int cc = (int) c;
        int ss = (int) s;
        long count = count(n, c, s);
        checkLength(y, count);
        checkLength(x, count);
        checkChannels(saveMean, c);
        checkChannels(saveInvstd, c);
        checkChannels(runningMean, c);
        checkChannels(runningVar, c);
        checkChannels(weight, c);
        checkChannels(bias, c);
        long m = n * s;
        if (m == 1) {
            throw new IllegalArgumentException("Expected more than 1 value per channel when training, got N*S = 1");
        }
        for (int ch = 0; ch < cc; ch++) {
            double sum = 0;
            for (int i = 0; i < nn; i++) {
                int base = (i * cc + ch) * ss;
                for (int j = 0; j < ss; j++) {
                    sum += x[base + j];
                }
            }
            double mean = m == 0 ? 0 : sum / m;
            double squares = 0;
            for (int i = 0; i < nn; i++) {
                int base = (i * cc + ch) * ss;
                for (int j = 0; j < ss; j++) {
                    double d = x[base + j] - mean;
                    squares += d * d;
                }
            }
            double var = m == 0 ? 0 : squares / m;
            double invstd = m == 0 ? 0 : ReferenceBatchNorm.invstd(var, eps);
            double scale = invstd * (weight == null ? 1 : weight[ch]);
            double shift = bias == null ? 0 : bias[ch];
            for (int i = 0; i < nn; i++) {
                int base = (i * cc + ch) * ss;
                for (int j = 0; j < ss; j++) {
                    y[base + j] = (float) ((x[base + j] - mean) * scale + shift);
                }
            }
            if (saveMean != null) {
                saveMean[ch] = mean;
            }
            if (saveInvstd != null) {
                saveInvstd[ch] = invstd;
            }
            if (runningMean != null && m > 0) {
                runningMean[ch] = (float) ((1 - factor) * runningMean[ch] + factor * mean);
                runningVar[ch] = (float) ((1 - factor) * runningVar[ch] + factor * var * m / (m - 1));
            }
        }
    }

    /** Forward pass, eval mode: {@code y = (x - runningMean) / sqrt(runningVar + eps) * weight + bias}. */
    public static void forwardEval(float[] y, float[] x, float[] weight, float[] bias,
                                   float[] runningMean, float[] runningVar,
                                   long n, long c, long s, double eps) {
        int nn = (int) n;
        int cc = (int) c;
        int ss = (int) s;
        long count = count(n, c, s);
        checkLength(y, count);
        checkLength(x, count);
        checkChannels(weight, c);
        checkChannels(bias, c);
        checkChannels(runningMean, c);
        checkChannels(runningVar, c);
        for (int ch = 0; ch < cc; ch++) {
            double mean = runningMean[ch];
            double scale = (weight == null ? 1 : weight[ch]) / Math.sqrt(runningVar[ch] + eps);
            double shift = bias == null ? 0 : bias[ch];
            for (int i = 0; i < nn; i++) {
                int base = (i * cc + ch) * ss;
                for (int j = 0; j < ss; j++) {
                    y[base + j] = (float) ((x[base + j] - mean) * scale + shift);
                }
            }
        }
    }

    /**
     * Backward pass of a training-mode forward, from its saved statistics. dweight and dbias are
     * overwritten; any of dx, dweight, dbias may be null.
     */
    public static void backwardTrain(float[] dx, float[] dweight, float[] dbias,
                                     float[] dy, float[] x, float[] weight,
                                     double[] saveMean, double[] saveInvstd,
                                     long n, long c, long s) {
        int nn = (int) n;
        int cc = (int) c;
        int ss = (int) s;
        long count = count(n, c, s);
        checkLength(dx, count);
        checkLength(dy, count);
        checkLength(x, count);
        checkChannels(dweight, c);
        checkChannels(dbias, c);
        checkChannels(weight, c);
        checkChannels(saveMean, c);
        checkChannels(saveInvstd, c);
        long m = n * s;
        for (int ch = 0; ch < cc; ch++) {
            double mean = saveMean[ch];
            double invstd = saveInvstd[ch];
            double sumDy = 0;
            double sumDyXmu = 0;
            for (int i = 0; i < nn; i++) {
                int base = (i * cc + ch) * ss;
                for (int j = 0; j < ss; j++) {
                    sumDy += dy[base + j];
                    sumDyXmu += dy[base + j] * (x[base + j] - mean);
                }
            }
            double sumDyXhat = sumDyXmu * invstd;
            if (dweight != null) {
                dweight[ch] = (float) sumDyXhat;
            }
            if (dbias != null) {
                dbias[ch] = (float) sumDy;
            }
            if (dx != null && m > 0) {
                double scale = (weight == null ? 1 : weight[ch]) * invstd;
                double meanDy = sumDy / m;
                double meanDyXhat = sumDyXhat / m;
                for (int i = 0; i < nn; i++) {
                    int base = (i * cc + ch) * ss;
                    for (int j = 0; j < ss; j++) {
                        double xhat = (x[base + j] - mean) * invstd;
                        dx[base + j] = (float) (scale * (dy[base + j] - meanDy - xhat * meanDyXhat));
                    }
                }
            }
        }
    }

    /** Backward pass of an eval-mode forward: the running statistics are constants. */
    public static void backwardEval(float[] dx, float[] dweight, float[] dbias,
                                    float[] dy, float[] x, float[] weight,
                                    float[] runningMean, float[] runningVar,
                                    long n, long c, long s, double eps) {
        int nn = (int) n;
        int cc = (int) c;
        int ss = (int) s;
        long count = count(n, c, s);
        checkLength(dx, count);
        checkLength(dy, count);
        checkLength(x, count);
        checkChannels(dweight, c);
        checkChannels(dbias, c);
        checkChannels(weight, c);
        checkChannels(runningMean, c);
        checkChannels(runningVar, c);
        for (int ch = 0; ch < cc; ch++) {
            double mean = runningMean[ch];
            double invstd = 1 / Math.sqrt(runningVar[ch] + eps);
            double scale = (weight == null ? 1 : weight[ch]) * invstd;
            double sumDy = 0;
            double sumDyXhat = 0;
            for (int i = 0; i < nn; i++) {
                int base = (i * cc + ch) * ss;
                for (int j = 0; j < ss; j++) {
                    sumDy += dy[base + j];
                    sumDyXhat += dy[base + j] * (x[base + j] - mean) * invstd;
                    if (dx != null) {
                        dx[base + j] = (float) (dy[base + j] * scale);
                    }
                }
            }
            if (dweight != null) {
                dweight[ch] = (float) sumDyXhat;
            }
            if (dbias != null) {
                dbias[ch] = (float) sumDy;
            }
        }
    }

    /** n*c*s after checking the sizes; arrays cannot hold more than Integer.MAX_VALUE values. */
    private static long count(long n, long c, long s) {
        if (n < 0 || c < 1 || s < 0) {
            throw new IllegalArgumentException("sizes must be n >= 0, c >= 1, s >= 0, got n=" + n + ", c=" + c + ", s=" + s);
        }
        try {
            long count = Math.multiplyExact(Math.multiplyExact(n, c), s);
            if (count > Integer.MAX_VALUE) {
                throw new ArithmeticException();
            }
            return count;
        } catch (ArithmeticException e) {
            throw new IllegalArgumentException("n*c*s does not fit in a Java array: n=" + n + ", c=" + c + ", s=" + s);
        }
    }

    /** Null arrays are optional ones, checked by the caller's contract. */
    private static void checkLength(float[] tensor, long count) {
        if (tensor != null && tensor.length < count) {
            throw new IllegalArgumentException("a tensor has " + tensor.length + " values, n*c*s = " + count);
        }
    }

    private static void checkChannels(float[] perChannel, long c) {
        if (perChannel != null && perChannel.length < c) {
            throw new IllegalArgumentException("a per-channel array has " + perChannel.length + " values, c = " + c);
        }
    }

    private static void checkChannels(double[] perChannel, long c) {
        if (perChannel != null && perChannel.length < c) {
            throw new IllegalArgumentException("a per-channel array has " + perChannel.length + " values, c = " + c);
        }
    }
}
