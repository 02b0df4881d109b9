package dev.panamabn.interop;

import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The header of a {@code .npy} file (NumPy's format versions 1.0, 2.0 and 3.0): the magic string,
 * the version, the header length and a Python dict literal
 * {@code {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }} padded with spaces and a
 * newline. Parsing is strict: anything NumPy would not write, or would not read back as an array
 * of one of the {@link ElementType}s, is refused with the reason.
 *
 * @param type the element type
 * @param order the byte order of the data (the platform's for one-byte types)
 * @param fortranOrder whether the data is column-major
 * @param shape the dimensions
 * @param dataOffset where the data starts in the file
 */
record NpyHeader(ElementType type, ByteOrder order, boolean fortranOrder, long[] shape, long dataOffset) {

    static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
    /** The longest header accepted; NumPy itself refuses headers over 10000 bytes by default. */
    static final int MAX_HEADER_LENGTH = 1 << 20;
    /** magic, version, 2-byte length. */
    static final int PREAMBLE_V1 = MAGIC.length + 2 + 2;
    /** magic, version, 4-byte length. */
    static final int PREAMBLE_V2 = MAGIC.length + 2 + 4;
    /** NumPy aligns the data to 64 bytes. */
    private static final int ALIGNMENT = 64;

    NpyHeader {
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    long elementCount() {
        return Tensor.elementCount(shape);
    }

    /** The data's byte size (checked for overflow). */
    long dataBytes() {
        return Tensor.byteSize(type, shape);
    }

    /**
     * The header length announced by a preamble, checking the magic and the version.
     *
     * @param preamble the first {@link #PREAMBLE_V1} bytes, or {@link #PREAMBLE_V2} for versions 2 and 3
     * @return {@code [preamble length, header length]}; the first is {@link #PREAMBLE_V2} when more
     *         bytes are needed before the length can be read
     */
    static int[] preamble(byte[] preamble, String source) throws TensorFormatException {
        if (preamble.length < PREAMBLE_V1 || !Arrays.equals(preamble, 0, MAGIC.length, MAGIC, 0, MAGIC.length)) {
            throw new TensorFormatException(source + ": not a .npy file (it does not start with \\x93NUMPY)");
        }
        int major = preamble[6] & 0xff;
        int minor = preamble[7] & 0xff;
        if (major < 1 || major > 3 || minor != 0) {
            throw new TensorFormatException(source + ": .npy format version " + major + "." + minor
                    + " is not supported (1.0, 2.0 and 3.0 are)");
        }
        if (major == 1) {
            int length = (preamble[8] & 0xff) | (preamble[9] & 0xff) << 8;
            return new int[] {PREAMBLE_V1, length};
        }
        if (preamble.length < PREAMBLE_V2) {
            return new int[] {PREAMBLE_V2, -1};
        }
        long length = (preamble[8] & 0xffL) | (preamble[9] & 0xffL) << 8 | (preamble[10] & 0xffL) << 16
                | (preamble[11] & 0xffL) << 24;
        if (length > MAX_HEADER_LENGTH) {
            throw new TensorFormatException(source + ": .npy header length " + length + " exceeds the limit of "
                    + MAX_HEADER_LENGTH + " bytes");
        }
        return new int[] {PREAMBLE_V2, (int) length};
    }

    /** Parses the dict literal of a file whose preamble said {@code major}. */
    static NpyHeader parse(byte[] headerBytes, int major, int preambleLength, String source)
            throws TensorFormatException {
        String text = new String(headerBytes, major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
        Map<String, Object> dict;
        try {
            dict = new LiteralParser(text).dict();
        } catch (IllegalArgumentException e) {
            throw malformed(source, e.getMessage(), text);
        }
        for (String key : dict.keySet()) {
            if (!key.equals("descr") && !key.equals("fortran_order") && !key.equals("shape")) {
                throw malformed(source, "unexpected key '" + key + "'", text);
            }
        }
        Object descr = required(dict, "descr", source, text);
        Object fortran = required(dict, "fortran_order", source, text);
        Object shape = required(dict, "shape", source, text);
        if (!(fortran instanceof Boolean fortranOrder)) {
            throw malformed(source, "'fortran_order' must be True or False", text);
        }
        if (!(shape instanceof long[] dims)) {
            throw malformed(source, "'shape' must be a tuple of integers", text);
        }
        for (long d : dims) {
            if (d < 0) {
                throw malformed(source, "'shape' has a negative dimension", text);
            }
        }
        if (!(descr instanceof String typeString)) {
            throw malformed(source, "'descr' must be a type string such as '<f4' (structured types are not supported)",
                    text);
        }
        ElementType type;
        ByteOrder order;
        if (typeString.length() < 2 || "<>|=".indexOf(typeString.charAt(0)) < 0) {
            throw malformed(source, "'descr' " + quote(typeString) + " does not start with a byte order (<, >, = or |)",
                    text);
        }
        type = ElementType.ofNpyCode(typeString.substring(1));
        if (type == null) {
            throw malformed(source, "element type " + quote(typeString) + " is not supported (supported: bool, "
                    + "(u)int8/16/32/64, float16/32/64; bfloat16 travels as '<u2')", text);
        }
        order = switch (typeString.charAt(0)) {
            case '<' -> ByteOrder.LITTLE_ENDIAN;
            case '>' -> ByteOrder.BIG_ENDIAN;
            case '=' -> ByteOrder.nativeOrder();
            default -> {
                if (type.byteSize() != 1) {
                    throw malformed(source, "'descr' " + quote(typeString) + ": '|' (no byte order) is only for "
                            + "one-byte types", text);
                }
                yield ByteOrder.nativeOrder();
            }
        };
        if (type.byteSize() == 1) {
            order = ByteOrder.nativeOrder();
        }
        try {
            Tensor.byteSize(type, dims);
        } catch (IllegalArgumentException e) {
            throw malformed(source, e.getMessage(), text);
        }
        return new NpyHeader(type, order, fortranOrder, dims, (long) preambleLength + headerBytes.length);
    }

    /**
     * The complete header (preamble, dict, padding, newline) of a C-order array in the platform's
     * byte order, version 1.0 unless the dict needs 2.0.
     */
    static byte[] format(ElementType type, long[] shape) {
        String code = type == ElementType.BFLOAT16 ? ElementType.UINT16.npyCode() : type.npyCode();
        char orderChar = type.byteSize() == 1 ? '|' : ByteOrder.nativeOrder() == ByteOrder.LITTLE_ENDIAN ? '<' : '>';
        StringBuilder dims = new StringBuilder("(");
        for (int i = 0; i < shape.length; i++) {
            dims.append(i == 0 ? "" : ", ").append(shape[i]);
        }
        dims.append(shape.length == 1 ? ",)" : ")");
        String dict = "{'descr': '" + orderChar + code + "', 'fortran_order': False, 'shape': " + dims + ", }";
        int preamble = PREAMBLE_V1;
        int headerLength = paddedLength(preamble, dict.length());
        if (headerLength > 0xffff) {
            preamble = PREAMBLE_V2;
            headerLength = paddedLength(preamble, dict.length());
        }
        byte[] out = new byte[preamble + headerLength];
        System.arraycopy(MAGIC, 0, out, 0, MAGIC.length);
        out[6] = (byte) (preamble == PREAMBLE_V1 ? 1 : 2);
        out[7] = 0;
        for (int i = 0; i < preamble - 8; i++) {
            out[8 + i] = (byte) (headerLength >>> (8 * i));
        }
        byte[] ascii = dict.getBytes(StandardCharsets.ISO_8859_1);
        System.arraycopy(ascii, 0, out, preamble, ascii.length);
        Arrays.fill(out, preamble + ascii.length, out.length - 1, (byte) ' ');
        out[out.length - 1] = '\n';
        return out;
    }

    /** The dict, spaces and a newline, so that the data starts at a multiple of {@link #ALIGNMENT}. */
    private static int paddedLength(int preamble, int dictLength) {
        int unpadded = preamble + dictLength + 1;
        return dictLength + 1 + (ALIGNMENT - unpadded % ALIGNMENT) % ALIGNMENT;
    }

    private static Object required(Map<String, Object> dict, String key, String source, String text)
            throws TensorFormatException {
        if (!dict.containsKey(key)) {
            throw malformed(source, "missing key '" + key + "'", text);
        }
        return dict.get(key);
    }

    private static TensorFormatException malformed(String source, String what, String text) {
        String shown = text.strip();
        if (shown.length() > 200) {
            shown = shown.substring(0, 200) + "...";
        }
        return new TensorFormatException(source + ": malformed .npy header: " + what + " in " + shown);
    }

    private static String quote(String s) {
        return "'" + s + "'";
    }

    /**
     * The subset of Python literals a .npy header uses: a dict of string keys whose values are
     * strings, True/False, or tuples of integers (a list is parsed so that the error can say
     * what it is). Python 2 headers may write integers with an L suffix.
     */
    private static final class LiteralParser {
        private final String s;
        private int pos;

        LiteralParser(String s) {
            this.s = s;
        }

        Map<String, Object> dict() {
            skipSpace();
            expect('{', "the header must be a dict literal {...}");
            Map<String, Object> dict = new LinkedHashMap<>();
            skipSpace();
            while (peek() != '}') {
                String key = string();
                skipSpace();
                expect(':', "expected ':' after key '" + key + "'");
                Object value = value();
                if (dict.put(key, value) != null) {
                    throw new IllegalArgumentException("duplicate key '" + key + "'");
                }
                skipSpace();
                if (peek() == ',') {
                    pos++;
                    skipSpace();
                } else if (peek() != '}') {
                    throw new IllegalArgumentException("expected ',' or '}' at offset " + pos);
                }
            }
            pos++;
            skipSpace();
            if (pos != s.length()) {
                throw new IllegalArgumentException("unexpected text after the dict at offset " + pos);
            }
            return dict;
        }

        private Object value() {
            skipSpace();
            char c = peek();
            if (c == '\'' || c == '"') {
                return string();
            }
            if (c == '(') {
                return tuple();
            }
            if (c == '[') {
                throw new IllegalArgumentException("a list at offset " + pos + " (structured types and list shapes "
                        + "are not supported)");
            }
            if (s.startsWith("True", pos)) {
                pos += 4;
                return Boolean.TRUE;
            }
            if (s.startsWith("False", pos)) {
                pos += 5;
                return Boolean.FALSE;
            }
            if (Character.isDigit(c) || c == '-') {
                return integer();
            }
            throw new IllegalArgumentException("unexpected value at offset " + pos);
        }

        private long[] tuple() {
            expect('(', "expected '('");
            List<Long> items = new ArrayList<>();
            skipSpace();
            boolean comma = false;
            while (peek() != ')') {
                skipSpace();
                Object item = value();
                if (!(item instanceof Long v)) {
                    throw new IllegalArgumentException("a tuple element is not an integer at offset " + pos);
                }
                items.add(v);
                skipSpace();
                comma = false;
                if (peek() == ',') {
                    pos++;
                    comma = true;
                    skipSpace();
                } else if (peek() != ')') {
                    throw new IllegalArgumentException("expected ',' or ')' at offset " + pos);
                }
            }
            pos++;
            if (items.size() == 1 && !comma) {
                throw new IllegalArgumentException("'(" + items.get(0) + ")' is not a tuple (a one-element tuple "
                        + "needs a comma)");
            }
            return items.stream().mapToLong(Long::longValue).toArray();
        }

        private Long integer() {
            int start = pos;
            if (peek() == '-') {
                pos++;
            }
            while (pos < s.length() && Character.isDigit(s.charAt(pos))) {
                pos++;
            }
            String digits = s.substring(start, pos);
            if (digits.isEmpty() || digits.equals("-")) {
                throw new IllegalArgumentException("expected an integer at offset " + start);
            }
            if (pos < s.length() && (s.charAt(pos) == 'L' || s.charAt(pos) == 'l')) {
                pos++;
            }
            try {
                return Long.parseLong(digits);
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("integer '" + digits + "' is out of range");
            }
        }

        private String string() {
            char quote = peek();
            if (quote != '\'' && quote != '"') {
                throw new IllegalArgumentException("expected a quoted string at offset " + pos);
            }
            int end = s.indexOf(quote, pos + 1);
            if (end < 0) {
                throw new IllegalArgumentException("unterminated string at offset " + pos);
            }
            String value = s.substring(pos + 1, end);
            if (value.indexOf('\\') >= 0) {
                throw new IllegalArgumentException("escape sequences are not supported (string at offset " + pos + ")");
            }
            pos = end + 1;
            return value;
        }

        private void expect(char c, String message) {
            if (peek() != c) {
                throw new IllegalArgumentException(message + " (at offset " + pos + ")");
            }
            pos++;
        }

        private char peek() {
            if (pos >= s.length()) {
                throw new IllegalArgumentException("the header ends early");
            }
            return s.charAt(pos);
        }

        private void skipSpace() {
            while (pos < s.length() && (s.charAt(pos) == ' ' || s.charAt(pos) == '\n' || s.charAt(pos) == '\t'
                    || s.charAt(pos) == '\r')) {
                pos++;
            }
        }
    }
}
