package dev.panamabn;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The checks every tensor argument gets before a downcall, in one place: a segment the caller
 * passes and a segment the caller's {@code Arena} returns get the same ones. Each throws the
 * exception the JDK would (IllegalStateException, WrongThreadException, IllegalArgumentException)
 * but before anything has run, with a message that names the argument.
 *
 * <p>A tensor is a native segment or a heap segment over a Java array
 * ({@code MemorySegment.ofArray}); a call with any heap segment runs as a critical downcall,
 * which reaches the array without a copy.
 */
final class Segments {

    /** A cache line: the alignment of all memory the library allocates, outputs and state. */
    static final long CACHE_LINE = 64;

    private Segments() {
    }

    /** An input tensor: alive, accessible from this thread, aligned to its element, large enough. */
    static void checkInput(String name, MemorySegment segment, TensorSpec spec) {
        if (!segment.scope().isAlive()) {
            throw new IllegalStateException(name + " cannot be used: the arena of its memory is closed");
        }
        if (!segment.isAccessibleBy(Thread.currentThread())) {
            throw new WrongThreadException(name + " is confined to another thread than "
                    + Thread.currentThread().getName());
        }
        if (segment.isNative() && segment.address() == 0) {
            throw new IllegalArgumentException(name + " must not be MemorySegment.NULL");
        }
        int alignment = spec.dataType().byteSize();
        if (segment.address() % alignment != 0) {
            throw new IllegalArgumentException(name + " must be aligned to " + alignment + " bytes ("
                    + spec.dataType() + "), got " + (segment.isNative() ? "address 0x" : "array offset 0x")
                    + Long.toHexString(segment.address()));
        }
        long bytes = spec.byteSize();
        if (segment.byteSize() < bytes) {
            throw new IllegalArgumentException(name + " is too small: " + describe(spec) + " needs " + bytes
                    + " bytes, " + name + " has " + segment.byteSize());
        }
    }

    /** An output tensor: an input that is also writable. */
    static void checkOutput(String name, MemorySegment segment, TensorSpec spec) {
        checkInput(name, segment, spec);
        if (segment.isReadOnly()) {
            throw new IllegalArgumentException(name + " is read-only, but it is an output");
        }
    }

    /** Output and input may be the same memory (in-place) but must not overlap otherwise. */
    static void checkInPlaceOrDisjoint(String outName, MemorySegment out, String inName, MemorySegment in,
                                       long bytes) {
        if (overlaps(out, bytes, in, bytes) && !sameStart(out, in)) {
            throw new IllegalArgumentException(outName + " overlaps " + inName + " (" + bytes
                    + " bytes each, starting at different places): in-place use needs " + outName + " to be exactly "
                    + inName);
        }
    }

    /** The first {@code bytes} of {@code segment} and the first {@code otherBytes} of {@code other} share no byte. */
    static void checkDisjoint(String name, MemorySegment segment, long bytes, MemorySegment other, long otherBytes,
                              String otherName) {
        if (overlaps(segment, bytes, other, otherBytes)) {
            throw new IllegalArgumentException(name + " overlaps " + otherName);
        }
    }

    /** {@link #checkDisjoint(String, MemorySegment, long, MemorySegment, long, String)} against all of {@code other}. */
    static void checkDisjoint(String name, MemorySegment segment, long bytes, MemorySegment other, String otherName) {
        checkDisjoint(name, segment, bytes, other, other.byteSize(), otherName);
    }

    static void checkArray(String name, float[] array, Shape shape) {
        if (array.length < shape.elementCount()) {
            throw new IllegalArgumentException(name + " is too small: shape " + shape + " needs "
                    + shape.elementCount() + " floats, " + name + " has " + array.length);
        }
    }

    /** Whether a tensor (null: absent) is a heap segment; a call with one is critical. Not varargs: no allocation. */
    static boolean heap(MemorySegment segment) {
        return segment != null && !segment.isNative();
    }

    /**
     * Allocates an output in the caller's arena. The module's lock is not held here: an
     * {@code Arena} is the caller's code, which may block or call back into the module. The
     * segment returned is then checked like any other output, and must be native as an arena's
     * memory is.
     */
    static MemorySegment allocateOutput(String name, Arena arena, TensorSpec spec) {
        // on a cache line no kernel vector spans two lines (memory aligned to its element only,
        // often 16 bytes off a line, costs some ops a few percent)
        if (!arena.scope().isAlive()) {
            throw new IllegalStateException("arena is closed: " + name + " cannot be allocated in it");
        }
        MemorySegment out = arena.allocate(spec.byteSize(), CACHE_LINE);
        if (out == null) {
            throw new NullPointerException("the arena returned null for " + name);
        }
        if (!out.isNative()) {
            throw new IllegalArgumentException(name + " must be a native segment, but the arena returned a heap segment");
        }
        return out;
    }

    private static String describe(TensorSpec spec) {
        return spec instanceof Shape ? "shape " + spec : spec.toString();
    }

    /**
     * Two overlapping segments begin at the same byte: the same address, or for heap segments
     * (then over the same array) the same offset into it.
     */
    private static boolean sameStart(MemorySegment a, MemorySegment b) {
        return a.address() == b.address();
    }

    /**
     * Whether the first {@code aBytes} of a and the first {@code bBytes} of b share a byte; for heap
     * segments, whether they are over the same array and their ranges meet.
     */
    static boolean overlaps(MemorySegment a, long aBytes, MemorySegment b, long bBytes) {
        if (aBytes == 0 || bBytes == 0 || a.isNative() != b.isNative()) {
            return false;
        }
        if (a.isNative()) {
            long a0 = a.address();
            long b0 = b.address();
            return a0 < b0 + bBytes && b0 < a0 + aBytes;
        }
        return a.asSlice(0, aBytes).asOverlappingSlice(b.asSlice(0, bBytes)).isPresent();
    }
}
