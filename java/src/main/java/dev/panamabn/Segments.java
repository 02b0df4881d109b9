package dev.panamabn;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The checks every tensor argument gets before a downcall, in one place: a segment the caller
 * passes and a segment the caller's {@code Arena} returns get the same ones. Each throws the
 * exception the JDK would (IllegalStateException, WrongThreadException, IllegalArgumentException)
 * but before anything has run, with a message that names the argument.
 */
final class Segments {

    private Segments() {
    }

    /** An input tensor: alive, accessible from this thread, native, aligned, large enough. */
    static void checkInput(String name, MemorySegment segment, Shape shape, long bytes) {
        if (!segment.scope().isAlive()) {
            throw new IllegalStateException(name + " cannot be used: the arena of its memory is closed");
        }
        if (!segment.isAccessibleBy(Thread.currentThread())) {
            throw new WrongThreadException(name + " is confined to another thread than "
                    + Thread.currentThread().getName());
        }
        if (!segment.isNative()) {
            throw new IllegalArgumentException(name + " must be a native segment, got a heap segment"
                    + " (use the float[] overloads for Java arrays)");
        }
        if (segment.address() == 0) {
            throw new IllegalArgumentException(name + " must not be MemorySegment.NULL");
        }
        if (segment.address() % Float.BYTES != 0) {
            throw new IllegalArgumentException(name + " must be aligned to " + Float.BYTES
                    + " bytes (float), got address 0x" + Long.toHexString(segment.address()));
        }
        if (segment.byteSize() < bytes) {
            throw new IllegalArgumentException(name + " is too small: shape " + shape + " needs " + bytes
                    + " bytes, " + name + " has " + segment.byteSize());
        }
    }

    /** An output tensor: an input that is also writable. */
    static void checkOutput(String name, MemorySegment segment, Shape shape, long bytes) {
        checkInput(name, segment, shape, bytes);
        if (segment.isReadOnly()) {
            throw new IllegalArgumentException(name + " is read-only, but it is an output");
        }
    }

    /** Output and input may be the same memory (in-place) but must not overlap otherwise. */
    static void checkInPlaceOrDisjoint(String outName, MemorySegment out, String inName, MemorySegment in,
                                       long bytes) {
        if (overlaps(out, bytes, in, bytes) && out.address() != in.address()) {
            throw new IllegalArgumentException(outName + " overlaps " + inName + " (" + outName + " at 0x"
                    + Long.toHexString(out.address()) + ", " + inName + " at 0x" + Long.toHexString(in.address())
                    + ", " + bytes + " bytes each): in-place use needs " + outName + " to be exactly " + inName);
        }
    }

    /** The first {@code bytes} of {@code segment} and all of {@code other} share no byte. */
    static void checkDisjoint(String name, MemorySegment segment, long bytes, MemorySegment other,
                              String otherName) {
        if (overlaps(segment, bytes, other, other.byteSize())) {
            throw new IllegalArgumentException(name + " overlaps " + otherName);
        }
    }

    static void checkArray(String name, float[] array, Shape shape) {
        if (array.length < shape.elementCount()) {
            throw new IllegalArgumentException(name + " is too small: shape " + shape + " needs "
                    + shape.elementCount() + " floats, " + name + " has " + array.length);
        }
    }

    /**
     * Allocates an output in the caller's arena. The module's lock is not held here: an
     * {@code Arena} is the caller's code, which may block or call back into the module. The
     * segment returned is then checked like any other output.
     */
    static MemorySegment allocateOutput(String name, Arena arena, long bytes) {
        if (!arena.scope().isAlive()) {
            throw new IllegalStateException("arena is closed: " + name + " cannot be allocated in it");
        }
        MemorySegment out = arena.allocate(bytes, Float.BYTES);
        if (out == null) {
            throw new NullPointerException("the arena returned null for " + name);
        }
        return out;
    }

    private static boolean overlaps(MemorySegment a, long aBytes, MemorySegment b, long bBytes) {
        if (aBytes == 0 || bBytes == 0) {
            return false;
        }
        long a0 = a.address();
        long b0 = b.address();
        return a0 < b0 + bBytes && b0 < a0 + aBytes;
    }
}
