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

    static void check(int status, String function) {
        if (status != OK) {
            throw new BatchNormException(function, status, statusMessage(status));
        }
    }

    static String statusMessage(int status) {
        return BatchNormNative.bn_status_message(status).getString(0);
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
