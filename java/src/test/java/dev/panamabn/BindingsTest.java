package dev.panamabn;

import dev.panamabn.internal.BatchNormNative;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.lang.foreign.AddressLayout;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.ValueLayout;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/** The committed bindings still describe native/include/batchnorm.h. */
class BindingsTest {

    private static final Path ROOT = Path.of(System.getProperty("panamabn.testdata", "testdata")).toAbsolutePath().getParent();
    private static final Path HEADER = ROOT.resolve("native/include/batchnorm.h");
    private static final Path STAMP = ROOT.resolve("java/src/main/java/dev/panamabn/internal/batchnorm.h.sha256");

    @Test
    void headerHashMatchesTheStamp() throws IOException, NoSuchAlgorithmException {
        String stamped = null;
        for (String line : Files.readAllLines(STAMP)) {
            if (line.startsWith("sha256 ")) {
                stamped = line.substring("sha256 ".length()).strip();
            }
        }
        assertNotNull(stamped, STAMP + " has no 'sha256' line");
        String actual = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(HEADER)));
        assertEquals(stamped, actual, HEADER + " changed since the bindings were generated: run scripts/jextract.sh"
                + " (and update the Java API if the functions changed)");
    }

    /**
     * Every function of the header has a binding whose descriptor matches its prototype, type by
     * type (int32_t as int, int64_t as long, double, pointers as addresses).
     */
    @Test
    void descriptorsMatchThePrototypes() throws Exception {
        // A descriptor lives in the same holder class as its symbol, which must resolve.
        NativeLibrary.ensureLoaded();
        Map<String, List<String>> prototypes = prototypes(Files.readString(HEADER));
        assertFalse(prototypes.isEmpty(), "no BN_API prototypes found in " + HEADER);
        for (var entry : prototypes.entrySet()) {
            String name = entry.getKey();
            Method method = BatchNormNative.class.getMethod(name + "$descriptor");
            FunctionDescriptor descriptor = (FunctionDescriptor) method.invoke(null);
            List<String> actual = new ArrayList<>();
            actual.add(descriptor.returnLayout().map(BindingsTest::kind).orElse("void"));
            descriptor.argumentLayouts().forEach(l -> actual.add(kind(l)));
            assertEquals(entry.getValue(), actual, name + ": descriptor " + descriptor);
        }
    }

    /** name -> [return kind, argument kinds...] for each {@code BN_API} declaration. */
    static Map<String, List<String>> prototypes(String header) {
        String code = header.replaceAll("(?s)/\\*.*?\\*/", " ").replaceAll("//[^\n]*", " ");
        Pattern declaration = Pattern.compile("BN_API\\s+([^;(]*?)\\b(\\w+)\\s*\\(([^)]*)\\)\\s*;");
        Map<String, List<String>> result = new LinkedHashMap<>();
        Matcher m = declaration.matcher(code);
        while (m.find()) {
            List<String> kinds = new ArrayList<>();
            kinds.add(cKind(m.group(1)));
            String params = m.group(3).strip();
            if (!params.equals("void") && !params.isEmpty()) {
                for (String p : params.split(",")) {
                    kinds.add(cKind(p.strip().replaceAll("\\w+$", "")));
                }
            }
            result.put(m.group(2), kinds);
        }
        return result;
    }

    private static String cKind(String type) {
        String t = type.replace("const", "").strip();
        if (t.endsWith("*")) {
            return "pointer";
        }
        return switch (t) {
            case "int32_t", "int" -> "int";
            case "int64_t" -> "long";
            case "double" -> "double";
            case "float" -> "float";
            case "void" -> "void";
            default -> throw new AssertionError("unexpected C type '" + t + "'");
        };
    }

    private static String kind(MemoryLayout layout) {
        if (layout instanceof AddressLayout) {
            return "pointer";
        }
        Class<?> carrier = ((ValueLayout) layout).carrier();
        return carrier.getName();
    }
}
