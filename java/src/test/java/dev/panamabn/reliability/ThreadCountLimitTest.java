package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;
import dev.panamabn.Parallelism;
import dev.panamabn.Shape;
import org.junit.jupiter.api.Test;

import java.io.File;
import java.nio.file.Files;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * An absurd thread count must not take the JVM down: {@code Parallelism.setThreads(n)} either
 * refuses n with an IllegalArgumentException, or a later large call still works (the library
 * caps the team it asks OpenMP for). Each count runs in a child JVM, since a failure here is the
 * process exiting (libgomp aborts when it cannot create the threads or their bookkeeping).
 */
class ThreadCountLimitTest {

    /** Child JVM main: set the count, then one call large enough to take the parallel path. */
    public static final class Probe {
        private Probe() {
        }

        public static void main(String[] args) {
            int threads = Integer.parseInt(args[0]);
            try {
                Parallelism.setThreads(threads);
            } catch (IllegalArgumentException refused) {
                System.out.println("refused: " + refused.getMessage());
                return;
            }
            Shape shape = Shape.of(4, 4, 1 << 15);
            float[] x = Data.floats(Data.Kind.GAUSSIAN, 1, shape.elementCount());
            float[] y = new float[x.length];
            try (BatchNorm bn = BatchNorm.create(4)) {
                bn.forward(x, shape, y);
            }
            System.out.println("ran with " + Parallelism.threads() + " threads, y[0] = " + y[0]);
        }
    }

    @Test
    void hugeThreadCountsAreRefusedOrCapped() throws Exception {
        String java = ProcessHandle.current().info().command().orElseThrow();
        // A crashing child writes hs_err files into its working directory: keep them out of the tree.
        File scratch = Files.createTempDirectory("bn-threads").toFile();
        try {
            probeEach(java, scratch);
        } finally {
            File[] left = scratch.listFiles();
            for (File f : left == null ? new File[0] : left) {
                Files.delete(f.toPath());
            }
            Files.delete(scratch.toPath());
        }
    }

    private static void probeEach(String java, File scratch) throws Exception {
        for (int threads : new int[] {4096, 1 << 20, Integer.MAX_VALUE}) {
            Process p = new ProcessBuilder(List.of(java, "--enable-native-access=ALL-UNNAMED", "-cp",
                    System.getProperty("java.class.path"), Probe.class.getName(), Integer.toString(threads)))
                    .directory(scratch).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes());
            assertTrue(p.waitFor(120, TimeUnit.SECONDS), "the probe hung at " + threads + " threads");
            assertEquals(0, p.exitValue(), "setThreads(" + threads + ") then a large call killed the JVM:\n" + out);
            assertTrue(out.contains("refused: ") || out.contains("ran with "), out);
        }
    }
}
