package dev.panamabn.interop;

import tools.jackson.core.JacksonException;
import tools.jackson.core.JsonGenerator;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.ObjectReadContext;
import tools.jackson.core.ObjectWriteContext;
import tools.jackson.core.StreamReadFeature;
import tools.jackson.core.json.JsonFactory;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Predicate;

/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header
 * {@code {"__metadata__": {...}, "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
 * ...}} and the tensors' little-endian, C-order bytes. The header is parsed with Jackson's
 * streaming parser and checked as the format's reference implementation checks it: duplicate keys,
 * offsets that leave gaps, overlap or do not cover the data, a byte size that does not match the
 * dtype and shape, and headers over 100 MB are refused with a {@link TensorFormatException}.
 *
 * <p>Reading maps the file: the tensors are read-only views of it, valid while the arena is open,
 * and a tensor may be unaligned (see {@link Tensor}). dtypes outside {@link ElementType} (e.g. the
 * 8-bit floats) are accepted in the header and refused only when their key is read. This class
 * assumes a little-endian platform, as the library does (Linux x86-64).
 */
public final class SafeTensors {

    /** The reference implementation's limit on the header. */
    public static final long MAX_HEADER_BYTES = 100_000_000;
    private static final String METADATA = "__metadata__";
    private static final JsonFactory JSON = JsonFactory.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build();

    private SafeTensors() {
    }

    /** One header entry; {@code type} is null for a dtype outside {@link ElementType}. */
    private record Entry(String key, String dtype, ElementType type, long[] shape, long begin, long end) {
    }

    /** The parsed header. */
    private record Header(Map<String, String> metadata, List<Entry> entries, long dataOffset) {
    }

    /**
     * Maps every tensor of a safetensors file (see the class comment).
     *
     * @param file the file to read
     * @param arena the arena whose closing unmaps the file
     * @return the tensors by key in the header's order; an unmodifiable map
     * @throws TensorFormatException when the file is malformed or a tensor has an unsupported dtype
     * @throws IOException when the file cannot be read or mapped
     * @throws UnsupportedOperationException on a big-endian platform
     */
    public static Map<String, Tensor> read(Path file, Arena arena) throws IOException {
        return read(file, arena, key -> true);
    }

    /**
     * Maps the tensors whose keys {@code keys} accepts, e.g. {@code k -> k.startsWith("layer1.0.bn1.")}.
     * The whole header is still checked; a dtype outside {@link ElementType} is refused only for
     * an accepted key.
     *
     * @param file the file to read
     * @param arena the arena whose closing unmaps the file
     * @param keys which keys to map
     * @return the accepted tensors by key in the header's order; an unmodifiable map
     * @throws TensorFormatException when the file is malformed or an accepted tensor has an
     *                               unsupported dtype
     * @throws IOException when the file cannot be read or mapped
     * @throws UnsupportedOperationException on a big-endian platform
     */
    public static Map<String, Tensor> read(Path file, Arena arena, Predicate<String> keys) throws IOException {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(arena, "arena");
        Objects.requireNonNull(keys, "keys");
        checkPlatform();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            Header header = readHeader(channel, file.toString());
            long bufferSize = channel.size() - header.dataOffset();
            MemorySegment buffer = bufferSize == 0 ? MemorySegment.NULL
                    : channel.map(FileChannel.MapMode.READ_ONLY, header.dataOffset(), bufferSize, arena);
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            for (Entry e : header.entries()) {
                if (!keys.test(e.key())) {
                    continue;
                }
                if (e.type() == null) {
                    throw new TensorFormatException(file + ": key '" + e.key() + "' has dtype " + e.dtype()
                            + ", which is not supported (supported: " + supportedDtypes() + ")");
                }
                MemorySegment data = e.end() == e.begin() ? MemorySegment.NULL : buffer.asSlice(e.begin(),
                        e.end() - e.begin());
                tensors.put(e.key(), new Tensor(e.type(), e.shape(), data));
            }
            return Collections.unmodifiableMap(tensors);
        }
    }

    /**
     * Reads the {@code __metadata__} of a safetensors file, checking the whole header.
     *
     * @param file the file to read
     * @return the metadata in the header's order, empty when it has none; an unmodifiable map
     * @throws TensorFormatException when the file is malformed
     * @throws IOException when the file cannot be read
     * @throws UnsupportedOperationException on a big-endian platform
     */
    public static Map<String, String> readMetadata(Path file) throws IOException {
        Objects.requireNonNull(file, "file");
        checkPlatform();
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            return readHeader(channel, file.toString()).metadata();
        }
    }

    /**
     * Writes a safetensors file without metadata, replacing any file of that name; see
     * {@link #write(Path, Map, Map)}.
     *
     * @param file the file to write
     * @param tensors the tensors by key
     * @throws IllegalArgumentException for an empty key or the key {@code __metadata__}
     * @throws IOException when the file cannot be written (the old file, if any, is left as it was)
     * @throws UnsupportedOperationException on a big-endian platform
     */
    public static void write(Path file, Map<String, Tensor> tensors) throws IOException {
        write(file, tensors, Map.of());
    }

    /**
     * Writes a safetensors file, replacing any file of that name. The tensors are laid out as the
     * reference implementation does (larger element types first, then by key, so that every
     * tensor is aligned) and the header is padded with spaces to a multiple of 8 bytes.
     *
     * @param file the file to write
     * @param tensors the tensors by key
     * @param metadata string pairs for {@code __metadata__}, e.g. {@code Map.of("format", "pt")};
     *                 written only when not empty
     * @throws IllegalArgumentException for an empty key or the key {@code __metadata__}
     * @throws IOException when the file cannot be written (the old file, if any, is left as it was)
     * @throws UnsupportedOperationException on a big-endian platform
     */
    public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(tensors, "tensors");
        Objects.requireNonNull(metadata, "metadata");
        checkPlatform();
        List<Map.Entry<String, Tensor>> order = new ArrayList<>();
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            Objects.requireNonNull(e.getKey(), "a key is null");
            Objects.requireNonNull(e.getValue(), () -> "the tensor of key '" + e.getKey() + "' is null");
            if (e.getKey().isEmpty() || e.getKey().equals(METADATA)) {
                throw new IllegalArgumentException("'" + e.getKey() + "' cannot be a safetensors key");
            }
            order.add(e);
        }
        metadata.forEach((k, v) -> {
            Objects.requireNonNull(k, "a metadata key is null");
            Objects.requireNonNull(v, () -> "the metadata value of '" + k + "' is null");
        });
        order.sort(Comparator.comparingInt((Map.Entry<String, Tensor> e) -> -e.getValue().type().byteSize())
                .thenComparing(Map.Entry::getKey));
        byte[] header = formatHeader(order, metadata);
        AtomicFile.write(file, channel -> {
            ByteBuffer length = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length);
            Npy.writeFully(channel, length);
            Npy.writeFully(channel, ByteBuffer.wrap(header));
            for (Map.Entry<String, Tensor> e : order) {
                Npy.forEachChunk(e.getValue().data(), chunk -> Npy.writeFully(channel, chunk));
            }
        });
    }

    // ---- internals ----

    private static byte[] formatHeader(List<Map.Entry<String, Tensor>> order, Map<String, String> metadata) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try (JsonGenerator g = JSON.createGenerator(ObjectWriteContext.empty(), out)) {
            g.writeStartObject();
            if (!metadata.isEmpty()) {
                g.writeName(METADATA);
                g.writeStartObject();
                for (Map.Entry<String, String> m : metadata.entrySet()) {
                    g.writeName(m.getKey());
                    g.writeString(m.getValue());
                }
                g.writeEndObject();
            }
            long offset = 0;
            for (Map.Entry<String, Tensor> e : order) {
                Tensor t = e.getValue();
                g.writeName(e.getKey());
                g.writeStartObject();
                g.writeName("dtype");
                g.writeString(t.type().safetensorsName());
                g.writeName("shape");
                g.writeStartArray();
                for (long d : t.shape()) {
                    g.writeNumber(d);
                }
                g.writeEndArray();
                g.writeName("data_offsets");
                g.writeStartArray();
                g.writeNumber(offset);
                offset += t.data().byteSize();
                g.writeNumber(offset);
                g.writeEndArray();
                g.writeEndObject();
            }
            g.writeEndObject();
        }
        int padding = (8 - out.size() % 8) % 8;
        for (int i = 0; i < padding; i++) {
            out.write(' ');
        }
        return out.toByteArray();
    }

    private static Header readHeader(FileChannel channel, String source) throws IOException {
        long fileSize = channel.size();
        if (fileSize < 8) {
            throw new TensorFormatException(source + ": not a safetensors file (shorter than the 8-byte header length)");
        }
        ByteBuffer lengthBytes = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
        readFully(channel, lengthBytes, 0, source);
        long length = lengthBytes.getLong(0);
        if (length < 0 || length > MAX_HEADER_BYTES) {
            throw new TensorFormatException(source + ": header length " + Long.toUnsignedString(length)
                    + " exceeds the limit of " + MAX_HEADER_BYTES + " bytes");
        }
        if (8 + length > fileSize) {
            throw new TensorFormatException(source + ": header length " + length + " runs past the end of the "
                    + fileSize + "-byte file");
        }
        ByteBuffer headerBytes = ByteBuffer.allocate((int) length);
        readFully(channel, headerBytes, 8, source);
        byte[] json = headerBytes.array();
        if (json.length == 0 || json[0] != '{') {
            throw new TensorFormatException(source + ": the header must be a JSON object starting with '{'");
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        List<Entry> entries = new ArrayList<>();
        try (JsonParser p = JSON.createParser(ObjectReadContext.empty(), json)) {
            expect(p.nextToken(), JsonToken.START_OBJECT, "the header", source);
            String key;
            while ((key = p.nextName()) != null) {
                if (key.equals(METADATA)) {
                    readMetadata(p, metadata, source);
                } else {
                    entries.add(readEntry(p, key, source));
                }
            }
            expect(p.currentToken(), JsonToken.END_OBJECT, "the header", source);
            if (p.nextToken() != null) {
                throw new TensorFormatException(source + ": text after the header's JSON object");
            }
        } catch (JacksonException e) {
            throw new TensorFormatException(source + ": the header is not valid JSON: " + e.getOriginalMessage(), e);
        }
        long dataOffset = 8 + length;
        checkOffsets(entries, fileSize - dataOffset, source);
        return new Header(Collections.unmodifiableMap(metadata), entries, dataOffset);
    }

    private static void readMetadata(JsonParser p, Map<String, String> metadata, String source) throws IOException {
        expect(p.nextToken(), JsonToken.START_OBJECT, "__metadata__", source);
        String name;
        while ((name = p.nextName()) != null) {
            if (p.nextToken() != JsonToken.VALUE_STRING) {
                throw new TensorFormatException(source + ": __metadata__ value of '" + name + "' must be a string");
            }
            metadata.put(name, p.getString());
        }
    }

    private static Entry readEntry(JsonParser p, String key, String source) throws IOException {
        expect(p.nextToken(), JsonToken.START_OBJECT, "key '" + key + "'", source);
        String dtype = null;
        long[] shape = null;
        long[] offsets = null;
        String field;
        while ((field = p.nextName()) != null) {
            switch (field) {
                case "dtype" -> {
                    if (p.nextToken() != JsonToken.VALUE_STRING) {
                        throw new TensorFormatException(source + ": key '" + key + "': dtype must be a string");
                    }
                    dtype = p.getString();
                }
                case "shape" -> shape = readLongs(p, key, "shape", source);
                case "data_offsets" -> offsets = readLongs(p, key, "data_offsets", source);
                default -> {
                    // Unknown fields are ignored, as the reference implementation does.
                    p.nextToken();
                    p.skipChildren();
                }
            }
        }
        if (dtype == null || shape == null || offsets == null) {
            throw new TensorFormatException(source + ": key '" + key + "' needs dtype, shape and data_offsets");
        }
        if (offsets.length != 2 || offsets[1] < offsets[0]) {
            throw new TensorFormatException(source + ": key '" + key + "': data_offsets must be [begin, end] with "
                    + "begin <= end, got " + Arrays.toString(offsets));
        }
        ElementType type = ElementType.ofSafetensorsName(dtype);
        if (type != null) {
            long bytes;
            try {
                bytes = Tensor.byteSize(type, shape);
            } catch (IllegalArgumentException e) {
                throw new TensorFormatException(source + ": key '" + key + "': " + e.getMessage(), e);
            }
            if (bytes != offsets[1] - offsets[0]) {
                throw new TensorFormatException(source + ": key '" + key + "': " + dtype + " of shape "
                        + Arrays.toString(shape) + " is " + bytes + " bytes, data_offsets " + Arrays.toString(offsets)
                        + " hold " + (offsets[1] - offsets[0]));
            }
        }
        return new Entry(key, dtype, type, shape, offsets[0], offsets[1]);
    }

    private static long[] readLongs(JsonParser p, String key, String field, String source) throws IOException {
        if (p.nextToken() != JsonToken.START_ARRAY) {
            throw new TensorFormatException(source + ": key '" + key + "': " + field + " must be an array of integers");
        }
        List<Long> values = new ArrayList<>();
        JsonToken t;
        while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
            if (t != JsonToken.VALUE_NUMBER_INT || p.getNumberType() == JsonParser.NumberType.BIG_INTEGER
                    || p.getLongValue() < 0) {
                throw new TensorFormatException(source + ": key '" + key + "': " + field
                        + " must hold non-negative integers that fit in 64 bits");
            }
            values.add(p.getLongValue());
        }
        return values.stream().mapToLong(Long::longValue).toArray();
    }

    /** The entries, sorted by offset, must tile the data buffer exactly. */
    private static void checkOffsets(List<Entry> entries, long bufferSize, String source) throws TensorFormatException {
        List<Entry> sorted = new ArrayList<>(entries);
        sorted.sort(Comparator.comparingLong(Entry::begin).thenComparingLong(Entry::end));
        long expected = 0;
        for (Entry e : sorted) {
            if (e.begin() != expected) {
                throw new TensorFormatException(source + ": key '" + e.key() + "' starts at byte " + e.begin()
                        + " of the data, expected " + expected + " (tensors must not overlap or leave gaps)");
            }
            expected = e.end();
        }
        if (expected != bufferSize) {
            throw new TensorFormatException(source + ": the tensors cover " + expected + " bytes of data, the file has "
                    + bufferSize);
        }
    }

    private static void expect(JsonToken actual, JsonToken wanted, String what, String source)
            throws TensorFormatException {
        if (actual != wanted) {
            throw new TensorFormatException(source + ": " + what + " must be a JSON object");
        }
    }

    private static void readFully(FileChannel channel, ByteBuffer buffer, long position, String source)
            throws IOException {
        while (buffer.hasRemaining()) {
            if (channel.read(buffer, position + buffer.position()) < 0) {
                throw new EOFException(source);
            }
        }
    }

    private static String supportedDtypes() {
        StringBuilder s = new StringBuilder();
        for (ElementType t : ElementType.values()) {
            s.append(s.isEmpty() ? "" : ", ").append(t.safetensorsName());
        }
        return s.toString();
    }

    private static void checkPlatform() {
        if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
            throw new UnsupportedOperationException("safetensors data is little-endian; this platform is big-endian");
        }
    }
}
