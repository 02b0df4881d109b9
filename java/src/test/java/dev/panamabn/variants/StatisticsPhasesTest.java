package dev.panamabn.variants;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.ChannelStats;
import dev.panamabn.DataType;
import dev.panamabn.GradSums;
import dev.panamabn.Layout;
import dev.panamabn.Shape;
import dev.panamabn.TensorSpec;
import dev.panamabn.reference.ReferenceBatchNorm;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A batch split into shards along N, one module per shard, trained through the statistics phases
 * (batchStats, merge in shard order, forward with the merged statistics; backwardSums, sum in
 * shard order, backward with the total): every shard's y and dx, every module's running
 * statistics, and the gradients summed over shards match the double reference on the whole
 * batch, and every module holds the same bits of the running statistics.
 */
class StatisticsPhasesTest {

    @ParameterizedTest(name = "{0} shards of {1}, {2} {3}")
    @CsvSource({
            "1, '7', CHANNELS_FIRST, FLOAT32",
            "2, '4,3', CHANNELS_FIRST, FLOAT32",
            "3, '3,0,4', CHANNELS_FIRST, FLOAT32",
            "4, '2,2,1,2', CHANNELS_LAST, FLOAT32",
            "3, '1,5,1', CHANNELS_LAST, BFLOAT16",
            "2, '6,1', CHANNELS_FIRST, FLOAT16"})
    void shardsTrainLikeTheWholeBatch(int k, String sizes, Layout layout, DataType type) {
        int[] n = Arrays.stream(sizes.split(",")).mapToInt(Integer::parseInt).toArray();
        int total = Arrays.stream(n).sum();
        int c = 5;
        long h = 3;
        long w = 4;
        Shape whole = Shape.of(total, c, h, w);
        SplittableRandom random = new SplittableRandom(k * 1000L + total);
        BatchNormOptions options = BatchNormOptions.of(c).withMomentum(0.3);
        ReferenceBatchNorm ref = new ReferenceBatchNorm(options);
        List<BatchNorm> modules = new ArrayList<>();
        for (int r = 0; r < k; r++) {
            modules.add(BatchNorm.create(options));
        }
        try (Arena arena = Arena.ofConfined()) {
            for (int step = 0; step < 3; step++) {
                double[] x = TypedTensors.random(random, whole.elementCount(), 2.0 + step, 1.5, type);
                double[] dy = TypedTensors.random(random, whole.elementCount(), 0.1, 1.0, type);
                double[] yRef = ref.forward(x, whole);
                ReferenceBatchNorm.Gradients gRef = ref.backward(dy, x, whole);

                List<TensorSpec> specs = new ArrayList<>();
                List<MemorySegment> xs = new ArrayList<>();
                List<MemorySegment> dys = new ArrayList<>();
                List<ChannelStats> stats = new ArrayList<>();
                int offset = 0;
                for (int r = 0; r < k; r++) {
                    TensorSpec spec = TensorSpec.of(Shape.of(n[r], c, h, w), layout, type);
                    int len = (int) spec.shape().elementCount();
                    specs.add(spec);
                    xs.add(TypedTensors.write(arena, Arrays.copyOfRange(x, offset, offset + len), spec));
                    dys.add(TypedTensors.write(arena, Arrays.copyOfRange(dy, offset, offset + len), spec));
                    stats.add(modules.get(r).batchStats(xs.get(r), spec));
                    offset += len;
                }
                ChannelStats merged = ChannelStats.merge(stats);
                assertEquals(total * h * w, merged.count());
                List<GradSums> sums = new ArrayList<>();
                List<MemorySegment> ys = new ArrayList<>();
                for (int r = 0; r < k; r++) {
                    MemorySegment y = arena.allocate(specs.get(r).byteSize() + 1, 64);
                    modules.get(r).forward(xs.get(r), specs.get(r), y, merged);
                    ys.add(y);
                    sums.add(modules.get(r).backwardSums(dys.get(r), xs.get(r), specs.get(r)));
                }
                GradSums totalSums = GradSums.sum(sums);
                offset = 0;
                for (int r = 0; r < k; r++) {
                    TensorSpec spec = specs.get(r);
                    int len = (int) spec.shape().elementCount();
                    MemorySegment dx = arena.allocate(spec.byteSize() + 1, 64);
                    modules.get(r).backward(dys.get(r), xs.get(r), spec, dx, sums.get(r), totalSums);
                    TypedTensors.assertWithinUlp("y of shard " + r, TypedTensors.read(ys.get(r), spec),
                            Arrays.copyOfRange(yRef, offset, offset + len), type);
                    TypedTensors.assertWithinUlp("dx of shard " + r, TypedTensors.read(dx, spec),
                            Arrays.copyOfRange(gRef.dx(), offset, offset + len), type);
                    offset += len;
                }
                for (int ch = 0; ch < c; ch++) {
                    float mean0 = modules.get(0).runningMean().getAtIndex(ValueLayout.JAVA_FLOAT, ch);
                    float var0 = modules.get(0).runningVar().getAtIndex(ValueLayout.JAVA_FLOAT, ch);
                    TypedTensors.assertWithinUlp("running mean", new double[] {mean0}, new double[] {ref.runningMean()[ch]},
                            DataType.FLOAT32);
                    TypedTensors.assertWithinUlp("running var", new double[] {var0}, new double[] {ref.runningVar()[ch]},
                            DataType.FLOAT32);
                    for (BatchNorm m : modules) {
                        assertEquals(Float.floatToRawIntBits(mean0),
                                Float.floatToRawIntBits(m.runningMean().getAtIndex(ValueLayout.JAVA_FLOAT, ch)));
                        assertEquals(Float.floatToRawIntBits(var0),
                                Float.floatToRawIntBits(m.runningVar().getAtIndex(ValueLayout.JAVA_FLOAT, ch)));
                        assertEquals(step + 1, m.numBatchesTracked());
                    }
                }
            }
            // Gradients accumulated over the three steps: each module holds its shards' share.
            double[] dw = new double[c];
            double[] db = new double[c];
            for (BatchNorm m : modules) {
                for (int ch = 0; ch < c; ch++) {
                    dw[ch] += m.weightGrad().getAtIndex(ValueLayout.JAVA_FLOAT, ch);
                    db[ch] += m.biasGrad().getAtIndex(ValueLayout.JAVA_FLOAT, ch);
                }
            }
            double[] dwRef = new double[c];
            double[] dbRef = new double[c];
            // the reference returns one call's gradients: recompute the three steps' sums
            SplittableRandom replay = new SplittableRandom(k * 1000L + total);
            ReferenceBatchNorm again = new ReferenceBatchNorm(options);
            for (int step = 0; step < 3; step++) {
                double[] x = TypedTensors.random(replay, whole.elementCount(), 2.0 + step, 1.5, type);
                double[] dy = TypedTensors.random(replay, whole.elementCount(), 0.1, 1.0, type);
                again.forward(x, whole);
                ReferenceBatchNorm.Gradients g = again.backward(dy, x, whole);
                for (int ch = 0; ch < c; ch++) {
                    dwRef[ch] += g.dweight()[ch];
                    dbRef[ch] += g.dbias()[ch];
                }
            }
            // float rounding of each shard's share and of each accumulation: a few float ulps of the scale
            double scale = Arrays.stream(dwRef).map(Math::abs).max().orElse(0)
                    + Arrays.stream(dbRef).map(Math::abs).max().orElse(0);
            for (int ch = 0; ch < c; ch++) {
                assertEquals(dwRef[ch], dw[ch], 4 * k * 3 * Math.ulp((float) scale), "dweight summed over shards");
                assertEquals(dbRef[ch], db[ch], 4 * k * 3 * Math.ulp((float) scale), "dbias summed over shards");
            }
        } finally {
            modules.forEach(BatchNorm::close);
        }
    }

    @Test
    void mergeIsTheSameBitsEveryTimeAndMatchesOneShard() {
        SplittableRandom random = new SplittableRandom(5);
        Shape shape = Shape.of(6, 4, 5);
        double[] x = TypedTensors.random(random, shape.elementCount(), 100, 0.01, DataType.FLOAT32);
        try (BatchNorm bn = BatchNorm.create(4); Arena arena = Arena.ofConfined()) {
            MemorySegment xs = TypedTensors.write(arena, x, shape);
            ChannelStats all = bn.batchStats(xs, shape);
            ChannelStats merged = ChannelStats.merge(List.of(all));
            assertArrayEquals(all.mean(), merged.mean());
            assertArrayEquals(all.m2(), merged.m2());
            List<ChannelStats> parts = new ArrayList<>();
            for (int i = 0; i < 6; i++) {
                Shape one = Shape.of(1, 4, 5);
                parts.add(bn.batchStats(xs.asSlice(i * one.byteSize(), one.byteSize()), one));
            }
            ChannelStats first = ChannelStats.merge(parts);
            ChannelStats second = ChannelStats.merge(parts);
            assertArrayEquals(first.mean(), second.mean());
            assertArrayEquals(first.m2(), second.m2());
            ChannelStats packed = ChannelStats.fromArray(first.toArray(), 0, 4);
            assertArrayEquals(first.m2(), packed.m2());
            // the mean of a channel around 100 with spread 0.01: the m2 of a naive sum of squares would be noise
            for (int ch = 0; ch < 4; ch++) {
                double mean = 0;
                double m2 = 0;
                for (int i = 0; i < 6; i++) {
                    for (int j = 0; j < 5; j++) {
                        mean += x[(i * 4 + ch) * 5 + j];
                    }
                }
                mean /= 30;
                for (int i = 0; i < 6; i++) {
                    for (int j = 0; j < 5; j++) {
                        double d = x[(i * 4 + ch) * 5 + j] - mean;
                        m2 += d * d;
                    }
                }
                assertEquals(mean, first.mean()[ch], 1e-13 * Math.abs(mean));
                assertEquals(m2, first.m2()[ch], 1e-9 * m2);
            }
        }
    }

    @Test
    void misuseIsRefusedAndChangesNothing() {
        Shape shape = Shape.of(4, 3, 2);
        SplittableRandom random = new SplittableRandom(9);
        double[] x = TypedTensors.random(random, shape.elementCount(), 0, 1, DataType.FLOAT32);
        try (BatchNorm bn = BatchNorm.create(3); Arena arena = Arena.ofConfined()) {
            MemorySegment xs = TypedTensors.write(arena, x, shape);
            MemorySegment y = arena.allocate(shape.byteSize());
            ChannelStats own = bn.batchStats(xs, shape);
            ChannelStats small = ChannelStats.of(4, own.mean(), own.m2());
            assertThrows(IllegalArgumentException.class, () -> bn.forward(xs, shape, y, small), "fewer values than x");
            ChannelStats two = ChannelStats.of(8, new double[2], new double[2]);
            assertThrows(IllegalArgumentException.class, () -> bn.forward(xs, shape, y, two), "channel count");
            assertEquals(0, bn.numBatchesTracked());

            ChannelStats larger = ChannelStats.of(16, own.mean(), own.m2());
            bn.forward(xs, shape, y, larger);
            assertEquals(1, bn.numBatchesTracked());
            IllegalStateException whole = assertThrows(IllegalStateException.class,
                    () -> bn.backward(xs, xs, shape, arena.allocate(shape.byteSize())));
            assertTrue(whole.getMessage().contains("backwardSums"), whole.getMessage());
            GradSums shard = bn.backwardSums(xs, xs, shape);
            assertThrows(IllegalArgumentException.class,
                    () -> bn.backward(xs, xs, shape, arena.allocate(shape.byteSize()), shard, shard),
                    "the total must count the forward's 16 values");
            GradSums total = GradSums.of(16, shard.sumDy(), shard.sumDyXhat());
            bn.backward(xs, xs, shape, arena.allocate(shape.byteSize()), shard, total);

            bn.eval();
            assertThrows(IllegalStateException.class, () -> bn.forward(xs, shape, y, larger));
            assertEquals(1, bn.numBatchesTracked());
        }
    }
}
