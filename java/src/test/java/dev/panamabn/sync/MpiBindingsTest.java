package dev.panamabn.sync;

import dev.panamabn.MpiCollective;
import dev.panamabn.internal.mpi.BatchNormMpi;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.lang.foreign.AddressLayout;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.ValueLayout;
import java.lang.reflect.Field;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
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

/** The committed MPI shim bindings still describe native/mpi/bn_mpi.h. */
class MpiBindingsTest {

    private static final Path ROOT = Path.of(System.getProperty("panamabn.testdata", "testdata")).toAbsolutePath().getParent();
    private static final Path HEADER = ROOT.resolve("native/mpi/bn_mpi.h");
    private static final Path STAMP = ROOT.resolve("java/src/main/java/dev/panamabn/internal/mpi/bn_mpi.h.sha256");

    @Test
    void headerHashMatchesTheStamp() throws Exception {
        String stamped = null;
        for (String line : Files.readAllLines(STAMP)) {
            if (line.startsWith("sha256 ")) {
                stamped = line.substring("sha256 ".length()).strip();
            }
        }
        assertNotNull(stamped, STAMP + " has no 'sha256' line");
        String actual = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(HEADER)));
        assertEquals(stamped, actual, HEADER + " changed since the bindings were generated: run scripts/jextract.sh");
    }

    /** The status codes MpiCollective knows are the header's. */
    @Test
    void statusCodesMatchTheHeader() throws Exception {
        Matcher m = Pattern.compile("#define (BN_MPI_(?:OK|ERR_\\w+)) (\\d+)").matcher(Files.readString(HEADER));
        int checked = 0;
        while (m.find()) {
            Field field;
            try {
                field = MpiCollective.class.getDeclaredField(m.group(1));
            } catch (NoSuchFieldException unused) {
                continue;
            }
            field.setAccessible(true);
            assertEquals(Integer.parseInt(m.group(2)), field.getInt(null), m.group(1));
            checked++;
        }
        assertEquals(6, checked, "the codes MpiCollective uses");
    }

    /** Every function of the header has a binding whose descriptor matches its prototype. */
    @Test
    void descriptorsMatchThePrototypes() throws Exception {
        if (!MpiCollective.isAvailable()) {
            System.out.println("MpiBindingsTest.descriptorsMatchThePrototypes SKIPPED: libbatchnorm_mpi does not load here (no MPI)");
            Assumptions.abort("no MPI");
        }
        Map<String, List<String>> prototypes = prototypes(Files.readString(HEADER));
        assertFalse(prototypes.isEmpty(), "no BN_MPI_API prototypes found in " + HEADER);
        for (var entry : prototypes.entrySet()) {
            FunctionDescriptor descriptor = (FunctionDescriptor) BatchNormMpi.class
                    .getMethod(entry.getKey() + "$descriptor").invoke(null);
            List<String> actual = new ArrayList<>();
            actual.add(descriptor.returnLayout().map(MpiBindingsTest::kind).orElse("void"));
            descriptor.argumentLayouts().forEach(l -> actual.add(kind(l)));
            assertEquals(entry.getValue(), actual, entry.getKey() + ": descriptor " + descriptor);
        }
        assertEquals(prototypes.size(), BatchNormMpi.class.getDeclaredMethods().length / 4,
                "bindings for functions the header no longer declares");
    }

    /** name -> [return kind, argument kinds...] for each BN_MPI_API declaration. */
    private static Map<String, List<String>> prototypes(String header) {
        String code = header.replaceAll("(?s)/\\*.*?\\*/", " ").replaceAll("//[^\n]*", " ")
                .replaceAll("(?m)^\\s*#.*$", " ");
        Matcher m = Pattern.compile("BN_MPI_API\\s+([^;(]*?)\\b(\\w+)\\s*\\(([^)]*)\\)\\s*;").matcher(code);
        Map<String, List<String>> result = new LinkedHashMap<>();
        while (m.find()) {
            List<String> kinds = new ArrayList<>();
            kinds.add(cKind(m.group(1)));
            for (String p : m.group(3).split(",")) {
                String param = p.strip();
                if (!param.isEmpty() && !param.equals("void")) {
                    kinds.add(cKind(param.replaceAll("\\w+$", "")));
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
            case "int32_t" -> "int";
            case "int64_t" -> "long";
            case "double" -> "double";
            case "void" -> "void";
            default -> throw new AssertionError("a C type the bindings test does not know: " + t);
        };
    }

    private static String kind(MemoryLayout layout) {
        if (layout instanceof AddressLayout) {
            return "pointer";
        }
        if (layout instanceof ValueLayout.OfInt) {
            return "int";
        }
        if (layout instanceof ValueLayout.OfLong) {
            return "long";
        }
        if (layout instanceof ValueLayout.OfDouble) {
            return "double";
        }
        return layout.toString();
    }
}
