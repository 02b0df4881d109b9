package dev.panamabn.bench;

/**
 * One implementation under test, holding its tensors for one shape and thread count. The
 * benchmark times the call that {@link #prepare} returns, so no dispatch on the op is timed.
 */
interface Kernel extends AutoCloseable {

    /**
     * Gets the implementation ready for {@code op} (backward needs the statistics of a training
     * forward; forward_eval needs eval mode) and returns the call to time.
     */
    Runnable prepare(Op op);

    @Override
    void close();

    /** The implementation named {@code impl} as in the suite's CSV rows. */
    static Kernel create(String impl, Dims dims, int threads) {
        return switch (impl) {
            case "panama-batchnorm" -> new PanamaKernel(dims, threads);
            case "panama-batchnorm-array" -> new PanamaArrayKernel(dims, threads);
            case "java-scalar" -> new ScalarKernel(dims, threads);
            case "java-vector" -> new VectorKernel(dims, threads);
            default -> throw new IllegalArgumentException("impl: expected panama-batchnorm, "
                    + "panama-batchnorm-array, java-scalar or java-vector, got '" + impl + "'");
        };
    }
}
