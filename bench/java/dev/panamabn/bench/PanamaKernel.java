package dev.panamabn.bench;

import dev.panamabn.BackwardOption;
import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Parallelism;
import dev.panamabn.TensorSpec;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * The public API on tensors of any layout and element type, held in one of two ways:
 * panama-batchnorm on native memory segments, panama-batchnorm-array on heap segments over Java
 * arrays ({@code MemorySegment.ofArray} of a float[] for float32, of a short[] holding the bits
 * for the 16-bit types), which the API passes to the kernel through critical downcalls.
 */
final class PanamaKernel implements Kernel {

    static final String SEGMENTS = "panama-batchnorm";
    static final String ARRAYS = "panama-batchnorm-array";

    /** Backward runs again and again on one forward's statistics, so they are kept (no array per call). */
    private static final BackwardOption[] RETAIN = {BackwardOption.RETAIN_STATISTICS};

    private final String impl;
    private final Arena arena = Arena.ofShared();
    private final BatchNorm module;
    private final TensorFormat format;
    private final TensorSpec spec;
    private final MemorySegment x;
    private final MemorySegment z;
    private final MemorySegment y;
    private final MemorySegment dy;
    private final MemorySegment dx;
    private final MemorySegment dz;

    /** {@code impl} is {@link #SEGMENTS} or {@link #ARRAYS}. */
    PanamaKernel(String impl, TestData data, int threads, TensorLayout layout, ElementType type) {
        this.impl = impl;
        Parallelism.setThreads(threads);
        format = new TensorFormat(data.dims(), layout, type);
        spec = format.spec();
        module = createModule(data);
        float[] zeros = new float[data.dims().count()];
        x = place(data.x());
        z = place(data.z());
        dy = place(data.dy());
        y = place(zeros);
        dx = place(zeros);
        dz = place(zeros);
    }

    /** nchw's values in this kernel's format: in a new Java array, or copied to native memory. */
    private MemorySegment place(float[] nchw) {
        MemorySegment heap = format.onHeap(nchw);
        if (impl.equals(ARRAYS)) {
            return heap;
        }
        return arena.allocate(heap.byteSize(), 64).copyFrom(heap); // as native_bench: a cache line
    }

    /** A module with the suite's eps and momentum and the data's parameters and statistics. */
    private static BatchNorm createModule(TestData data) {
        int c = data.dims().c();
        BatchNorm module = BatchNorm.create(BatchNormOptions.of(c)
                .withEps(TestData.EPS).withMomentum(TestData.MOMENTUM));
        MemorySegment.copy(data.weight(), 0, module.weight(), ValueLayout.JAVA_FLOAT, 0, c);
        MemorySegment.copy(data.bias(), 0, module.bias(), ValueLayout.JAVA_FLOAT, 0, c);
        MemorySegment.copy(data.runningMean(), 0, module.runningMean(), ValueLayout.JAVA_FLOAT,
                0, c);
        MemorySegment.copy(data.runningVar(), 0, module.runningVar(), ValueLayout.JAVA_FLOAT,
                0, c);
        return module;
    }

    /**
     * The training forward that {@link Kernel#prepare} runs once is the op's own forward, so
     * that a fused backward has the fused forward's statistics and y to mask dy with.
     */
    @Override
    public Runnable prepare(Op op) {
        Runnable forward = switch (op) {
            case FORWARD_TRAIN_RELU, BACKWARD_RELU -> () -> module.forwardRelu(x, spec, y);
            case FORWARD_TRAIN_ADD_RELU, BACKWARD_ADD_RELU ->
                    () -> module.forwardAddRelu(x, z, spec, y);
            case FORWARD_TRAIN, FORWARD_EVAL, BACKWARD -> () -> module.forward(x, spec, y);
        };
        module.train();
        forward.run();
        return switch (op) {
            case FORWARD_TRAIN, FORWARD_TRAIN_RELU, FORWARD_TRAIN_ADD_RELU -> forward;
            case FORWARD_EVAL -> {
                module.eval();
                yield forward;
            }
            case BACKWARD -> () -> module.backward(dy, x, spec, dx, RETAIN);
            case BACKWARD_RELU -> () -> module.backwardRelu(dy, y, x, spec, dx, RETAIN);
            case BACKWARD_ADD_RELU -> () -> module.backwardAddRelu(dy, y, x, spec, dx, dz, RETAIN);
        };
    }

    @Override
    public List<MemorySegment> touched(Op op) {
        List<MemorySegment> touched = new ArrayList<>(switch (op) {
            case FORWARD_TRAIN, FORWARD_EVAL, FORWARD_TRAIN_RELU -> List.of(x, y);
            case FORWARD_TRAIN_ADD_RELU -> List.of(x, z, y);
            case BACKWARD -> List.of(dy, x, dx);
            case BACKWARD_RELU -> List.of(dy, y, x, dx);
            case BACKWARD_ADD_RELU -> List.of(dy, y, x, dx, dz);
        });
        if (op.backward()) {
            touched.addAll(List.of(module.weightGrad(), module.biasGrad()));
        }
        touched.addAll(List.of(module.weight(), module.bias(), module.runningMean(),
                module.runningVar()));
        return List.copyOf(touched);
    }

    /** y, dx and dz in NCHW order as float values, whatever the layout and type. */
    @Override
    public Outputs outputs() {
        return Outputs.ofFloats(format.read(y),
                module.runningMean().toArray(ValueLayout.JAVA_FLOAT),
                module.runningVar().toArray(ValueLayout.JAVA_FLOAT), format.read(dx),
                module.weightGrad().toArray(ValueLayout.JAVA_FLOAT),
                module.biasGrad().toArray(ValueLayout.JAVA_FLOAT), format.read(dz));
    }

    @Override
    public void close() {
        module.close();
        arena.close();
    }
}
