package dev.panamabn.interop;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** .npz archives written by NumPy (stored and deflated), round trips, and malformed archives. */
class NpzTest {

    @TempDir
    Path dir;

    @Test
    void readsNumpysStoredAndCompressedArchives() throws IOException {
        for (String name : new String[] {"stored.npz", "compressed.npz"}) {
            try (Arena arena = Arena.ofConfined()) {
                Map<String, Tensor> m = Npz.read(Fixtures.path("npz", name), arena);
                assertEquals(List.of("a", "b"), List.copyOf(m.keySet()), name);
                assertEquals(ElementType.FLOAT32, m.get("a").type());
                assertArrayEquals(new long[] {2, 3, 4}, m.get("a").shape());
                assertArrayEquals(Fixtures.arangeValues(24), m.get("a").toDoubleArray(), name);
                assertEquals(ElementType.FLOAT64, m.get("b").type(), "big-endian f8, converted");
                assertArrayEquals(Fixtures.arangeValues(15), m.get("b").toDoubleArray(), name);
            }
        }
    }

    @Test
    void roundTripsStoredAndCompressed() throws IOException {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("layer1.weight", Tensor.ofFloats(new float[] {1.5f, -2f, 3f}, 3));
        m.put("nested/key", Tensor.ofDoubles(new double[] {Math.PI, Math.E}, 2, 1));
        m.put("count", Tensor.ofLongs(new long[] {42}));
        m.put("empty", Tensor.ofFloats(new float[0], 0, 4));
        for (boolean compressed : new boolean[] {false, true}) {
            Path file = dir.resolve(compressed ? "c.npz" : "s.npz");
            if (compressed) {
                Npz.writeCompressed(file, m);
            } else {
                Npz.write(file, m);
            }
            try (Arena arena = Arena.ofConfined()) {
                Map<String, Tensor> back = Npz.read(file, arena);
                assertEquals(List.copyOf(m.keySet()), List.copyOf(back.keySet()));
                for (String key : m.keySet()) {
                    assertEquals(m.get(key).type(), back.get(key).type(), key);
                    assertArrayEquals(m.get(key).shape(), back.get(key).shape(), key);
                    assertEquals(-1, m.get(key).data().mismatch(back.get(key).data()), key);
                }
            }
        }
    }

    @Test
    void emptyArchiveRoundTrips() throws IOException {
        Path file = dir.resolve("empty.npz");
        Npz.write(file, Map.of());
        try (Arena arena = Arena.ofConfined()) {
            assertTrue(Npz.read(file, arena).isEmpty());
        }
    }

    @Test
    void numpyReadsWhatWeWrite() throws IOException, InterruptedException {
        Map<String, Tensor> m = new LinkedHashMap<>();
        m.put("a", Tensor.ofFloats(NpyTest.toFloats(Fixtures.arangeValues(24)), 2, 3, 4));
        m.put("b", Tensor.ofDoubles(Fixtures.arangeValues(15), 3, 5));
        Npz.write(dir.resolve("s.npz"), m);
        Npz.writeCompressed(dir.resolve("c.npz"), m);
        String check = String.join("\n",
                "import sys, numpy as np",
                "for name in ('s', 'c'):",
                "    with np.load(sys.argv[1] + '/' + name + '.npz', allow_pickle=False) as z:",
                "        assert sorted(z.files) == ['a', 'b'], z.files",
                "        assert np.array_equal(z['a'], (np.arange(24) * 0.5 - 3).astype('<f4').reshape(2, 3, 4))",
                "        assert np.array_equal(z['b'], (np.arange(15) * 0.5 - 3).reshape(3, 5))",
                "print('ok')");
        Fixtures.assertNumpyCheckPasses("NpzTest.numpyReadsWhatWeWrite", check, dir.toString());
    }

    @Test
    void notAZipIsRefused() throws IOException {
        Path file = dir.resolve("x.npz");
        Files.writeString(file, "not a zip archive at all");
        refused(file, "not a .npz file");
    }

    @Test
    void entryThatIsNotAnArrayIsRefused() throws IOException {
        Path file = zip(Map.of("readme.txt", "hello".getBytes()));
        refused(file, "[readme.txt]: a .npz entry must be an array named <key>.npy");
    }

    @Test
    void malformedEntryIsRefusedWithItsName() throws IOException {
        Path file = zip(Map.of("w.npy", "\u0093NUMPY garbage".getBytes(java.nio.charset.StandardCharsets.ISO_8859_1)));
        refused(file, "[w.npy]: .npy format version");
    }

    @Test
    void truncatedAndOverlongEntriesAreRefused() throws IOException {
        byte[] valid;
        Path one = dir.resolve("one.npy");
        Npy.write(one, Tensor.ofFloats(new float[] {1, 2}, 2));
        valid = Files.readAllBytes(one);
        refused(zip(Map.of("t.npy", java.util.Arrays.copyOf(valid, valid.length - 1))), "[t.npy]: truncated");
        refused(zip(Map.of("t.npy", java.util.Arrays.copyOf(valid, valid.length + 3))),
                "[t.npy]: unexpected bytes after the 8 bytes of data");
    }

    @Test
    void writeRefusesAnEmptyKeyAndChangesNothing() throws IOException {
        Path file = dir.resolve("keep.npz");
        Npz.write(file, Map.of("a", Tensor.ofFloats(new float[] {1}, 1)));
        byte[] before = Files.readAllBytes(file);
        assertThrows(IllegalArgumentException.class, () -> Npz.write(file, Map.of("", Tensor.ofFloats(new float[1], 1))));
        assertArrayEquals(before, Files.readAllBytes(file));
    }

    private Path zip(Map<String, byte[]> entries) throws IOException {
        Path file = Files.createTempFile(dir, "case", ".npz");
        try (OutputStream out = Files.newOutputStream(file); ZipOutputStream zip = new ZipOutputStream(out)) {
            for (Map.Entry<String, byte[]> e : entries.entrySet()) {
                zip.putNextEntry(new ZipEntry(e.getKey()));
                zip.write(e.getValue());
                zip.closeEntry();
            }
        }
        return file;
    }

    private static void refused(Path file, String expected) {
        try (Arena arena = Arena.ofConfined()) {
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> Npz.read(file, arena));
            assertTrue(e.getMessage().contains(expected), "message '" + e.getMessage() + "' lacks '" + expected + "'");
        }
    }
}
