package dev.panamabn.interop;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Objects;

/**
 * NumPy's {@code .npy} files (format versions 1.0, 2.0 and 3.0) read into and written from
 * {@link MemorySegment}s.
 *
 * <ul>
 *   <li>{@link #read} copies the data into an arena allocation in C order and the platform's byte
 *       order, whatever the file has: big-endian files are byte-swapped and Fortran-order
 *       ({@code fortran_order: True}) files are transposed to C order.</li>
 *   <li>{@link #map} maps the data of a large file without copying it (read-only, valid while the
 *       arena is open). It needs a file in C order and the platform's byte order (what
 *       {@code np.save} writes on x86), and refuses others with a message pointing at
 *       {@link #read}.</li>
 *   <li>{@link #write} writes version 1.0 (2.0 for headers over 64 KiB), C order, the platform's
 *       byte order, with the data aligned to 64 bytes as NumPy does. The file appears complete or
 *       not at all (it is written beside and moved into place).</li>
 * </ul>
 *
 * Element types: bool, (u)int8/16/32/64, float16/32/64 ({@link ElementType}). bfloat16 has no
 * NumPy type: it is written as its bit patterns under {@code '<u2'} and read back as UINT16
 * ({@link Tensor#viewAs} restores it); NumPy users get float32 from such a file with
 * {@code (a.astype(np.uint32) << 16).view(np.float32)}. Every malformed header, a truncated file
 * and trailing bytes after the data are refused with a {@link TensorFormatException} naming the
 * file and the problem.
 */
public final class Npy {

    /** The largest slice handed to one channel call (a ByteBuffer holds at most 2^31 - 1 bytes). */
    private static final long CHUNK = 1L << 30;
    private static final long DATA_ALIGNMENT = 64;

    private Npy() {
    }

    /**
     * Reads a {@code .npy} file into a new segment of {@code arena}, aligned to 64 bytes, in C
     * order and the platform's byte order.
     *
     * @param file the file to read
     * @param arena the arena that allocates the data
     * @return the array
     * @throws TensorFormatException when the file is malformed, truncated or has trailing bytes
     * @throws IOException when the file cannot be read
     */
    public static Tensor read(Path file, Arena arena) throws IOException {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(arena, "arena");
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            String source = file.toString();
            NpyHeader header = readHeader(channel, source);
            return decode(header, arena, raw -> readFully(channel, raw, header.dataOffset(), source));
        }
    }

    /**
     * Maps the data of a {@code .npy} file without copying: a read-only segment valid while
     * {@code arena} is open. One-dimensional arrays are accepted in either order, as their bytes
     * are the same.
     *
     * @param file the file to map
     * @param arena the arena whose closing unmaps the file
     * @return the array, a view of the file
     * @throws TensorFormatException when the file is malformed, truncated, has trailing bytes, is in
     *                               Fortran order or in the other byte order (use {@link #read})
     * @throws IOException when the file cannot be read or mapped
     */
    public static Tensor map(Path file, Arena arena) throws IOException {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(arena, "arena");
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            String source = file.toString();
            NpyHeader header = readHeader(channel, source);
            if (header.order() != ByteOrder.nativeOrder()) {
                throw new TensorFormatException(source + ": the data is " + header.order()
                        + ", not the platform's byte order: Npy.read converts it, Npy.map cannot");
            }
            if (header.fortranOrder() && header.shape().length > 1) {
                throw new TensorFormatException(source + ": the data is in Fortran order: Npy.read transposes it, "
                        + "Npy.map cannot");
            }
            MemorySegment data = channel.map(FileChannel.MapMode.READ_ONLY, header.dataOffset(), header.dataBytes(),
                    arena);
            return new Tensor(header.type(), header.shape(), data);
        }
    }

    /**
     * Writes {@code tensor} as a {@code .npy} file, replacing any file of that name.
     *
     * @param file the file to write
     * @param tensor the array; BFLOAT16 is written as its bit patterns under {@code '<u2'}
     * @throws IOException when the file cannot be written (the old file, if any, is left as it was)
     */
    public static void write(Path file, Tensor tensor) throws IOException {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(tensor, "tensor");
        byte[] header = NpyHeader.format(tensor.type(), tensor.shape());
        AtomicFile.write(file, channel -> {
            writeFully(channel, ByteBuffer.wrap(header));
            forEachChunk(tensor.data(), chunk -> writeFully(channel, chunk));
        });
    }

    // ---- streams, for .npz entries ----

    /** Reads one {@code .npy} stream to its end; bytes after the data are an error. */
    static Tensor read(InputStream in, String source, Arena arena) throws IOException {
        NpyHeader header = readHeader(buffer -> readFully(in, buffer, source), source);
        Tensor tensor = decode(header, arena, raw -> readFully(in, raw, source));
        if (in.read() >= 0) {
            throw new TensorFormatException(source + ": unexpected bytes after the " + header.dataBytes()
                    + " bytes of data");
        }
        return tensor;
    }

    /** The header bytes {@link #write} writes for {@code tensor}. */
    static byte[] header(Tensor tensor) {
        return NpyHeader.format(tensor.type(), tensor.shape());
    }

    /** Writes the data of {@code tensor} (after {@link #header}) to a stream. */
    static void writeData(OutputStream out, Tensor tensor) throws IOException {
        MemorySegment data = tensor.data();
        byte[] buffer = new byte[(int) Math.min(1 << 16, Math.max(1, data.byteSize()))];
        for (long off = 0; off < data.byteSize(); off += buffer.length) {
            int n = (int) Math.min(buffer.length, data.byteSize() - off);
            MemorySegment.copy(data, ValueLayout.JAVA_BYTE, off, buffer, 0, n);
            out.write(buffer, 0, n);
        }
    }

    // ---- internals ----

    @FunctionalInterface
    private interface HeaderInput {
        void readFully(byte[] buffer) throws IOException;
    }

    @FunctionalInterface
    private interface DataInput {
        void readInto(MemorySegment raw) throws IOException;
    }

    /** The header of a file whose size must be exactly the header and the data. */
    private static NpyHeader readHeader(FileChannel channel, String source) throws IOException {
        NpyHeader header = readHeader(buffer -> readFully(channel, buffer, source), source);
        checkFileSize(header, channel.size(), source);
        return header;
    }

    private static NpyHeader readHeader(HeaderInput input, String source) throws IOException {
        byte[] preamble = new byte[NpyHeader.PREAMBLE_V1];
        try {
            input.readFully(preamble);
        } catch (EOFException e) {
            throw new TensorFormatException(source + ": not a .npy file (shorter than the " + preamble.length
                    + "-byte preamble)", e);
        }
        int[] lengths = NpyHeader.preamble(preamble, source);
        if (lengths[0] == NpyHeader.PREAMBLE_V2) {
            byte[] longer = new byte[NpyHeader.PREAMBLE_V2];
            System.arraycopy(preamble, 0, longer, 0, preamble.length);
            byte[] rest = new byte[NpyHeader.PREAMBLE_V2 - NpyHeader.PREAMBLE_V1];
            readHeaderPart(input, rest, source);
            System.arraycopy(rest, 0, longer, preamble.length, rest.length);
            preamble = longer;
            lengths = NpyHeader.preamble(preamble, source);
        }
        byte[] dict = new byte[lengths[1]];
        readHeaderPart(input, dict, source);
        return NpyHeader.parse(dict, preamble[6] & 0xff, lengths[0], source);
    }

    private static void readHeaderPart(HeaderInput input, byte[] buffer, String source) throws IOException {
        try {
            input.readFully(buffer);
        } catch (EOFException e) {
            throw new TensorFormatException(source + ": the file ends inside the .npy header", e);
        }
    }

    private static void checkFileSize(NpyHeader header, long fileSize, String source) throws TensorFormatException {
        long available = fileSize - header.dataOffset();
        long needed = header.dataBytes();
        if (available < needed) {
            throw new TensorFormatException(source + ": truncated: shape " + Arrays.toString(header.shape())
                    + " of " + header.type() + " needs " + needed + " bytes of data, the file has " + available);
        }
        if (available > needed) {
            throw new TensorFormatException(source + ": " + (available - needed) + " unexpected bytes after the "
                    + needed + " bytes of data");
        }
    }

    /** Reads the raw data, then puts it in C order and the platform's byte order. */
    private static Tensor decode(NpyHeader header, Arena arena, DataInput input) throws IOException {
        long bytes = header.dataBytes();
        int size = header.type().byteSize();
        long[] shape = header.shape();
        boolean transpose = header.fortranOrder() && shape.length > 1;
        if (!transpose) {
            MemorySegment data = arena.allocate(bytes, DATA_ALIGNMENT);
            input.readInto(data);
            swapBytesIfNeeded(data, header.order(), size);
            return new Tensor(header.type(), shape, data);
        }
        try (Arena scratch = Arena.ofConfined()) {
            MemorySegment raw = scratch.allocate(bytes, DATA_ALIGNMENT);
            input.readInto(raw);
            swapBytesIfNeeded(raw, header.order(), size);
            MemorySegment data = arena.allocate(bytes, DATA_ALIGNMENT);
            fortranToC(data, raw, shape, size);
            return new Tensor(header.type(), shape, data);
        }
    }

    private static void swapBytesIfNeeded(MemorySegment data, ByteOrder order, int size) {
        if (order == ByteOrder.nativeOrder() || size == 1) {
            return;
        }
        long count = data.byteSize() / size;
        switch (size) {
            case 2 -> {
                for (long i = 0; i < count; i++) {
                    data.setAtIndex(ValueLayout.JAVA_SHORT, i, Short.reverseBytes(data.getAtIndex(ValueLayout.JAVA_SHORT, i)));
                }
            }
            case 4 -> {
                for (long i = 0; i < count; i++) {
                    data.setAtIndex(ValueLayout.JAVA_INT, i, Integer.reverseBytes(data.getAtIndex(ValueLayout.JAVA_INT, i)));
                }
            }
            case 8 -> {
                for (long i = 0; i < count; i++) {
                    data.setAtIndex(ValueLayout.JAVA_LONG, i, Long.reverseBytes(data.getAtIndex(ValueLayout.JAVA_LONG, i)));
                }
            }
            default -> throw new AssertionError(size);
        }
    }

    // dst is C order, src Fortran order, both of `shape` with `size`-byte elements
    private static void fortranToC(MemorySegment dst, MemorySegment src, long[] shape, int size) {
        int rank = shape.length;
        long count = Tensor.elementCount(shape);
        long[] fortranStride = new long[rank];
        long stride = 1;
        for (int d = 0; d < rank; d++) {
            fortranStride[d] = stride;
            stride *= shape[d];
        }
        long[] index = new long[rank];
        long from = 0;
        for (long to = 0; to < count; to++) {
            copyElement(dst, to, src, from, size);
            for (int d = rank - 1; d >= 0; d--) {
                if (++index[d] < shape[d]) {
                    from += fortranStride[d];
                    break;
                }
                from -= fortranStride[d] * (shape[d] - 1);
                index[d] = 0;
            }
        }
    }

    private static void copyElement(MemorySegment dst, long to, MemorySegment src, long from, int size) {
        switch (size) {
            case 1 -> dst.set(ValueLayout.JAVA_BYTE, to, src.get(ValueLayout.JAVA_BYTE, from));
            case 2 -> dst.setAtIndex(ValueLayout.JAVA_SHORT, to, src.getAtIndex(ValueLayout.JAVA_SHORT, from));
            case 4 -> dst.setAtIndex(ValueLayout.JAVA_INT, to, src.getAtIndex(ValueLayout.JAVA_INT, from));
            case 8 -> dst.setAtIndex(ValueLayout.JAVA_LONG, to, src.getAtIndex(ValueLayout.JAVA_LONG, from));
            default -> throw new AssertionError(size);
        }
    }

    private static void readFully(FileChannel channel, byte[] buffer, String source) throws IOException {
        ByteBuffer bb = ByteBuffer.wrap(buffer);
        while (bb.hasRemaining()) {
            if (channel.read(bb) < 0) {
                throw new EOFException(source);
            }
        }
    }

    private static void readFully(FileChannel channel, MemorySegment data, long position, String source)
            throws IOException {
        for (long off = 0; off < data.byteSize(); off += CHUNK) {
            ByteBuffer bb = data.asSlice(off, Math.min(CHUNK, data.byteSize() - off)).asByteBuffer();
            while (bb.hasRemaining()) {
                if (channel.read(bb, position + off + bb.position()) < 0) {
                    throw new TensorFormatException(source + ": the file ended while its data was read");
                }
            }
        }
    }

    private static void readFully(InputStream in, byte[] buffer, String source) throws IOException {
        if (in.readNBytes(buffer, 0, buffer.length) != buffer.length) {
            throw new EOFException(source);
        }
    }

    private static void readFully(InputStream in, MemorySegment data, String source) throws IOException {
        byte[] buffer = new byte[(int) Math.min(1 << 16, Math.max(1, data.byteSize()))];
        for (long off = 0; off < data.byteSize(); off += buffer.length) {
            int n = (int) Math.min(buffer.length, data.byteSize() - off);
            int got = in.readNBytes(buffer, 0, n);
            if (got != n) {
                throw new TensorFormatException(source + ": truncated: the data needs " + data.byteSize()
                        + " bytes, the entry ends after " + (off + got));
            }
            MemorySegment.copy(buffer, 0, data, ValueLayout.JAVA_BYTE, off, n);
        }
    }

    @FunctionalInterface
    interface ChunkSink {
        void accept(ByteBuffer chunk) throws IOException;
    }

    /**
     * Hands the bytes of {@code data} to {@code sink} in order: views of a native segment (at most
     * 1 GiB each), copies of a heap one (a float[] segment has no byte buffer view).
     */
    static void forEachChunk(MemorySegment data, ChunkSink sink) throws IOException {
        long size = data.byteSize();
        if (data.isNative()) {
            for (long off = 0; off < size; off += CHUNK) {
                sink.accept(data.asSlice(off, Math.min(CHUNK, size - off)).asByteBuffer());
            }
            return;
        }
        byte[] buffer = new byte[(int) Math.min(1 << 16, Math.max(1, size))];
        for (long off = 0; off < size; off += buffer.length) {
            int n = (int) Math.min(buffer.length, size - off);
            MemorySegment.copy(data, ValueLayout.JAVA_BYTE, off, buffer, 0, n);
            sink.accept(ByteBuffer.wrap(buffer, 0, n));
        }
    }

    static void writeFully(FileChannel channel, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }
}
