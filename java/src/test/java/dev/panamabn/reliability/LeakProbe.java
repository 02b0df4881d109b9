package dev.panamabn.reliability;

import dev.panamabn.BatchNorm;
import dev.panamabn.BatchNormOptions;
import dev.panamabn.Shape;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.management.ObjectName;

/**
 * Main class that {@link ResourceTest} runs in a child JVM with native memory tracking (NMT) on.
 * Two measures of native memory, each exact enough for a 64-byte-per-cycle leak:
 * <ul>
 *   <li>Arena memory: NMT's "Other" category, where the JVM counts Unsafe (so Arena) memory.</li>
 *   <li>Foreign malloc: bytes the C allocator has out (glibc mallinfo2) minus the bytes the JVM
 *       itself has malloc'ed (NMT's malloc total): what native libraries (libbatchnorm, libgomp)
 *       hold. Subtracting the JVM's own traffic is what makes it quiet.</li>
 * </ul>
 * Arguments: {@code close <channels>}, {@code dropped <modules> <channels>} (modules never closed,
 * then unreachable) or {@code cycles <count> <none|arena|native>} (a planted 64-byte leak per cycle
 * of that kind). Prints {@code leak-probe-result <arena> <foreign>}: growths.
 */
public final class LeakProbe {

    static final String RESULT = "leak-probe-result";
    static final int LEAK_BYTES = 64;

    @SuppressWarnings("restricted")
    private static final MethodHandle MALLOC = Linker.nativeLinker().downcallHandle(
            Linker.nativeLinker().defaultLookup().findOrThrow("malloc"),
            FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG));

    private LeakProbe() {
    }

    public static void main(String[] args) throws Throwable {
        if (args[0].equals("close")) {
            close(Integer.parseInt(args[1]));
        } else if (args[0].equals("dropped")) {
            dropped(Integer.parseInt(args[1]), Integer.parseInt(args[2]));
        } else {
            cycles(Integer.parseInt(args[1]), args[2]);
        }
    }

    /** Growth of both measures while a module of this many channels exists, then after close. */
    private static void close(int channels) throws Exception {
        long arena0 = arenaBytes();
        long foreign0 = foreignMalloc();
        BatchNorm bn = BatchNorm.create(channels);
        System.out.println(RESULT + "-open " + (arenaBytes() - arena0) + " " + (foreignMalloc() - foreign0));
        bn.close();
        System.out.println(RESULT + " " + (arenaBytes() - arena0) + " " + (foreignMalloc() - foreign0));
    }

    /**
     * Growth while {@code modules} unclosed modules are reachable, then after they became
     * unreachable and the collector ran (waiting up to 30 s for their memory to go).
     */
    private static void dropped(int modules, int channels) throws Exception {
        long arena0 = arenaBytes();
        long foreign0 = foreignMalloc();
        List<BatchNorm> held = new ArrayList<>();
        Shape shape = Shape.of(2, channels);
        float[] x = Data.floats(Data.Kind.GAUSSIAN, 3, shape.elementCount());
        for (int i = 0; i < modules; i++) {
            BatchNorm bn = BatchNorm.create(channels);
            bn.forward(x, shape, new float[x.length]);
            held.add(bn);
        }
        System.out.println(RESULT + "-open " + (arenaBytes() - arena0) + " " + (foreignMalloc() - foreign0));
        held.clear();
        long deadline = System.nanoTime() + 30_000_000_000L;
        long perModule = (long) channels * 4 * Float.BYTES;
        while (arenaBytes() - arena0 >= perModule && System.nanoTime() < deadline) {
            System.gc();
            Thread.sleep(50);
        }
        System.out.println(RESULT + " " + (arenaBytes() - arena0) + " " + (foreignMalloc() - foreign0));
    }

    private static void cycles(int cycles, String plant) throws Throwable {
        Shape shape = Shape.of(4, 8, 3, 3);
        float[] x = Data.floats(Data.Kind.GAUSSIAN, 7, shape.elementCount());
        float[] out = new float[x.length];
        for (int i = 0; i < cycles / 5; i++) {
            cycle(i, x, out, shape);
        }
        System.gc();
        long arena0 = arenaBytes();
        long foreign0 = foreignMalloc();
        long rss0 = ResourceTest.residentBytes();
        for (int i = 0; i < cycles; i++) {
            cycle(i, x, out, shape);
            switch (plant) {
                case "arena" -> Arena.global().allocate(LEAK_BYTES, 1);
                case "native" -> {
                    MemorySegment leaked = (MemorySegment) MALLOC.invokeExact((long) LEAK_BYTES);
                    if (leaked.equals(MemorySegment.NULL)) {
                        throw new OutOfMemoryError("malloc");
                    }
                }
                default -> {
                }
            }
        }
        System.gc();
        long arena = arenaBytes() - arena0;
        long foreign = foreignMalloc() - foreign0;
        System.out.printf("leak probe: %d module lifetimes%s: Arena memory %+d bytes, foreign malloc %+d bytes"
                        + " (%.2f per cycle), RSS %+d KiB%n", cycles,
                plant.equals("none") ? "" : " with a planted " + LEAK_BYTES + "-byte " + plant + " leak each",
                arena, foreign, (double) foreign / cycles, (ResourceTest.residentBytes() - rss0) / 1024);
        System.out.println(RESULT + " " + arena + " " + foreign);
    }

    /** One module lifetime: create, train forward and backward (both APIs), eval forward, close. */
    private static void cycle(int i, float[] x, float[] out, Shape shape) {
        try (BatchNorm bn = BatchNorm.create(BatchNormOptions.of((int) shape.channels()))) {
            if ((i & 1) == 0) {
                bn.forward(x, shape, out);
                bn.backward(x, x, shape, out);
            } else {
                try (Arena call = Arena.ofConfined()) {
                    MemorySegment xs = Data.segment(call, x, 0);
                    MemorySegment y = bn.forward(xs, shape, call);
                    bn.backward(y, xs, shape, call);
                }
            }
            bn.eval();
            bn.forward(x, shape, out);
        }
    }

    private static String nmtSummary() throws Exception {
        return (String) ManagementFactory.getPlatformMBeanServer().invoke(
                new ObjectName("com.sun.management:type=DiagnosticCommand"), "vmNativeMemory",
                new Object[] {new String[] {"summary", "scale=b"}}, new String[] {String[].class.getName()});
    }

    private static long find(String summary, String regex) {
        Matcher m = Pattern.compile(regex).matcher(summary);
        if (!m.find()) {
            throw new IllegalStateException("no match for " + regex + " in the NMT summary:\n" + summary);
        }
        return Long.parseLong(m.group(1));
    }

    /** Committed bytes of NMT's "Other" category (Unsafe, so Arena, allocations). */
    static long arenaBytes() throws Exception {
        return find(nmtSummary(), "Other \\(reserved=\\d+B?, committed=(\\d+)B?\\)");
    }

    /** Bytes malloc'ed by native code other than the JVM's own (see the class comment). */
    static long foreignMalloc() throws Exception {
        String summary = nmtSummary();
        long jvmMalloc = find(summary, "Total: reserved=\\d+B?, committed=\\d+B?\\s+malloc: (\\d+)B?");
        return ResourceTest.mallocInUse() - jvmMalloc;
    }
}
