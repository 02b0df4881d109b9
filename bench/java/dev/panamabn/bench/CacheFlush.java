package dev.panamabn.bench;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * The cold-cache mode's flush: {@code bench_flush} of libbench_flush.so (bench/c/flush.c, built
 * by bench/CMakeLists.txt), which evicts a buffer from every cache level with clflushopt, the
 * same call the C harnesses and the PyTorch peer make. The library's path comes from the system
 * property {@value #PROPERTY}. The downcall is critical with heap access, so that the float[]
 * tensors of the array-based implementations are flushed where they lie.
 */
final class CacheFlush {

    static final String PROPERTY = "bench.flush";

    private static final String PATH = System.getProperty(PROPERTY, "");
    private static final MethodHandle FLUSH = load();

    private CacheFlush() {}

    private static MethodHandle load() {
        if (PATH.isEmpty() || !Files.isRegularFile(Path.of(PATH))) {
            return null;
        }
        MemorySegment address = SymbolLookup.libraryLookup(Path.of(PATH), Arena.global())
                .findOrThrow("bench_flush");
        return Linker.nativeLinker().downcallHandle(address,
                FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG),
                Linker.Option.critical(true));
    }

    static boolean available() {
        return FLUSH != null;
    }

    /** Why cold mode cannot run, for the skipped line. */
    static String unavailableReason() {
        return PATH.isEmpty()
                ? "no cache-flush library (-D" + PROPERTY + "=<path of libbench_flush.so>)"
                : "no cache-flush library at " + PATH;
    }

    /** Evicts every segment from every cache level. */
    static void flush(List<MemorySegment> segments) {
        try {
            for (MemorySegment segment : segments) {
                FLUSH.invokeExact(segment, segment.byteSize());
            }
        } catch (Throwable t) {
            throw new IllegalStateException("bench_flush failed", t);
        }
    }
}
