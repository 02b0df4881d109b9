package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Native memory: freed by close, unusable after close, flat over many module lifetimes. */
class ResourceTest {

    /** Cycles of create, forward, backward, close in the leak test. */
    private static final int CYCLES = 100_000;

    /**
     * Bytes the C allocator has handed out and not had back (glibc {@code mallinfo2}: small blocks
     * in use plus mmapped large blocks), over the whole process. The JVM's native allocations,
     * including every {@link Arena} allocation, go through it.
     */
    static long mallocInUse() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment info = (MemorySegment) MALLINFO2.invokeExact((java.lang.foreign.SegmentAllocator) arena);
            return info.get(ValueLayout.JAVA_LONG, MALLINFO.byteOffset(MemoryLayout.PathElement.groupElement("uordblks")))
                    + info.get(ValueLayout.JAVA_LONG, MALLINFO.byteOffset(MemoryLayout.PathElement.groupElement("hblkhd")));
        } catch (Throwable t) {
            throw new AssertionError("mallinfo2 failed", t);
        }
    }

    private static final StructLayout MALLINFO = MemoryLayout.structLayout(
            ValueLayout.JAVA_LONG.withName("arena"), ValueLayout.JAVA_LONG.withName("ordblks"),
            ValueLayout.JAVA_LONG.withName("smblks"), ValueLayout.JAVA_LONG.withName("hblks"),
            ValueLayout.JAVA_LONG.withName("hblkhd"), ValueLayout.JAVA_LONG.withName("usmblks"),
            ValueLayout.JAVA_LONG.withName("fsmblks"), ValueLayout.JAVA_LONG.withName("uordblks"),
            ValueLayout.JAVA_LONG.withName("fordblks"), ValueLayout.JAVA_LONG.withName("keepcost"));

    @SuppressWarnings("restricted")
    private static final MethodHandle MALLINFO2 = Linker.nativeLinker().downcallHandle(
            Linker.nativeLinker().defaultLookup().findOrThrow("mallinfo2"), FunctionDescriptor.of(MALLINFO));

    static long residentBytes() {
        try {
            List<String> lines = Files.readAllLines(Path.of("/proc/self/status"));
            for (String line : lines) {
                if (line.startsWith("VmRSS:")) {
                    return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
                }
            }
            throw new AssertionError("no VmRSS in /proc/self/status");
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void everyMethodThrowsAfterClose() {
        BatchNorm bn = BatchNorm.create(BatchNormOptions.of(2));
        Shape shape = Shape.of(2, 2);
        float[] x = {1, 2, 3, 4};
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment xs = Data.segment(arena, x, 0);
            MemorySegment ys = Data.segment(arena, new float[4], 0);
            bn.forward(x, shape, new float[4]);
            bn.close();
            bn.close(); // idempotent
            List<Executable> calls = List.of(
                    () -> bn.forward(xs, shape, ys), () -> bn.forward(xs, shape, arena),
                    () -> bn.forward(x, shape, new float[4]),
                    () -> bn.backward(xs, xs, shape, ys), () -> bn.backward(xs, xs, shape, arena),
                    () -> bn.backward(x, x.clone(), shape, new float[4]),
                    bn::weight, bn::bias, bn::weightGrad, bn::biasGrad, bn::runningMean, bn::runningVar,
                    bn::numBatchesTracked, () -> bn.setNumBatchesTracked(3), bn::zeroGrad, bn::resetRunningStats,
                    bn::resetParameters, bn::train, bn::eval);
            for (int i = 0; i < calls.size(); i++) {
                IllegalStateException e = assertThrows(IllegalStateException.class, calls.get(i), "call " + i);
                assertTrue(e.getMessage().contains("closed"), "call " + i + ": " + e.getMessage());
            }
            assertEquals(Data.read(ys, 4).length, 4, "the caller's output stays usable");
        }
    }

    /** Growth of the probe's two measures, in bytes (see {@link LeakProbe}). */
    private record Growth(long arenaMemory, long foreignMalloc) {
    }

    /**
     * Runs {@link LeakProbe} in a fresh JVM with native memory tracking, serial GC, a fixed heap and
     * C1 only (less JVM malloc traffic), returning the growths it printed on its result line(s).
     */
    private static java.util.Map<String, Growth> probe(String... args) throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElseThrow();
        List<String> command = new java.util.ArrayList<>(List.of(java, "--enable-native-access=ALL-UNNAMED",
                "-XX:NativeMemoryTracking=summary", "-XX:+UseSerialGC", "-Xms128m", "-Xmx128m",
                "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"), LeakProbe.class.getName()));
        command.addAll(List.of(args));
        Process process = new ProcessBuilder(command).redirectErrorStream(true).start();
        String output = new String(process.getInputStream().readAllBytes());
        int exit = process.waitFor();
        System.out.print(output);
        assertEquals(0, exit, "the leak probe failed:\n" + output);
        java.util.Map<String, Growth> results = new java.util.HashMap<>();
        for (String line : output.split("\n")) {
            if (line.startsWith(LeakProbe.RESULT)) {
                String[] words = line.split(" ");
                results.put(words[0], new Growth(Long.parseLong(words[1]), Long.parseLong(words[2])));
            }
        }
        if (!results.containsKey(LeakProbe.RESULT)) {
            throw new AssertionError("no result line from the leak probe:\n" + output);
        }
        return results;
    }

    /** A module's native memory is there while it is open and all gone after close. */
    @Test
    void closeFreesTheModulesNativeMemory() throws Exception {
        int channels = 1 << 20;
        var results = probe("close", Integer.toString(channels));
        Growth open = results.get(LeakProbe.RESULT + "-open");
        Growth closed = results.get(LeakProbe.RESULT);
        // At least weight, bias, their gradients and the two running statistics: 6 floats a channel.
        long expected = (long) channels * 6 * Float.BYTES;
        assertTrue(open.arenaMemory() >= expected, "an open module holds " + open.arenaMemory()
                + " bytes of Arena memory, expected at least " + expected);
        assertEquals(0, closed.arenaMemory(), "Arena memory left after close");
        assertTrue(Math.abs(closed.foreignMalloc()) < 64 * 1024, "foreign malloc left after close: "
                + closed.foreignMalloc());
    }

    /**
     * Modules dropped without close: once unreachable, the collector frees their native memory
     * (each held 1 MiB and more).
     */
    @Test
    void unreachableUnclosedModulesAreFreed() throws Exception {
        int modules = 20;
        int channels = 1 << 16;
        var results = probe("dropped", Integer.toString(modules), Integer.toString(channels));
        Growth open = results.get(LeakProbe.RESULT + "-open");
        Growth dropped = results.get(LeakProbe.RESULT);
        long perModule = (long) channels * 4 * Float.BYTES;
        assertTrue(open.arenaMemory() >= modules * perModule, "the modules held only " + open.arenaMemory());
        assertTrue(dropped.arenaMemory() < perModule, "unreachable, never closed modules still hold "
                + dropped.arenaMemory() + " bytes of Arena memory");
    }

    /**
     * 10^5 module lifetimes (create, forward and backward through both APIs, eval forward, close)
     * leave native memory flat: Arena memory and foreign malloc each grow by less than half of what
     * a 64-byte leak per cycle would add. The same run with such a leak planted (in an Arena, or
     * by a native malloc) must exceed the bound, which shows each measure catches a leak that small.
     */
    @Test
    void manyLifetimesKeepNativeMemoryFlat() throws Exception {
        long bound = (long) CYCLES * LeakProbe.LEAK_BYTES / 2;
        String cycles = Integer.toString(CYCLES);
        Growth clean = probe("cycles", cycles, "none").get(LeakProbe.RESULT);
        assertTrue(clean.arenaMemory() < bound, "Arena memory grew by " + clean.arenaMemory() + " bytes over "
                + CYCLES + " module lifetimes (bound " + bound + ")");
        assertTrue(clean.foreignMalloc() < bound, "foreign malloc grew by " + clean.foreignMalloc() + " bytes over "
                + CYCLES + " module lifetimes (bound " + bound + ")");

        Growth arenaLeak = probe("cycles", cycles, "arena").get(LeakProbe.RESULT);
        assertTrue(arenaLeak.arenaMemory() >= bound, "a planted Arena leak was not seen: " + arenaLeak);
        Growth nativeLeak = probe("cycles", cycles, "native").get(LeakProbe.RESULT);
        assertTrue(nativeLeak.foreignMalloc() >= bound, "a planted native leak was not seen: " + nativeLeak);
    }
}
