package dev.panamabn.interop;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** .npy files written by NumPy (testdata/interop/npy), round trips, mapping, and NumPy reading ours. */
class NpyTest {

    @Test
    void readsEveryFloatTypeInBothByteOrders() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            for (String name : new String[] {"f4_le_2x3x4", "f4_be_2x3x4", "f4_le_v2_2x3x4"}) {
                Tensor t = Npy.read(Fixtures.path("npy", name + ".npy"), arena);
                assertEquals(ElementType.FLOAT32, t.type(), name);
                assertArrayEquals(new long[] {2, 3, 4}, t.shape(), name);
                assertArrayEquals(Fixtures.arangeValues(24), t.toDoubleArray(), name);
            }
            for (String name : new String[] {"f8_le_3x5", "f8_be_3x5"}) {
                Tensor t = Npy.read(Fixtures.path("npy", name + ".npy"), arena);
                assertEquals(ElementType.FLOAT64, t.type(), name);
                assertArrayEquals(new long[] {3, 5}, t.shape(), name);
                assertArrayEquals(Fixtures.arangeValues(15), t.toDoubleArray(), name);
            }
            for (String name : new String[] {"f2_le_7", "f2_be_7"}) {
                Tensor t = Npy.read(Fixtures.path("npy", name + ".npy"), arena);
                assertEquals(ElementType.FLOAT16, t.type(), name);
                assertArrayEquals(Fixtures.arangeValues(7), t.toDoubleArray(), name);
            }
        }
    }

    @Test
    void readsIntegersBoolsScalarsAndEmptyArrays() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            Tensor scalar = Npy.read(Fixtures.path("npy", "i8_le_scalar.npy"), arena);
            assertEquals(ElementType.INT64, scalar.type());
            assertEquals(0, scalar.rank());
            assertArrayEquals(new long[] {-3}, scalar.toLongArray());

            Tensor i4 = Npy.read(Fixtures.path("npy", "i4_be_2x2.npy"), arena);
            assertEquals(ElementType.INT32, i4.type());
            assertArrayEquals(new long[] {-3, -2, -2, -1}, i4.toLongArray()); // arange*0.5-3 truncated

            assertArrayEquals(new long[] {-3, -2, -2}, Npy.read(Fixtures.path("npy", "i2_le_3.npy"), arena).toLongArray());
            assertArrayEquals(new long[] {0, 1, 2, 3, 4, 5}, Npy.read(Fixtures.path("npy", "u1_6.npy"), arena).toLongArray());
            assertArrayEquals(new long[] {1, 0, 0, 1, 0}, Npy.read(Fixtures.path("npy", "b1_5.npy"), arena).toLongArray());
            Tensor u2 = Npy.read(Fixtures.path("npy", "u2_le_4.npy"), arena);
            assertEquals(ElementType.UINT16, u2.type());
            assertArrayEquals(new long[] {0, 1, 2, 3}, u2.toLongArray());

            Tensor empty = Npy.read(Fixtures.path("npy", "f4_le_0x3.npy"), arena);
            assertArrayEquals(new long[] {0, 3}, empty.shape());
            assertEquals(0, empty.data().byteSize());
            assertArrayEquals(new long[] {0, 3}, Npy.map(Fixtures.path("npy", "f4_le_0x3.npy"), arena).shape());
        }
    }

    @Test
    void fortranOrderIsTransposedToCOrder() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            Tensor f4 = Npy.read(Fixtures.path("npy", "f4_fortran_2x3x4.npy"), arena);
            assertArrayEquals(new long[] {2, 3, 4}, f4.shape());
            assertArrayEquals(Fixtures.arangeValues(24), f4.toDoubleArray());
            Tensor f8 = Npy.read(Fixtures.path("npy", "f8_be_fortran_3x5.npy"), arena);
            assertArrayEquals(Fixtures.arangeValues(15), f8.toDoubleArray());
        }
    }

    @Test
    void mapsWithoutCopyingAndRefusesWhatNeedsConversion() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Npy.map(Fixtures.path("npy", "f4_le_2x3x4.npy"), arena);
            assertTrue(t.data().isMapped());
            assertTrue(t.data().isReadOnly());
            assertArrayEquals(Fixtures.arangeValues(24), t.toDoubleArray());
            assertEquals(0, t.data().address() % 64, "numpy aligns the data to 64 bytes");

            TensorFormatException be = assertThrows(TensorFormatException.class,
                    () -> Npy.map(Fixtures.path("npy", "f4_be_2x3x4.npy"), arena));
            assertTrue(be.getMessage().contains("Npy.read converts it"), be.getMessage());
            TensorFormatException fortran = assertThrows(TensorFormatException.class,
                    () -> Npy.map(Fixtures.path("npy", "f4_fortran_2x3x4.npy"), arena));
            assertTrue(fortran.getMessage().contains("Fortran order"), fortran.getMessage());
        }
    }

    @Test
    void mapsALargeFile(@TempDir Path dir) throws IOException {
        long count = 6L << 20; // 24 MiB of float32
        Path file = dir.resolve("large.npy");
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Tensor.allocate(ElementType.FLOAT32, arena, 3, count / 3);
            for (long i = 0; i < count; i++) {
                t.data().setAtIndex(ValueLayout.JAVA_FLOAT, i, i * 0.25f);
            }
            Npy.write(file, t);
        }
        try (Arena arena = Arena.ofConfined()) {
            Tensor mapped = Npy.map(file, arena);
            assertTrue(mapped.data().isMapped());
            assertArrayEquals(new long[] {3, count / 3}, mapped.shape());
            for (long i : new long[] {0, 1, count / 2 + 7, count - 1}) {
                assertEquals(i * 0.25f, mapped.data().getAtIndex(ValueLayout.JAVA_FLOAT, i), "element " + i);
            }
            Tensor read = Npy.read(file, arena);
            assertEquals(-1, read.data().mismatch(mapped.data()));
        }
    }

    @ParameterizedTest
    @EnumSource(ElementType.class)
    void roundTripsEveryType(ElementType type, @TempDir Path dir) throws IOException {
        for (long[] shape : new long[][] {{}, {0}, {5}, {2, 3}, {2, 1, 3, 2}}) {
            Path file = dir.resolve(type + "_" + shape.length + ".npy");
            try (Arena arena = Arena.ofConfined()) {
                Tensor t = Tensor.allocate(type, arena, shape);
                for (long i = 0; i < t.data().byteSize(); i++) {
                    t.data().set(ValueLayout.JAVA_BYTE, i, (byte) (i * 37 + 11));
                }
                if (type == ElementType.BOOL) {
                    for (long i = 0; i < t.data().byteSize(); i++) {
                        t.data().set(ValueLayout.JAVA_BYTE, i, (byte) (i % 2));
                    }
                }
                Npy.write(file, t);
                Tensor back = Npy.read(file, arena);
                ElementType expected = type == ElementType.BFLOAT16 ? ElementType.UINT16 : type;
                assertEquals(expected, back.type(), Arrays.toString(shape));
                assertArrayEquals(shape, back.shape());
                assertEquals(-1, back.data().mismatch(t.data()), Arrays.toString(shape));
                assertEquals(0, (Files.size(file) - back.data().byteSize()) % 64, "data aligned to 64 bytes");
            }
        }
    }

    @Test
    void bfloat16TravelsAsUint16AndViewsBack(@TempDir Path dir) throws IOException {
        float[] values = {1f, -2.5f, 3.140625f, 65280f};
        Path file = dir.resolve("bf16.npy");
        try (Arena arena = Arena.ofConfined()) {
            Tensor bf16 = Tensor.allocate(ElementType.BFLOAT16, arena, values.length);
            for (int i = 0; i < values.length; i++) {
                bf16.data().setAtIndex(ValueLayout.JAVA_SHORT, i, (short) (Float.floatToIntBits(values[i]) >>> 16));
            }
            Npy.write(file, bf16);
            Tensor back = Npy.read(file, arena);
            assertEquals(ElementType.UINT16, back.type());
            assertArrayEquals(values, back.viewAs(ElementType.BFLOAT16).toFloatArray());
        }
    }

    @Test
    void writeReplacesAtomicallyAndLeavesTheOldFileOnFailure(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("x.npy");
        Npy.write(file, Tensor.ofFloats(new float[] {1, 2, 3}, 3));
        byte[] before = Files.readAllBytes(file);
        Arena closed = Arena.ofConfined();
        Tensor dead = Tensor.allocate(ElementType.FLOAT32, closed, 1000);
        closed.close();
        assertThrows(IllegalStateException.class, () -> Npy.write(file, dead));
        assertArrayEquals(before, Files.readAllBytes(file));
        try (var files = Files.list(dir)) {
            assertEquals(1, files.count(), "no temporary file is left behind");
        }
        Npy.write(file, Tensor.ofFloats(new float[] {4, 5}, 2));
        try (Arena arena = Arena.ofConfined()) {
            assertArrayEquals(new float[] {4, 5}, Npy.read(file, arena).toFloatArray());
        }
    }

    @Test
    void heapTensorsAreWritten(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("heap.npy");
        Npy.write(file, Tensor.ofDoubles(new double[] {0.1, 0.2, 0.3, 0.4}, 2, 2));
        try (Arena arena = Arena.ofConfined()) {
            Tensor t = Npy.read(file, arena);
            assertTrue(t.data().isNative());
            assertArrayEquals(new double[] {0.1, 0.2, 0.3, 0.4}, t.toDoubleArray());
        }
    }

    @Test
    void numpyReadsWhatWeWrite(@TempDir Path dir) throws IOException, InterruptedException {
        Npy.write(dir.resolve("f4.npy"), Tensor.ofFloats(toFloats(Fixtures.arangeValues(24)), 2, 3, 4));
        Npy.write(dir.resolve("f8.npy"), Tensor.ofDoubles(Fixtures.arangeValues(15), 3, 5));
        Npy.write(dir.resolve("i8.npy"), Tensor.ofLongs(new long[] {-3}));
        try (Arena arena = Arena.ofConfined()) {
            Tensor f2 = Tensor.allocate(ElementType.FLOAT16, arena, 7);
            double[] v = Fixtures.arangeValues(7);
            for (int i = 0; i < 7; i++) {
                f2.data().setAtIndex(ValueLayout.JAVA_SHORT, i, Float.floatToFloat16((float) v[i]));
            }
            Npy.write(dir.resolve("f2.npy"), f2);
        }
        String check = String.join("\n",
                "import sys, numpy as np",
                "d = sys.argv[1]",
                "def want(shape, dt): return (np.arange(int(np.prod(shape))) * 0.5 - 3).astype(dt).reshape(shape)",
                "for name, shape, dt in [('f4', (2, 3, 4), '<f4'), ('f8', (3, 5), '<f8'), ('f2', (7,), '<f2'),",
                "                        ('i8', (), '<i8')]:",
                "    a = np.load(d + '/' + name + '.npy', allow_pickle=False)",
                "    assert a.dtype == np.dtype(dt) and a.shape == shape, (name, a.dtype, a.shape)",
                "    assert np.array_equal(a, want(shape, dt)), (name, a)",
                "print('ok')");
        Fixtures.assertNumpyCheckPasses("NpyTest.numpyReadsWhatWeWrite", check, dir.toString());
    }

    @Test
    void tensorChecksItsData() {
        assertThrows(IllegalArgumentException.class, () -> new Tensor(ElementType.FLOAT32, new long[] {2, 3},
                MemorySegment.ofArray(new float[5])));
        assertThrows(IllegalArgumentException.class, () -> Tensor.ofFloats(new float[0], -1));
        assertThrows(IllegalArgumentException.class, () -> Tensor.ofFloats(new float[2], 2).viewAs(ElementType.FLOAT64));
        assertThrows(IllegalStateException.class, () -> Tensor.ofFloats(new float[2], 2).toLongArray());
        assertThrows(IllegalStateException.class, () -> Tensor.ofLongs(new long[2], 2).toFloatArray());
        Tensor t = Tensor.ofFloats(new float[6], 2, 3);
        assertArrayEquals(new long[] {3, 2}, t.reshape(3, 2).shape());
        assertThrows(IllegalArgumentException.class, () -> t.reshape(4, 2));
        assertFalse(t.equals(t.reshape(3, 2)));
        assertEquals(t, t.reshape(2, 3));
    }

    static float[] toFloats(double[] values) {
        float[] out = new float[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (float) values[i];
        }
        return out;
    }
}
