package dev.panamabn;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class NativeLibraryTest {

    @Test
    void loadsFromTheSystemPropertyPath() throws URISyntaxException {
        Path library = builtLibrary();
        String where = NativeLibrary.load(library.toString(), "/no/such/resource.so", "no_such_library");
        assertTrue(where.contains(library.toString()) && where.contains(NativeLibrary.PATH_PROPERTY), where);
    }

    @Test
    void aBadPropertyPathIsAnErrorNamingIt() {
        var e = assertThrows(UnsatisfiedLinkError.class,
                () -> NativeLibrary.load("/nonexistent/libbatchnorm.so", NativeLibrary.RESOURCE, NativeLibrary.LIBRARY_NAME));
        assertTrue(e.getMessage().contains("system property panamabn.library.path=/nonexistent/libbatchnorm.so: no such file"),
                e.getMessage());
    }

    @Test
    void theErrorNamesEveryPlaceTried() {
        var e = assertThrows(UnsatisfiedLinkError.class,
                () -> NativeLibrary.load(null, "/native/nowhere/libbatchnorm.so", "batchnorm_that_does_not_exist"));
        String message = e.getMessage();
        assertTrue(message.startsWith("libbatchnorm could not be loaded; tried:"), message);
        assertTrue(message.contains("1. system property panamabn.library.path: not set"), message);
        assertTrue(message.contains("2. class path resource /native/nowhere/libbatchnorm.so: not found"), message);
        assertTrue(message.contains("3. System.loadLibrary(\"batchnorm_that_does_not_exist\") with java.library.path="),
                message);
    }

    @Test
    void theFlagIsNamed() {
        assertEquals("--enable-native-access=ALL-UNNAMED", NativeLibrary.nativeAccessFlag());
    }

    /**
     * In a JVM started without the flag, the library says once what to add: as a warning where the
     * JDK allows the load (and warns itself), as the exception's message where it denies it.
     */
    @Test
    void withoutNativeAccessTheMessageNamesTheFlag() throws Exception {
        String advice = "native access is not enabled for panama-batchnorm: start java with --enable-native-access=ALL-UNNAMED";
        Run warned = runProbe(List.of());
        assertEquals(0, warned.exit(), warned.output());
        assertEquals(1, occurrences(warned.output(), advice), warned.output());

        Run denied = runProbe(List.of("--illegal-native-access=deny"));
        assertNotEquals(0, denied.exit(), denied.output());
        assertEquals(1, occurrences(denied.output(), "java.lang.IllegalCallerException: " + advice), denied.output());
        assertEquals(1, occurrences(denied.output(), advice), "one line, no warning before the error: " + denied.output());

        Run enabled = runProbe(List.of("--enable-native-access=ALL-UNNAMED"));
        assertEquals(0, enabled.exit(), enabled.output());
        assertEquals("threads " + Parallelism.threads(), enabled.output().strip());
    }

    private static int occurrences(String text, String part) {
        int count = 0;
        for (int i = text.indexOf(part); i >= 0; i = text.indexOf(part, i + 1)) {
            count++;
        }
        return count;
    }

    /**
     * A library that loads but lacks the bindings' symbols (here the JDK's own libzip) is refused
     * when the first module is created, naming the file and a missing symbol, and again on every
     * later try; no module ever exists, so no state can be half-updated by it.
     */
    @Test
    void aLibraryWithoutTheSymbolsIsRefusedAtCreate() throws Exception {
        Path wrong = Path.of(System.getProperty("java.home"), "lib", "libzip.so");
        assertTrue(java.nio.file.Files.isRegularFile(wrong), wrong + " is missing");
        Run run = runProbe(List.of("--enable-native-access=ALL-UNNAMED", "-D" + NativeLibrary.PATH_PROPERTY + "=" + wrong),
                "create");
        assertEquals(0, run.exit(), run.output());
        String[] lines = run.output().strip().split("\n");
        assertEquals(2, lines.length, run.output());
        for (String line : lines) {
            assertTrue(line.startsWith("create failed: java.lang.UnsatisfiedLinkError: "), line);
            assertTrue(line.contains(wrong.toString()), line);
            assertTrue(line.matches(".*lacks the symbol bn_\\w+.*"), line);
        }
    }

    record Run(int exit, String output) {
    }

    private static Run runProbe(List<String> jvmOptions, String... args) throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> command = new ArrayList<>(List.of(java));
        command.addAll(jvmOptions);
        String property = System.getProperty(NativeLibrary.PATH_PROPERTY);
        if (property != null && jvmOptions.stream().noneMatch(o -> o.startsWith("-D" + NativeLibrary.PATH_PROPERTY))) {
            command.add("-D" + NativeLibrary.PATH_PROPERTY + "=" + property);
        }
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), LoaderProbe.class.getName()));
        command.addAll(List.of(args));
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "probe did not finish");
        return new Run(p.exitValue(), output);
    }

    /** The library this build made, in place under target/classes (or where the property points). */
    static Path builtLibrary() throws URISyntaxException {
        String property = System.getProperty(NativeLibrary.PATH_PROPERTY);
        if (property != null) {
            return Path.of(property).toAbsolutePath();
        }
        URL url = NativeLibrary.class.getResource(NativeLibrary.RESOURCE);
        assertTrue(url != null && url.getProtocol().equals("file"), "the build did not put " + NativeLibrary.RESOURCE
                + " under target/classes");
        return Path.of(url.toURI());
    }
}
