package dev.panamabn.bench;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * One BatchNorm call of one implementation, shape, layout, element type, op and thread count per
 * JMH run, in two cache modes: {@link #warm} calls it on the same tensors again and again;
 * {@link #cold} flushes the memory the call touches from every cache level before each call
 * ({@link CacheFlush}, outside the timed part), as the suite's other peers do.
 *
 * <p>threads is the native thread count (set through {@code Parallelism}) for panama-batchnorm,
 * and the number of platform threads the channels are split over for the pure-Java
 * implementations (see {@link ChannelSplitter}). JMH itself calls from one thread.
 * {@link BenchMain} runs this with the suite's options; plain JMH runs it too.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {
        "--enable-native-access=ALL-UNNAMED", "--add-modules", "jdk.incubator.vector"})
public class BatchNormBenchmark {

    @Param({"32x64x56x56", "256x512x7x7", "64x256x14x14", "8x32x112x112", "128x16x32x32",
            "1x8x4x4"})
    public String shape;

    @Param({"nchw"})
    public String layout;

    @Param({"f32"})
    public String dtype;

    @Param({"forward_train", "forward_eval", "backward"})
    public String op;

    @Param({"panama-batchnorm", "panama-batchnorm-array", "java-scalar", "java-vector"})
    public String impl;

    @Param({"1", "2"})
    public int threads;

    private Kernel kernel;
    private Runnable call;
    private List<MemorySegment> touched;

    @Setup
    public void setUp() {
        kernel = Kernel.create(impl, TestData.timed(Dims.parse(shape)), threads,
                TensorLayout.of(layout), ElementType.of(dtype));
        call = kernel.prepare(Op.of(op));
        touched = kernel.touched(Op.of(op));
    }

    @TearDown
    public void tearDown() {
        kernel.close();
    }

    @Benchmark
    public void warm() {
        call.run();
    }

    @Benchmark
    public void cold(Flushed flushed) {
        call.run();
    }

    /** Before every call of {@link #cold}: the call's memory flushed from the caches. */
    @State(Scope.Thread)
    public static class Flushed {

        @Setup(Level.Invocation)
        public void flush(BatchNormBenchmark benchmark) {
            CacheFlush.flush(benchmark.touched);
        }
    }
}
