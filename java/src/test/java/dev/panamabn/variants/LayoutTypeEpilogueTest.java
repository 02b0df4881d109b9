package dev.panamabn.variants;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.DataType;
import dev.panamabn.Layout;
import dev.panamabn.Shape;
import dev.panamabn.TensorSpec;
import dev.panamabn.reference.ReferenceBatchNorm;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every layout, element type and epilogue, in training and eval mode, against the double
 * reference ({@link ReferenceBatchNorm}) composed with ReLU and the residual add: the kernel
 * computes each output in double and rounds it once, so every tensor output is within one unit
 * in the last place of its type of the exact value, and the float per-channel outputs within
 * one float ulp. The ReLU mask of backward is the forward's output, as the API defines it.
 */
class LayoutTypeEpilogueTest {

    enum Fusion { NONE, RELU, ADD_RELU }

    static Stream<Arguments> cases() {
        List<Arguments> all = new ArrayList<>();
        List<Shape> shapes = List.of(Shape.of(6, 3), Shape.of(4, 5, 7), Shape.of(3, 4, 5, 6), Shape.of(2, 3, 2, 3, 4),
                Shape.of(2, 17, 3, 3));
        for (Layout layout : Layout.values()) {
            for (DataType type : DataType.values()) {
                for (Fusion fusion : Fusion.values()) {
                    for (boolean training : new boolean[] {true, false}) {
                        for (Shape shape : shapes) {
                            all.add(Arguments.of(layout, type, fusion, training, shape, 0.5));
                        }
                        // a mean far from the spread: the statistics must not cancel
                        all.add(Arguments.of(layout, type, fusion, training, Shape.of(3, 4, 5, 6), 3000.0));
                    }
                }
            }
        }
        return all.stream();
    }

    @ParameterizedTest(name = "{0} {1} {2} training={3} {4} mean={5}")
    @MethodSource("cases")
    void outputsAreTheExactValuesRoundedOnce(Layout layout, DataType type, Fusion fusion, boolean training,
                                             Shape shape, double mean) {
        TensorSpec spec = TensorSpec.of(shape, layout, type);
        int c = (int) shape.channels();
        long count = shape.elementCount();
        SplittableRandom random = new SplittableRandom(31L * shape.hashCode() + layout.ordinal() * 7 + type.ordinal());
        double[] x = TypedTensors.random(random, count, mean, mean > 1 ? 40 : 2.0, type);
        double[] z = TypedTensors.random(random, count, 0.0, 1.0, type);
        double[] dy = TypedTensors.random(random, count, 0.0, 1.0, type);
        BatchNormOptions options = BatchNormOptions.of(c).withMomentum(0.25);
        ReferenceBatchNorm ref = new ReferenceBatchNorm(options);

        try (BatchNorm bn = BatchNorm.create(options); Arena arena = Arena.ofConfined()) {
            for (int ch = 0; ch < c; ch++) {
                float w = (float) (0.5 + random.nextDouble());
                float b = (float) random.nextGaussian();
                float rm = (float) random.nextGaussian();
                float rv = (float) (0.5 + random.nextDouble());
                bn.weight().setAtIndex(ValueLayout.JAVA_FLOAT, ch, w);
                bn.bias().setAtIndex(ValueLayout.JAVA_FLOAT, ch, b);
                bn.runningMean().setAtIndex(ValueLayout.JAVA_FLOAT, ch, rm);
                bn.runningVar().setAtIndex(ValueLayout.JAVA_FLOAT, ch, rv);
                ref.weight()[ch] = w;
                ref.bias()[ch] = b;
                ref.runningMean()[ch] = rm;
                ref.runningVar()[ch] = rv;
            }
            if (!training) {
                bn.eval();
                ref.eval();
            }
            MemorySegment xs = TypedTensors.write(arena, x, spec);
            MemorySegment zs = TypedTensors.write(arena, z, spec);
            MemorySegment dys = TypedTensors.write(arena, dy, spec);
            MemorySegment ys = arena.allocate(spec.byteSize(), 64);
            MemorySegment dxs = arena.allocate(spec.byteSize(), 64);
            MemorySegment dzs = arena.allocate(spec.byteSize(), 64);

            switch (fusion) {
                case NONE -> bn.forward(xs, spec, ys);
                case RELU -> bn.forwardRelu(xs, spec, ys);
                case ADD_RELU -> bn.forwardAddRelu(xs, zs, spec, ys);
            }
            double[] t = ref.forward(x, shape);
            double[] yRef = new double[t.length];
            for (int i = 0; i < t.length; i++) {
                double v = t[i] + (fusion == Fusion.ADD_RELU ? z[i] : 0);
                yRef[i] = fusion == Fusion.NONE ? v : Math.max(v, 0);
            }
            double[] y = TypedTensors.read(ys, spec);
            TypedTensors.assertWithinUlp("y", y, yRef, type);
            for (int ch = 0; ch < c; ch++) {
                TypedTensors.assertWithinUlp("running mean", bn.runningMean().getAtIndex(ValueLayout.JAVA_FLOAT, ch),
                        ref.runningMean()[ch], DataType.FLOAT32, 1, 0);
                TypedTensors.assertWithinUlp("running var", bn.runningVar().getAtIndex(ValueLayout.JAVA_FLOAT, ch),
                        ref.runningVar()[ch], DataType.FLOAT32, 1, 0);
            }

            double[] g = new double[dy.length];
            for (int i = 0; i < g.length; i++) {
                g[i] = fusion == Fusion.NONE || y[i] > 0 ? dy[i] : 0;
            }
            switch (fusion) {
                case NONE -> bn.backward(dys, xs, spec, dxs);
                case RELU -> bn.backwardRelu(dys, ys, xs, spec, dxs);
                case ADD_RELU -> bn.backwardAddRelu(dys, ys, xs, spec, dxs, dzs);
            }
            ReferenceBatchNorm.Gradients grads = ref.backward(g, x, shape);
            TypedTensors.assertWithinUlp("dx", TypedTensors.read(dxs, spec), grads.dx(), type);
            if (fusion == Fusion.ADD_RELU) {
                assertEquals(java.util.Arrays.toString(g), java.util.Arrays.toString(TypedTensors.read(dzs, spec)),
                        "dz is the masked dy");
            }
            double gradScale = TypedTensors.maxAbs(grads.dweight()) + TypedTensors.maxAbs(grads.dbias());
            for (int ch = 0; ch < c; ch++) {
                TypedTensors.assertWithinUlp("dweight", bn.weightGrad().getAtIndex(ValueLayout.JAVA_FLOAT, ch), grads.dweight()[ch],
                        DataType.FLOAT32, 1, 1e-12 * gradScale);
                TypedTensors.assertWithinUlp("dbias", bn.biasGrad().getAtIndex(ValueLayout.JAVA_FLOAT, ch), grads.dbias()[ch],
                        DataType.FLOAT32, 1, 1e-12 * gradScale);
            }
        }
    }
}
