package dev.panamabn.bench;

/**
 * One implementation under test, holding its tensors for one shape and thread count. The
 * benchmark times the call that {@link #prepare} returns, so no dispatch on the op is timed.
 */
interface Kernel extends AutoCloseable {

    /**
     * Gets the implementation ready for {@code op} and returns the call to time. Every
     * implementation gets ready the same way, which {@link KernelCheck} replays on the
     * reference: exactly one training forward (backward needs its statistics), then eval mode
     * for forward_eval.
     */
    Runnable prepare(Op op);

    /**
     * Copies of the outputs as they stand. After {@link #prepare} and one run of its call they
     * are that call's results; after more runs the weight and bias gradients of panama-batchnorm
     * are sums over the runs (it accumulates them, as PyTorch does), the Java kernels' are not.
     */
    Outputs outputs();

    @Override
    void close();

    /** The implementation named {@code impl} as in the suite's CSV rows. */
    static Kernel create(String impl, TestData data, int threads) {
        return switch (impl) {
            case "panama-batchnorm" -> new PanamaKernel(data, threads);
            case "panama-batchnorm-array" -> new PanamaArrayKernel(data, threads);
            case "java-scalar" -> new ScalarKernel(data, threads);
            case "java-vector" -> new VectorKernel(data, threads);
            default -> throw new IllegalArgumentException("impl: expected panama-batchnorm, "
                    + "panama-batchnorm-array, java-scalar or java-vector, got '" + impl + "'");
        };
    }
}
