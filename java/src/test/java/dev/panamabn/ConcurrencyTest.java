package dev.panamabn;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** The basic contract from several threads (reliability.ConcurrencyStressTest tests it harder). */
class ConcurrencyTest {

    private static final int THREADS = 4;
    private static final int CALLS = 50;

    @Test
    void trainingUpdatesAreNotLostAndEvalCallsAgree() throws Exception {
        Shape shape = Shape.of(8, 3, 16);
        float[] x = Tensors.toFloat(Tensors.gaussian(new SplittableRandom(1), (int) shape.elementCount(), 2));
        ExecutorService pool = Executors.newFixedThreadPool(THREADS);
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of(3).withCumulativeAverage())) {
            List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                futures.add(pool.submit(() -> {
                    float[] y = new float[x.length];
                    for (int i = 0; i < CALLS; i++) {
                        bn.forward(x, shape, y);
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get();
            }
            assertEquals((long) THREADS * CALLS, bn.numBatchesTracked());
            float[] mean = Tensors.toFloat(Tensors.doublesOfDoubles(bn.savedMean(), 3));

            bn.eval();
            float[] expected = new float[x.length];
            bn.forward(x, shape, expected);
            futures.clear();
            for (int t = 0; t < THREADS; t++) {
                futures.add(pool.submit(() -> {
                    float[] y = new float[x.length];
                    for (int i = 0; i < CALLS; i++) {
                        bn.forward(x, shape, y);
                        assertArrayEquals(expected, y);
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get();
            }
            // Every batch was the same, so the cumulative average is that batch's mean.
            assertArrayEquals(mean, Tensors.floats(bn.runningMean(), 3), 1e-5f);
        } finally {
            pool.shutdown();
        }
    }
}
