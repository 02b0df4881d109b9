package dev.panamabn;

import dev.panamabn.internal.BatchNormNative;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * Native entry points beyond the generated bindings: status checking, and critical downcall
 * handles that accept heap segments ({@code MemorySegment.ofArray(float[])}) so that Java arrays
 * reach the kernel without a copy. A critical call keeps the GC waiting until it returns, so
 * these are meant for calls that take microseconds to milliseconds, not seconds.
 */
final class NativeCalls {

    /** {@code BN_LAYOUT_NCS}. */
    static final int LAYOUT_NCS = 0;
    /** {@code BN_OK}. */
    static final int OK = 0;

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

    // The critical calls wrap the arrays right at the call, where escape analysis can remove the
    // wrappers once the constant method handle is inlined.

    static int forwardTrain(float[] y, MemorySegment saveMean, MemorySegment saveInvstd,
                            MemorySegment runningMean, MemorySegment runningVar, float[] x,
                            MemorySegment weight, MemorySegment bias,
                            long n, long c, long s, double eps, double factor) {
        try {
            return (int) Critical.FORWARD_TRAIN.invokeExact(MemorySegment.ofArray(y), saveMean, saveInvstd,
                    runningMean, runningVar, MemorySegment.ofArray(x), weight, bias, n, c, s, LAYOUT_NCS, eps, factor);
        } catch (Error | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("a downcall threw a checked exception", t);
        }
    }

    static int forwardEval(float[] y, float[] x, MemorySegment weight, MemorySegment bias,
                           MemorySegment runningMean, MemorySegment runningVar,
                           long n, long c, long s, double eps) {
        try {
            return (int) Critical.FORWARD_EVAL.invokeExact(MemorySegment.ofArray(y), MemorySegment.ofArray(x),
                    weight, bias, runningMean, runningVar, n, c, s, LAYOUT_NCS, eps);
        } catch (Error | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("a downcall threw a checked exception", t);
        }
    }

    static int backwardTrain(float[] dx, MemorySegment dweight, MemorySegment dbias, float[] dy, float[] x,
                             MemorySegment weight, MemorySegment saveMean, MemorySegment saveInvstd,
                             long n, long c, long s) {
        try {
            return (int) Critical.BACKWARD_TRAIN.invokeExact(MemorySegment.ofArray(dx), dweight, dbias,
                    MemorySegment.ofArray(dy), MemorySegment.ofArray(x), weight, saveMean, saveInvstd, n, c, s,
                    LAYOUT_NCS);
        } catch (Error | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("a downcall threw a checked exception", t);
        }
    }

    static int backwardEval(float[] dx, MemorySegment dweight, MemorySegment dbias, float[] dy, float[] x,
                            MemorySegment weight, MemorySegment runningMean, MemorySegment runningVar,
                            long n, long c, long s, double eps) {
        try {
            return (int) Critical.BACKWARD_EVAL.invokeExact(MemorySegment.ofArray(dx), dweight, dbias,
                    MemorySegment.ofArray(dy), MemorySegment.ofArray(x), weight, runningMean, runningVar, n, c, s,
                    LAYOUT_NCS, eps);
        } catch (Error | RuntimeException e) {
            throw e;
        } catch (Throwable t) {
            throw new AssertionError("a downcall threw a checked exception", t);
        }
    }

    /** Initialised on first use, after {@link NativeLibrary#ensureLoaded()} has run. */
    static final class Critical {

        static final MethodHandle FORWARD_TRAIN = critical(
                BatchNormNative.bn_forward_train_f32$address(), BatchNormNative.bn_forward_train_f32$descriptor());
        static final MethodHandle FORWARD_EVAL = critical(
                BatchNormNative.bn_forward_eval_f32$address(), BatchNormNative.bn_forward_eval_f32$descriptor());
        static final MethodHandle BACKWARD_TRAIN = critical(
                BatchNormNative.bn_backward_train_f32$address(), BatchNormNative.bn_backward_train_f32$descriptor());
        static final MethodHandle BACKWARD_EVAL = critical(
                BatchNormNative.bn_backward_eval_f32$address(), BatchNormNative.bn_backward_eval_f32$descriptor());

        private Critical() {
        }

        @SuppressWarnings("restricted") // the same native functions the generated bindings link
        private static MethodHandle critical(MemorySegment address, FunctionDescriptor descriptor) {
            return Linker.nativeLinker().downcallHandle(address, descriptor, Linker.Option.critical(true));
        }
    }
}
