package dev.panamabn;

import dev.panamabn.reference.ReferenceBatchNorm;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.stream.LongStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * Random shapes (rank 2..5), random options, several steps with random mode switches, both API
 * paths and occasional zeroGrad, against the double-precision {@link ReferenceBatchNorm}: y, the
 * saved statistics, running statistics, the counter, dx and the accumulated parameter gradients.
 */
class RandomShapesTest {

    static LongStream seeds() {
        return LongStream.range(0, 60);
    }

    @ParameterizedTest
    @MethodSource("seeds")
    void matchesTheReference(long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        Shape shape = randomShape(random);
        BatchNormOptions options = randomOptions(random, (int) shape.channels());
        String what = "seed " + seed + " " + shape + " " + options;
        int c = (int) shape.channels();
        int count = Math.toIntExact(shape.elementCount());

        ReferenceBatchNorm ref = new ReferenceBatchNorm(options);
        try (BatchNorm bn = BatchNorm.create(options); Arena arena = Arena.ofConfined()) {
            if (options.affine()) {
                randomize(random, ref.weight(), 0.2, 2);
                randomize(random, ref.bias(), -1, 1);
                Tensors.write(bn.weight(), ref.weight());
                Tensors.write(bn.bias(), ref.bias());
            }
            double[] meanScale = new double[c];
            double[] varScale = new double[c];
            if (options.trackRunningStats()) {
                randomize(random, ref.runningMean(), -2, 2);
                randomize(random, ref.runningVar(), 0.5, 3);
                Tensors.write(bn.runningMean(), ref.runningMean());
                Tensors.write(bn.runningVar(), ref.runningVar());
                widen(meanScale, varScale, ref.runningMean(), ref.runningVar());
            }
            double[] means = Tensors.uglyMeans(random, c);
            double[] spreads = Tensors.spreads(random, c);
            double[] dweight = new double[c];
            double[] dbias = new double[c];
            double[] dweightBound = new double[c];
            double[] dbiasBound = new double[c];
            long updates = 0;

            for (int step = 0; step < 6; step++) {
                boolean training = random.nextInt(10) < 7;
                boolean arrays = random.nextBoolean();
                String at = what + " step " + step + (training ? " train" : " eval") + (arrays ? " float[]" : " segment");
                if (training) {
                    bn.train();
                    ref.train();
                } else {
                    bn.eval();
                    ref.eval();
                }
                if (random.nextInt(4) == 0) {
                    bn.zeroGrad();
                    java.util.Arrays.fill(dweight, 0);
                    java.util.Arrays.fill(dbias, 0);
                    java.util.Arrays.fill(dweightBound, 0);
                    java.util.Arrays.fill(dbiasBound, 0);
                }
                double[] x = Tensors.input(random, shape, means, spreads);
                double[] dy = Tensors.gaussian(random, count, 1);
                boolean batchStatistics = training || !options.trackRunningStats();
                if (batchStatistics && shape.valuesPerChannel() == 1) {
                    var e = assertThrows(IllegalArgumentException.class, () -> bn.forward(Tensors.toFloat(x), shape, new float[count]));
                    var r = assertThrows(IllegalArgumentException.class, () -> ref.forward(x, shape));
                    assertEquals(r.getMessage(), e.getMessage(), at);
                    continue;
                }

                double[] yRef = ref.forward(x, shape);
                ReferenceBatchNorm.Gradients g = ref.backward(dy, x, shape);
                float[] y;
                float[] dx;
                if (arrays) {
                    float[] xf = Tensors.toFloat(x);
                    y = new float[count];
                    dx = new float[count];
                    bn.forward(xf, shape, y);
                    bn.backward(Tensors.toFloat(dy), xf, shape, dx);
                } else {
                    MemorySegment xs = Tensors.segment(arena, x);
                    y = Tensors.floats(bn.forward(xs, shape, arena), count);
                    dx = Tensors.floats(bn.backward(Tensors.segment(arena, dy), xs, shape, arena), count);
                }

                var stats = new Expect.Stats(shape, ref.savedMean(), ref.savedInvstd(), ref.weight(), ref.bias());
                if (batchStatistics) {
                    Expect.statistics(at, stats, x, Tensors.doublesOfDoubles(bn.savedMean(), c),
                            Tensors.doublesOfDoubles(bn.savedInvstd(), c));
                }
                Expect.forward(at, stats, x, yRef, Tensors.toDouble(y));
                Expect.dx(at, stats, batchStatistics, x, dy, g.dx(), Tensors.toDouble(dx));
                if (options.trackRunningStats()) {
                    if (training) {
                        updates++;
                    }
                    widen(meanScale, varScale, ref.runningMean(), ref.runningVar());
                    Expect.running(at + " running_mean", ref.runningMean(), Tensors.doubles(bn.runningMean(), c),
                            meanScale, updates);
                    Expect.running(at + " running_var", ref.runningVar(), Tensors.doubles(bn.runningVar(), c),
                            varScale, updates);
                    assertEquals(ref.numBatchesTracked(), bn.numBatchesTracked(), at + " num_batches_tracked");
                    // The module's buffers are float32, as in real use: the reference keeps its own
                    // values, rounded the same way, for the next steps.
                    roundToFloat(ref.runningMean());
                    roundToFloat(ref.runningVar());
                }
                if (options.affine()) {
                    double[] stepDwBound = Expect.dweightBound(stats, x, dy);
                    double[] stepDbBound = Expect.dbiasBound(stats, dy);
                    for (int ch = 0; ch < c; ch++) {
                        dweight[ch] += g.dweight()[ch];
                        dbias[ch] += g.dbias()[ch];
                        // Each accumulation rounds the float sum once more.
                        dweightBound[ch] += stepDwBound[ch] + Expect.U * Math.abs(dweight[ch]);
                        dbiasBound[ch] += stepDbBound[ch] + Expect.U * Math.abs(dbias[ch]);
                    }
                    Expect.close(at + " accumulated dweight", dweight, Tensors.doubles(bn.weightGrad(), c), dweightBound);
                    Expect.close(at + " accumulated dbias", dbias, Tensors.doubles(bn.biasGrad(), c), dbiasBound);
                }
            }
        }
    }

    static Shape randomShape(SplittableRandom random) {
        int rank = 2 + random.nextInt(4);
        long[] dims = new long[rank];
        dims[0] = 1 + random.nextInt(6);
        dims[1] = 1 + random.nextInt(7);
        for (int i = 2; i < rank; i++) {
            dims[i] = 1 + random.nextInt(rank == 3 ? 30 : 6);
        }
        return Shape.of(dims);
    }

    static BatchNormOptions randomOptions(SplittableRandom random, int channels) {
        double[] epsilons = {1e-5, 1e-3, 0.1};
        double[] momenta = {0.1, 0.5, 1.0, 0.0, Double.NaN};
        BatchNormOptions o = BatchNormOptions.of(channels)
                .withEps(epsilons[random.nextInt(epsilons.length)])
                .withAffine(random.nextInt(4) != 0)
                .withTrackRunningStats(random.nextInt(4) != 0);
        double momentum = momenta[random.nextInt(momenta.length)];
        return Double.isNaN(momentum) ? o.withCumulativeAverage() : o.withMomentum(momentum);
    }

    private static void randomize(SplittableRandom random, double[] values, double min, double max) {
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) random.nextDouble(min, max);
        }
    }

    private static void roundToFloat(double[] values) {
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) values[i];
        }
    }

    private static void widen(double[] meanScale, double[] varScale, double[] mean, double[] var) {
        for (int c = 0; c < meanScale.length; c++) {
            meanScale[c] = Math.max(meanScale[c], Math.abs(mean[c]) + Math.sqrt(Math.abs(var[c])));
            varScale[c] = Math.max(varScale[c], Math.abs(var[c]));
        }
    }
}
