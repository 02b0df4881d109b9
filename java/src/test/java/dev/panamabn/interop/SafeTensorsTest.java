package dev.panamabn.interop;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** safetensors files: the PyTorch fixture, round trips, layout, and every malformed header. */
class SafeTensorsTest {

    @TempDir
    Path dir;

    @Test
    void readsTheFixtureMapped() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            Path file = Fixtures.path("state", "model_state.safetensors");
            Map<String, Tensor> all = SafeTensors.read(file, arena);
            assertEquals(Map.of("format", "pt"), SafeTensors.readMetadata(file));
            Tensor count = all.get("layer1.0.bn1.num_batches_tracked");
            assertEquals(ElementType.INT64, count.type());
            assertEquals(0, count.rank());
            assertArrayEquals(new long[] {4}, count.toLongArray());
            Tensor conv = all.get("layer1.0.conv1.weight");
            assertArrayEquals(new long[] {5, 3, 3, 3}, conv.shape());
            assertTrue(conv.data().isMapped() && conv.data().isReadOnly());

            Map<String, Tensor> bn = SafeTensors.read(file, arena, k -> k.startsWith("layer1.0.bn1."));
            assertEquals(List.of("layer1.0.bn1.bias", "layer1.0.bn1.running_mean", "layer1.0.bn1.running_var",
                    "layer1.0.bn1.weight", "layer1.0.bn1.num_batches_tracked").stream().sorted().toList(),
                    bn.keySet().stream().sorted().toList());
        }
    }

    @Test
    void roundTripsEveryTypeAndLaysOutAsTheReferenceDoes() throws IOException {
        Map<String, Tensor> m = new LinkedHashMap<>();
        try (Arena arena = Arena.ofConfined()) {
            for (ElementType type : ElementType.values()) {
                Tensor t = Tensor.allocate(type, arena, 3);
                for (long i = 0; i < t.data().byteSize(); i++) {
                    t.data().set(ValueLayout.JAVA_BYTE, i, (byte) (type == ElementType.BOOL ? i % 2 : i * 13 + 1));
                }
                m.put("t_" + type.name().toLowerCase(), t);
            }
            m.put("scalar", Tensor.ofLongs(new long[] {7}));
            m.put("empty", Tensor.ofFloats(new float[0], 0, 2));
            Path file = dir.resolve("all.safetensors");
            SafeTensors.write(file, m, Map.of("format", "pt", "note", "ünïcode"));

            byte[] bytes = Files.readAllBytes(file);
            long headerLength = ByteBuffer.wrap(bytes, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            assertEquals(0, headerLength % 8, "header padded to 8 bytes");
            Map<String, Tensor> back = SafeTensors.read(file, arena);
            assertEquals(m.keySet().stream().sorted().toList(), back.keySet().stream().sorted().toList());
            for (String key : m.keySet()) {
                Tensor t = back.get(key);
                assertEquals(m.get(key).type(), t.type(), key);
                assertArrayEquals(m.get(key).shape(), t.shape(), key);
                assertEquals(-1, m.get(key).data().mismatch(t.data()), key);
                if (t.data().byteSize() > 0) {
                    assertEquals(0, t.data().address() % t.type().byteSize(), key + " is aligned (larger types first)");
                }
            }
            assertEquals(Map.of("format", "pt", "note", "ünïcode"), SafeTensors.readMetadata(file));
        }
    }

    @Test
    void writeRefusesReservedKeys() {
        assertThrows(IllegalArgumentException.class, () -> SafeTensors.write(dir.resolve("x.safetensors"),
                Map.of("__metadata__", Tensor.ofFloats(new float[1], 1))));
        assertThrows(IllegalArgumentException.class, () -> SafeTensors.write(dir.resolve("x.safetensors"),
                Map.of("", Tensor.ofFloats(new float[1], 1))));
    }

    @Test
    void unsupportedDtypeIsRefusedOnlyWhenItsKeyIsRead() throws IOException {
        Path file = file("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 6);
        try (Arena arena = Arena.ofConfined()) {
            assertEquals(List.of("b"), List.copyOf(SafeTensors.read(file, arena, "b"::equals).keySet()));
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> SafeTensors.read(file, arena));
            assertTrue(e.getMessage().contains("key 'a' has dtype F8_E4M3, which is not supported"), e.getMessage());
        }
    }

    @Test
    void unknownFieldsOfAnEntryAreIgnored() throws IOException {
        Path file = file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":{\"x\":[1]}}}", 4);
        try (Arena arena = Arena.ofConfined()) {
            assertEquals(1, SafeTensors.read(file, arena).size());
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = '|', quoteCharacter = '`', textBlock = """
            not an object        | [1, 2]                                                                                 | 0 | a JSON object starting with '{'
            invalid JSON         | {"a": }                                                                                | 0 | not valid JSON
            duplicate key        | {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}} | 8 | Duplicate
            text after object    | {} {}                                                                                  | 0 | text after the header's JSON object
            entry not an object  | {"a": 3}                                                                               | 0 | key 'a' must be a JSON object
            missing dtype        | {"a":{"shape":[1],"data_offsets":[0,4]}}                                               | 4 | key 'a' needs dtype, shape and data_offsets
            missing shape        | {"a":{"dtype":"F32","data_offsets":[0,4]}}                                             | 4 | key 'a' needs dtype, shape and data_offsets
            missing offsets      | {"a":{"dtype":"F32","shape":[1]}}                                                      | 4 | key 'a' needs dtype, shape and data_offsets
            dtype not a string   | {"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}                                     | 4 | key 'a': dtype must be a string
            negative dimension   | {"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}                                | 4 | key 'a': shape must hold non-negative integers
            float dimension      | {"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}                               | 4 | key 'a': shape must hold non-negative integers
            huge offset          | {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999]}}              | 4 | key 'a': data_offsets must hold non-negative integers that fit in 64 bits
            three offsets        | {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}                               | 4 | key 'a': data_offsets must be [begin, end]
            reversed offsets     | {"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}                                 | 4 | key 'a': data_offsets must be [begin, end]
            size mismatch        | {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}                                 | 4 | key 'a': F32 of shape [2] is 8 bytes, data_offsets [0, 4] hold 4
            gap                  | {"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}                                 | 8 | key 'a' starts at byte 4 of the data, expected 0
            overlap              | {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}} | 8 | starts at byte 4 of the data, expected 8
            short buffer         | {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}                                 | 4 | the tensors cover 8 bytes of data, the file has 4
            long buffer          | {"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}                                 | 9 | the tensors cover 4 bytes of data, the file has 9
            metadata not strings | {"__metadata__":{"format":1}}                                                          | 0 | __metadata__ value of 'format' must be a string
            metadata not object  | {"__metadata__":[1]}                                                                   | 0 | __metadata__ must be a JSON object
            """)
    void malformedHeaderIsRefused(String what, String json, int dataBytes, String expected) throws IOException {
        refused(file(json, dataBytes), expected);
    }

    @Test
    void shortFileIsRefused() throws IOException {
        Path file = dir.resolve("short.safetensors");
        Files.write(file, new byte[] {1, 0, 0});
        refused(file, "shorter than the 8-byte header length");
    }

    @Test
    void headerLengthOverTheLimitIsRefused() throws IOException {
        Path file = dir.resolve("huge.safetensors");
        Files.write(file, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(0, 200_000_000L).array());
        refused(file, "exceeds the limit of 100000000 bytes");
        Files.write(file, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(0, -1L).array());
        refused(file, "exceeds the limit");
    }

    @Test
    void headerLengthPastTheEndIsRefused() throws IOException {
        Path file = dir.resolve("past.safetensors");
        Files.write(file, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(0, 1000).array());
        refused(file, "header length 1000 runs past the end of the 16-byte file");
    }

    private Path file(String json, int dataBytes) throws IOException {
        byte[] header = json.getBytes(StandardCharsets.UTF_8);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, header.length).array());
        out.write(header);
        out.write(new byte[dataBytes]);
        Path file = Files.createTempFile(dir, "case", ".safetensors");
        Files.write(file, out.toByteArray());
        return file;
    }

    private static void refused(Path file, String expected) {
        try (Arena arena = Arena.ofConfined()) {
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> SafeTensors.read(file, arena));
            assertTrue(e.getMessage().contains(expected), "message '" + e.getMessage() + "' lacks '" + expected + "'");
            assertTrue(e.getMessage().startsWith(file.toString()), e.getMessage());
        }
    }
}
