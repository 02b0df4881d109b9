package dev.panamabn.bench;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;

/**
 * One implementation under test, holding its tensors for one shape, layout, element type and
 * thread count. The benchmark times the call that {@link #prepare} returns, so no dispatch on the
 * op is timed.
 *
 * <p>Adding a layout, element type or fused op to an implementation: its constructor builds the
 * tensors in that layout and type from the NCHW float32 {@link TestData} (see
 * {@link TensorFormat}), its {@link #prepare} returns the call for the op, {@link #touched} lists
 * the call's memory, and {@link #supports} says so; {@link KernelCheck} then checks the new
 * outputs against the reference before BenchMain times the new rows.
 */
interface Kernel extends AutoCloseable {

    /**
     * Gets the implementation ready for {@code op} and returns the call to time. Every
     * implementation gets ready the same way, which {@link KernelCheck} replays on the
     * reference: exactly one training forward (backward needs its statistics; for a fused op it
     * is the fused forward, whose y a fused backward masks dy with), then eval mode for
     * forward_eval.
     */
    Runnable prepare(Op op);

    /**
     * Copies of the outputs as they stand, as float values in NCHW order whatever the
     * implementation's layout and type. After {@link #prepare} and one run of its call they are
     * that call's results (and y, for a backward, the y of the forward that prepare ran); after
     * more runs the weight and bias gradients of panama-batchnorm are sums over the runs (it
     * accumulates them, as PyTorch does), the Java kernels' are not.
     */
    Outputs outputs();

    /** The memory {@code op}'s call reads and writes: what cold mode flushes before each call. */
    List<MemorySegment> touched(Op op);

    @Override
    void close();

    /** The implementations, named as in the suite's CSV rows. */
    List<String> IMPLS = List.of(PanamaKernel.SEGMENTS, PanamaKernel.ARRAYS, "java-scalar",
            "java-vector");

    /** The implementation named {@code impl}, on tensors of the given layout and type. */
    static Kernel create(String impl, TestData data, int threads, TensorLayout layout,
            ElementType type) {
        if (!supports(impl, Op.FORWARD_TRAIN, layout, type)) {
            throw new IllegalArgumentException(impl + ": "
                    + unsupportedReason(lacks(Op.FORWARD_TRAIN, layout, type)));
        }
        return switch (impl) {
            case PanamaKernel.SEGMENTS, PanamaKernel.ARRAYS ->
                    new PanamaKernel(impl, data, threads, layout, type);
            case "java-scalar" -> new ScalarKernel(data, threads);
            case "java-vector" -> new VectorKernel(data, threads);
            default -> throw new IllegalArgumentException(
                    "impl: expected one of " + IMPLS + ", got '" + impl + "'");
        };
    }

    /**
     * Whether {@code impl} has a call for {@code op} on tensors of this layout and type. The
     * public API has every layout, type and op; java-scalar and java-vector are float32 NCHW
     * kernels without the fused ops.
     */
    static boolean supports(String impl, Op op, TensorLayout layout, ElementType type) {
        return impl.equals(PanamaKernel.SEGMENTS) || impl.equals(PanamaKernel.ARRAYS)
                || layout == TensorLayout.NCHW && type == ElementType.F32 && !op.fused();
    }

    /** What {@link #supports} lacks for this op, layout and type: the words of a skipped line. */
    static List<String> lacks(Op op, TensorLayout layout, ElementType type) {
        List<String> lacks = new ArrayList<>();
        if (layout != TensorLayout.NCHW) {
            lacks.add("channels-last tensors");
        }
        if (type != ElementType.F32) {
            lacks.add("16-bit tensors");
        }
        if (op.fused()) {
            lacks.add("fused ops");
        }
        return lacks;
    }

    /** Why an implementation skips combinations, from what it {@link #lacks}. */
    static String unsupportedReason(Collection<String> lacks) {
        return "it has no " + String.join(", no ", lacks);
    }

    /** The exception a kernel's {@link #prepare} throws for an op it lacks. */
    static UnsupportedOperationException unsupported(String impl, Op op) {
        return new UnsupportedOperationException(impl + " has no " + op.label());
    }
}
