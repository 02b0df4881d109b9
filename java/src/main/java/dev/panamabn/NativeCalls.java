package dev.panamabn;

import dev.panamabn.internal.BatchNormNative;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * The native entry points as the module calls them: each through the generated binding when
 * every tensor is native memory, or through a critical downcall handle when one is a heap
 * segment over a Java array (the handle lets the kernel read and write the array in place). A
 * critical call keeps the GC waiting until it returns, so it suits calls of microseconds to
 * milliseconds, not seconds. Also status checking.
 */
final class NativeCalls {

    /** {@code BN_OK}. */
    static final int OK = 0;
    private static final int LAYOUT_NCS = 0;
    private static final int F32 = 0;
    private static final int ACT_NONE = 0;

    private NativeCalls() {
    }

    /** Throws when a native call returned an error status (after which it has written nothing). */
    static void check(int status, String function) {
        if (status != OK) {
            throw new BatchNormException(function, status, statusMessage(status));
        }
    }

    static String statusMessage(int status) {
        return BatchNormNative.bn_status_message(status).getString(0);
    }

    static int forwardTrain(boolean heap, MemorySegment y, MemorySegment saveMean, MemorySegment saveInvstd,
                            MemorySegment runningMean, MemorySegment runningVar, MemorySegment x, MemorySegment z,
                            MemorySegment weight, MemorySegment bias, long n, long c, long s, int layout, int dtype,
                            int act, double eps, double factor, int flags) {
        if (!heap) {
            return BatchNormNative.bn_forward_train(y, saveMean, saveInvstd, runningMean, runningVar, x, z, weight,
                    bias, n, c, s, layout, dtype, act, eps, factor, flags);
        }
        try {
            return (int) Critical.FORWARD_TRAIN.invokeExact(y, saveMean, saveInvstd, runningMean, runningVar, x, z,
                    weight, bias, n, c, s, layout, dtype, act, eps, factor, flags);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int forwardEval(boolean heap, MemorySegment y, MemorySegment x, MemorySegment z, MemorySegment weight,
                           MemorySegment bias, MemorySegment runningMean, MemorySegment runningVar, long n, long c,
                           long s, int layout, int dtype, int act, double eps) {
        if (!heap) {
            return BatchNormNative.bn_forward_eval(y, x, z, weight, bias, runningMean, runningVar, n, c, s, layout,
                    dtype, act, eps);
        }
        try {
            return (int) Critical.FORWARD_EVAL.invokeExact(y, x, z, weight, bias, runningMean, runningVar, n, c, s,
                    layout, dtype, act, eps);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int backwardTrain(boolean heap, MemorySegment dx, MemorySegment dz, MemorySegment dweight,
                             MemorySegment dbias, MemorySegment dy, MemorySegment y, MemorySegment x,
                             MemorySegment weight, MemorySegment saveMean, MemorySegment saveInvstd, long n, long c,
                             long s, int layout, int dtype, int act) {
        if (!heap) {
            return BatchNormNative.bn_backward_train(dx, dz, dweight, dbias, dy, y, x, weight, saveMean, saveInvstd,
                    n, c, s, layout, dtype, act);
        }
        try {
            return (int) Critical.BACKWARD_TRAIN.invokeExact(dx, dz, dweight, dbias, dy, y, x, weight, saveMean,
                    saveInvstd, n, c, s, layout, dtype, act);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int backwardEval(boolean heap, MemorySegment dx, MemorySegment dz, MemorySegment dweight,
                            MemorySegment dbias, MemorySegment dy, MemorySegment y, MemorySegment x,
                            MemorySegment weight, MemorySegment runningMean, MemorySegment runningVar, long n, long c,
                            long s, int layout, int dtype, int act, double eps) {
        if (!heap) {
            return BatchNormNative.bn_backward_eval(dx, dz, dweight, dbias, dy, y, x, weight, runningMean, runningVar,
                    n, c, s, layout, dtype, act, eps);
        }
        try {
            return (int) Critical.BACKWARD_EVAL.invokeExact(dx, dz, dweight, dbias, dy, y, x, weight, runningMean,
                    runningVar, n, c, s, layout, dtype, act, eps);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int stats(boolean heap, MemorySegment mean, MemorySegment m2, MemorySegment x, long n, long c, long s,
                     int layout, int dtype) {
        if (!heap) {
            return BatchNormNative.bn_stats(mean, m2, x, n, c, s, layout, dtype);
        }
        try {
            return (int) Critical.STATS.invokeExact(mean, m2, x, n, c, s, layout, dtype);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int mergeStats(MemorySegment count, MemorySegment mean, MemorySegment m2, MemorySegment counts,
                          MemorySegment means, MemorySegment m2s, long k, long c) {
        return BatchNormNative.bn_merge_stats(count, mean, m2, counts, means, m2s, k, c);
    }

    static int forwardFromStats(boolean heap, MemorySegment y, MemorySegment saveMean, MemorySegment saveInvstd,
                                MemorySegment runningMean, MemorySegment runningVar, MemorySegment x,
                                MemorySegment z, MemorySegment weight, MemorySegment bias, MemorySegment mean,
                                MemorySegment m2, long count, long n, long c, long s, int layout, int dtype, int act,
                                double eps, double factor, int flags) {
        if (!heap) {
            return BatchNormNative.bn_forward_from_stats(y, saveMean, saveInvstd, runningMean, runningVar, x, z,
                    weight, bias, mean, m2, count, n, c, s, layout, dtype, act, eps, factor, flags);
        }
        try {
            return (int) Critical.FORWARD_FROM_STATS.invokeExact(y, saveMean, saveInvstd, runningMean, runningVar, x,
                    z, weight, bias, mean, m2, count, n, c, s, layout, dtype, act, eps, factor, flags);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int backwardReduce(boolean heap, MemorySegment sumDy, MemorySegment sumDyXhat, MemorySegment dweight,
                              MemorySegment dbias, MemorySegment dy, MemorySegment y, MemorySegment x,
                              MemorySegment saveMean, MemorySegment saveInvstd, long n, long c, long s, int layout,
                              int dtype, int act) {
        if (!heap) {
            return BatchNormNative.bn_backward_reduce(sumDy, sumDyXhat, dweight, dbias, dy, y, x, saveMean,
                    saveInvstd, n, c, s, layout, dtype, act);
        }
        try {
            return (int) Critical.BACKWARD_REDUCE.invokeExact(sumDy, sumDyXhat, dweight, dbias, dy, y, x, saveMean,
                    saveInvstd, n, c, s, layout, dtype, act);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int backwardFromSums(boolean heap, MemorySegment dx, MemorySegment dz, MemorySegment dy,
                                MemorySegment y, MemorySegment x, MemorySegment weight, MemorySegment saveMean,
                                MemorySegment saveInvstd, MemorySegment sumDy, MemorySegment sumDyXhat, long count,
                                long n, long c, long s, int layout, int dtype, int act) {
        if (!heap) {
            return BatchNormNative.bn_backward_from_sums(dx, dz, dy, y, x, weight, saveMean, saveInvstd, sumDy,
                    sumDyXhat, count, n, c, s, layout, dtype, act);
        }
        try {
            return (int) Critical.BACKWARD_FROM_SUMS.invokeExact(dx, dz, dy, y, x, weight, saveMean, saveInvstd,
                    sumDy, sumDyXhat, count, n, c, s, layout, dtype, act);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    // float32 NCHW on Java arrays: the arrays are wrapped right at the call, where escape analysis
    // can remove the wrappers once the constant method handle is inlined.

    static int forwardTrain(float[] y, MemorySegment saveMean, MemorySegment saveInvstd, MemorySegment runningMean,
                            MemorySegment runningVar, float[] x, MemorySegment weight, MemorySegment bias, long n,
                            long c, long s, double eps, double factor, int flags) {
        try {
            return (int) Critical.FORWARD_TRAIN.invokeExact(MemorySegment.ofArray(y), saveMean, saveInvstd,
                    runningMean, runningVar, MemorySegment.ofArray(x), MemorySegment.NULL, weight, bias, n, c, s,
                    LAYOUT_NCS, F32, ACT_NONE, eps, factor, flags);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int forwardEval(float[] y, float[] x, MemorySegment weight, MemorySegment bias, MemorySegment runningMean,
                           MemorySegment runningVar, long n, long c, long s, double eps) {
        try {
            return (int) Critical.FORWARD_EVAL.invokeExact(MemorySegment.ofArray(y), MemorySegment.ofArray(x),
                    MemorySegment.NULL, weight, bias, runningMean, runningVar, n, c, s, LAYOUT_NCS, F32, ACT_NONE,
                    eps);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int backwardTrain(float[] dx, MemorySegment dweight, MemorySegment dbias, float[] dy, float[] x,
                             MemorySegment weight, MemorySegment saveMean, MemorySegment saveInvstd, long n, long c,
                             long s) {
        try {
            return (int) Critical.BACKWARD_TRAIN.invokeExact(MemorySegment.ofArray(dx), MemorySegment.NULL, dweight,
                    dbias, MemorySegment.ofArray(dy), MemorySegment.NULL, MemorySegment.ofArray(x), weight, saveMean,
                    saveInvstd, n, c, s, LAYOUT_NCS, F32, ACT_NONE);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    static int backwardEval(float[] dx, MemorySegment dweight, MemorySegment dbias, float[] dy, float[] x,
                            MemorySegment weight, MemorySegment runningMean, MemorySegment runningVar, long n, long c,
                            long s, double eps) {
        try {
            return (int) Critical.BACKWARD_EVAL.invokeExact(MemorySegment.ofArray(dx), MemorySegment.NULL, dweight,
                    dbias, MemorySegment.ofArray(dy), MemorySegment.NULL, MemorySegment.ofArray(x), weight,
                    runningMean, runningVar, n, c, s, LAYOUT_NCS, F32, ACT_NONE, eps);
        } catch (Throwable t) {
            throw rethrow(t);
        }
    }

    private static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException e) {
            throw e;
        }
        if (t instanceof Error e) {
            throw e;
        }
        throw new AssertionError("a downcall threw a checked exception", t);
    }

    /** Initialised on first use, after {@link NativeLibrary#ensureLoaded()} has run. */
    static final class Critical {

        static final MethodHandle FORWARD_TRAIN = critical(
                BatchNormNative.bn_forward_train$address(), BatchNormNative.bn_forward_train$descriptor());
        static final MethodHandle FORWARD_EVAL = critical(
                BatchNormNative.bn_forward_eval$address(), BatchNormNative.bn_forward_eval$descriptor());
        static final MethodHandle BACKWARD_TRAIN = critical(
                BatchNormNative.bn_backward_train$address(), BatchNormNative.bn_backward_train$descriptor());
        static final MethodHandle BACKWARD_EVAL = critical(
                BatchNormNative.bn_backward_eval$address(), BatchNormNative.bn_backward_eval$descriptor());
        static final MethodHandle STATS = critical(
                BatchNormNative.bn_stats$address(), BatchNormNative.bn_stats$descriptor());
        static final MethodHandle FORWARD_FROM_STATS = critical(
                BatchNormNative.bn_forward_from_stats$address(), BatchNormNative.bn_forward_from_stats$descriptor());
        static final MethodHandle BACKWARD_REDUCE = critical(
                BatchNormNative.bn_backward_reduce$address(), BatchNormNative.bn_backward_reduce$descriptor());
        static final MethodHandle BACKWARD_FROM_SUMS = critical(
                BatchNormNative.bn_backward_from_sums$address(), BatchNormNative.bn_backward_from_sums$descriptor());

        private Critical() {
        }

        @SuppressWarnings("restricted") // the same native functions the generated bindings link
        private static MethodHandle critical(MemorySegment address, FunctionDescriptor descriptor) {
            return Linker.nativeLinker().downcallHandle(address, descriptor, Linker.Option.critical(true));
        }
    }
}
