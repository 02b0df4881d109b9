package dev.panamabn.bench;

/** java-scalar: placeholder until dev.panamabn.reference.ScalarBatchNorm lands. */
final class ScalarKernel implements Kernel {
    ScalarKernel(Dims dims, int threads) {
        throw new UnsupportedOperationException("java-scalar: not wired yet");
    }

    @Override
    public Runnable prepare(Op op) {
        throw new UnsupportedOperationException();
    }

    @Override
    public void close() {}
}
