package dev.panamabn.interop;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Every way a .npy header can be malformed is refused with a message that says how. */
class NpyMalformedTest {

    @TempDir
    Path dir;

    /** A version 1.0 file with {@code dict} as its header and {@code dataBytes} zero bytes of data. */
    private Path file(String dict, int dataBytes) throws IOException {
        return file(1, dict.getBytes(StandardCharsets.ISO_8859_1), dataBytes);
    }

    private Path file(int major, byte[] dict, int dataBytes) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(NpyHeader.MAGIC);
        out.write(major);
        out.write(0);
        int length = dict.length;
        out.write(length & 0xff);
        out.write(length >>> 8 & 0xff);
        if (major > 1) {
            out.write(length >>> 16 & 0xff);
            out.write(length >>> 24 & 0xff);
        }
        out.write(dict);
        out.write(new byte[dataBytes]);
        Path file = Files.createTempFile(dir, "case", ".npy");
        Files.write(file, out.toByteArray());
        return file;
    }

    private static void refused(Path file, String expected) {
        try (Arena arena = Arena.ofConfined()) {
            TensorFormatException e = assertThrows(TensorFormatException.class, () -> Npy.read(file, arena));
            assertTrue(e.getMessage().contains(expected), "message '" + e.getMessage() + "' lacks '" + expected + "'");
            assertTrue(e.getMessage().startsWith(file.toString()), "the message names the file: " + e.getMessage());
            TensorFormatException mapped = assertThrows(TensorFormatException.class, () -> Npy.map(file, arena));
            assertTrue(mapped.getMessage().contains(expected), mapped.getMessage());
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource(delimiter = ';', quoteCharacter = '"', textBlock = """
            not a dict                     ; ['descr', '<f4']                                                          ; must be a dict literal
            missing descr                  ; {'fortran_order': False, 'shape': (2,), }                                 ; missing key 'descr'
            missing fortran_order          ; {'descr': '<f4', 'shape': (2,), }                                         ; missing key 'fortran_order'
            missing shape                  ; {'descr': '<f4', 'fortran_order': False, }                                ; missing key 'shape'
            extra key                      ; {'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }     ; unexpected key 'extra'
            duplicate key                  ; {'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), } ; duplicate key 'descr'
            complex type                   ; {'descr': '<c8', 'fortran_order': False, 'shape': (2,), }                 ; element type '<c8' is not supported
            object type                    ; {'descr': '|O', 'fortran_order': False, 'shape': (2,), }                  ; element type '|O' is not supported
            unicode type                   ; {'descr': '<U3', 'fortran_order': False, 'shape': (2,), }                 ; element type '<U3' is not supported
            long double                    ; {'descr': '<f16', 'fortran_order': False, 'shape': (2,), }                ; element type '<f16' is not supported
            void type                      ; {'descr': '|V2', 'fortran_order': False, 'shape': (2,), }                 ; element type '|V2' is not supported
            structured type                ; {'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }        ; structured types
            no byte order                  ; {'descr': 'f4', 'fortran_order': False, 'shape': (2,), }                  ; does not start with a byte order
            pipe on a float                ; {'descr': '|f4', 'fortran_order': False, 'shape': (2,), }                 ; only for one-byte types
            descr not a string             ; {'descr': 4, 'fortran_order': False, 'shape': (2,), }                     ; 'descr' must be a type string
            fortran_order not a bool       ; {'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }                     ; 'fortran_order' must be True or False
            shape a list                   ; {'descr': '<f4', 'fortran_order': False, 'shape': [2], }                  ; list shapes
            shape an int                   ; {'descr': '<f4', 'fortran_order': False, 'shape': 2, }                    ; 'shape' must be a tuple
            shape without comma            ; {'descr': '<f4', 'fortran_order': False, 'shape': (2), }                  ; needs a comma
            negative dimension             ; {'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }                ; negative dimension
            float dimension                ; {'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }               ; expected ',' or ')'
            string dimension               ; {'descr': '<f4', 'fortran_order': False, 'shape': ('2',), }               ; not an integer
            huge dimension                 ; {'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), } ; out of range
            overflowing size               ; {'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), } ; overflows
            unterminated string            ; {'descr': '<f4                                                            ; unterminated string
            unquoted string                ; {'descr': '<f4, 'fortran_order': False, 'shape': (2,), }                  ; expected ',' or '}'
            missing colon                  ; {'descr' '<f4', 'fortran_order': False, 'shape': (2,), }                  ; expected ':'
            missing comma                  ; {'descr': '<f4' 'fortran_order': False, 'shape': (2,), }                  ; expected ',' or '}'
            unclosed dict                  ; {'descr': '<f4', 'fortran_order': False, 'shape': (2,),                   ; ends early
            text after the dict            ; {'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x               ; unexpected text after the dict
            unknown literal                ; {'descr': '<f4', 'fortran_order': None, 'shape': (2,), }                  ; unexpected value
            escape in a string             ; {'descr': '<f\\4', 'fortran_order': False, 'shape': (2,), }              ; escape sequences
            empty header                   ; ''                                                                        ; ends early
            """)
    void malformedHeaderIsRefused(String what, String dict, String expected) throws IOException {
        refused(file(dict.equals("''") ? "" : dict + "\n", 8), expected);
    }

    @Test
    void badMagicIsRefused() throws IOException {
        Path file = dir.resolve("bad.npy");
        Files.write(file, "PK\u0003\u0004 this is a zip, not a .npy file".getBytes(StandardCharsets.ISO_8859_1));
        refused(file, "not a .npy file");
    }

    @Test
    void shortFileIsRefused() throws IOException {
        Path file = dir.resolve("short.npy");
        Files.write(file, new byte[] {(byte) 0x93, 'N', 'U', 'M'});
        refused(file, "shorter than the 10-byte preamble");
    }

    @Test
    void unknownVersionsAreRefused() throws IOException {
        String dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
        Path v4 = file(1, dict.getBytes(StandardCharsets.ISO_8859_1), 8);
        byte[] bytes = Files.readAllBytes(v4);
        bytes[6] = 4;
        Files.write(v4, bytes);
        refused(v4, "version 4.0 is not supported");
        bytes[6] = 1;
        bytes[7] = 1;
        Files.write(v4, bytes);
        refused(v4, "version 1.1 is not supported");
    }

    @Test
    void headerLongerThanTheFileIsRefused() throws IOException {
        Path file = file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 0);
        byte[] bytes = Files.readAllBytes(file);
        bytes[8] = (byte) 0xff;
        bytes[9] = 0x7f;
        Files.write(file, bytes);
        refused(file, "ends inside the .npy header");
    }

    @Test
    void hugeVersion2HeaderIsRefused() throws IOException {
        Path file = file(2, "{}".getBytes(StandardCharsets.ISO_8859_1), 0);
        byte[] bytes = Files.readAllBytes(file);
        bytes[11] = 0x7f;
        Files.write(file, bytes);
        refused(file, "exceeds the limit");
    }

    @Test
    void truncatedDataIsRefused() throws IOException {
        refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n", 20),
                "truncated: shape [2, 3] of FLOAT32 needs 24 bytes of data, the file has 20");
    }

    @Test
    void trailingBytesAreRefused() throws IOException {
        refused(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", 9),
                "1 unexpected bytes after the 8 bytes of data");
    }

    @Test
    void wellFormedVariantsAreAccepted() throws IOException {
        try (Arena arena = Arena.ofConfined()) {
            // Python 2's long suffix, double quotes, no trailing comma, no newline, native order,
            // version 3.0 (UTF-8).
            Tensor py2 = Npy.read(file("{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L), }", 8), arena);
            assertArrayEquals(new long[] {2, 1}, py2.shape());
            Tensor quotes = Npy.read(file("{\"descr\": \"=f8\", \"shape\": (1,), \"fortran_order\": True}", 8), arena);
            assertArrayEquals(new long[] {1}, quotes.shape());
            Tensor v3 = Npy.read(file(3, "{'descr': '<i8', 'fortran_order': False, 'shape': (), }\n"
                    .getBytes(StandardCharsets.UTF_8), 8), arena);
            assertArrayEquals(new long[] {0}, v3.toLongArray());
        }
    }
}
