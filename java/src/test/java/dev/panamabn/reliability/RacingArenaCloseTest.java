package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Another thread closes the shared arena that holds a call's inputs while the call runs. Whatever
 * the JDK throws, and wherever in the call it throws, a call that threw must have changed
 * nothing: the module (counter, running statistics, gradients) and every output end bit-identical
 * to a replay, on a fresh module, of only the calls that returned.
 */
class RacingArenaCloseTest {

    private static final Shape SHAPE = Shape.of(2, 3, 4);
    private static final int COUNT = (int) SHAPE.elementCount();
    private static final float SENTINEL = 1234.5f;
    private static final int MAX_STEPS = 3_000;
    /** The closer's delay, in spin-wait hints, is uniform in [0, SPIN): about the length of the two calls. */
    private static final int SPIN = 400;
    private static final long MAX_NANOS = TimeUnit.SECONDS.toNanos(10);

    /** One step: a training forward then a backward, x and dy in an arena another thread closes. */
    private record Step(float[] x, float[] dy, float[] y, float[] dx, Throwable forward, Throwable backward) {
    }

    @Test
    void callsThatThrowChangeNothing() throws Exception {
        // The cumulative average ties every running-statistics update to the counter.
        BatchNormOptions options = BatchNormOptions.of(3).withCumulativeAverage();
        SplittableRandom random = new SplittableRandom(20261205);
        List<Step> steps = new ArrayList<>();
        int midCall = 0;
        try (BatchNorm bn = BatchNorm.create(options); Arena outputs = Arena.ofConfined()) {
            MemorySegment y = outputs.allocate(COUNT * 4L, 4);
            MemorySegment dx = outputs.allocate(COUNT * 4L, 4);
            long start = System.nanoTime();
            for (int i = 0; i < MAX_STEPS && System.nanoTime() - start < MAX_NANOS; i++) {
                float[] xa = Data.floats(Data.Kind.GAUSSIAN, random.nextLong(), COUNT);
                float[] dya = Data.floats(Data.Kind.GAUSSIAN, random.nextLong(), COUNT);
                y.fill((byte) 0);
                dx.fill((byte) 0);
                for (long j = 0; j < COUNT; j++) {
                    y.setAtIndex(ValueLayout.JAVA_FLOAT, j, SENTINEL);
                    dx.setAtIndex(ValueLayout.JAVA_FLOAT, j, SENTINEL);
                }
                Arena shared = Arena.ofShared();
                MemorySegment x = Data.segment(shared, xa, 0);
                MemorySegment dy = Data.segment(shared, dya, 0);
                // Both threads spin until both run, then the closer waits a random while: the close
                // lands before, during or after the calls.
                AtomicInteger phase = new AtomicInteger();
                int spin = random.nextInt(SPIN);
                Thread closer = Thread.ofPlatform().start(() -> {
                    phase.set(1);
                    while (phase.get() != 2) {
                        Thread.onSpinWait();
                    }
                    for (int k = 0; k < spin; k++) {
                        Thread.onSpinWait();
                    }
                    while (true) {
                        try {
                            shared.close();
                            return;
                        } catch (IllegalStateException acquiredByACall) {
                            Thread.onSpinWait();
                        }
                    }
                });
                while (phase.get() != 1) {
                    Thread.onSpinWait();
                }
                phase.set(2);
                Throwable forward = run(() -> bn.forward(x, SHAPE, y));
                Throwable backward = run(() -> bn.backward(dy, x, SHAPE, dx));
                closer.join();
                midCall += thrownByTheJdk(forward) + thrownByTheJdk(backward);
                steps.add(new Step(xa, dya, Data.read(y, COUNT), Data.read(dx, COUNT), forward, backward));
            }
            long threw = steps.stream().filter(s -> s.forward() != null).count();
            System.out.printf("racing arena close: %d steps, %d forwards threw (%d calls threw from inside the"
                    + " downcall)%n", steps.size(), threw, midCall);
            assertTrue(threw > 0 && threw < steps.size(), "the race never went both ways: " + threw + " of "
                    + steps.size() + " forwards threw");

            try (BatchNorm replay = BatchNorm.create(options)) {
                float[] ry = new float[COUNT];
                float[] rdx = new float[COUNT];
                for (int i = 0; i < steps.size(); i++) {
                    Step s = steps.get(i);
                    float[] untouched = new float[COUNT];
                    Arrays.fill(untouched, SENTINEL);
                    if (s.forward() == null) {
                        replay.forward(s.x(), SHAPE, ry);
                        assertArrayEquals(ry, s.y(), "y of step " + i);
                    } else {
                        assertArrayEquals(untouched, s.y(), "y of step " + i + ", whose forward threw " + s.forward());
                    }
                    if (s.backward() == null) {
                        replay.backward(s.dy(), s.x(), SHAPE, rdx);
                        assertArrayEquals(rdx, s.dx(), "dx of step " + i);
                    } else {
                        assertArrayEquals(untouched, s.dx(), "dx of step " + i + ", whose backward threw " + s.backward());
                    }
                }
                ModuleState.of(replay).assertSameAs(ModuleState.of(bn), "the racing module against the replay");
            }
        }
    }

    private static Throwable run(Runnable call) {
        try {
            call.run();
            return null;
        } catch (IllegalStateException e) {
            return e;
        }
    }

    /** 1 when the JDK's own check threw (the arena closed after the module's checks passed). */
    private static int thrownByTheJdk(Throwable t) {
        return t != null && "Already closed".equals(t.getMessage()) ? 1 : 0;
    }
}
