package dev.panamabn.consumer;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * A training step and an eval step of a BatchNorm1d on a (4, 2) batch, checked against values
 * worked out by hand; prints how the library was reached (module path or class path).
 */
public final class Main {

    private Main() {
    }

    public static void main(String[] args) {
        Module library = BatchNorm.class.getModule();
        System.out.println("consumer: panama-batchnorm " + (library.isNamed()
                ? "as module " + library.getName() + " (module path)" : "in the unnamed module (class path)"));
        Shape shape = Shape.of(4, 2);
        // Channel 0 is 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3.
        // Channel 1 is 10 everywhere: variance 0.
        float[] x = {1, 10, 2, 10, 3, 10, 4, 10};
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(2)); Arena arena = Arena.ofConfined()) {
            MemorySegment xs = arena.allocate(x.length * 4L, 4);
            MemorySegment.copy(x, 0, xs, ValueLayout.JAVA_FLOAT, 0, x.length);
            MemorySegment y = bn.forward(xs, shape, arena);
            float[] ys = y.toArray(ValueLayout.JAVA_FLOAT);
            float[] runningMean = bn.runningMean().toArray(ValueLayout.JAVA_FLOAT);
            float[] runningVar = bn.runningVar().toArray(ValueLayout.JAVA_FLOAT);
            double invstd = 1 / Math.sqrt(1.25 + 1e-5);
            check("y of channel 0", ys[0], (1 - 2.5) * invstd);
            check("y of channel 1", ys[1], 0);
            check("running mean 0", runningMean[0], 0.1 * 2.5);
            check("running mean 1", runningMean[1], 0.1 * 10);
            check("running var 0", runningVar[0], 0.9 + 0.1 * 5.0 / 3.0);
            check("running var 1", runningVar[1], 0.9);
            bn.eval();
            float[] eval = new float[x.length];
            bn.forward(x, shape, eval);
            check("eval y of channel 1", eval[1], (10 - 1.0) / Math.sqrt(0.9 + 1e-5));
            System.out.println("consumer: y = " + Arrays.toString(ys) + ", numBatchesTracked = "
                    + bn.numBatchesTracked() + ": OK");
        }
    }

    private static void check(String what, double actual, double expected) {
        if (Math.abs(actual - expected) > 1e-5 * Math.max(1, Math.abs(expected))) {
            System.out.println("consumer: " + what + " is " + actual + ", expected " + expected);
            System.exit(1);
        }
    }
}
