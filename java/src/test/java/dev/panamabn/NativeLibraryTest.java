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

    /** In a JVM started without the flag, the warning, and under --illegal-native-access=deny the error, name it. */
    @Test
    void withoutNativeAccessTheMessageNamesTheFlag() throws Exception {
        Run warned = runProbe(List.of());
        assertEquals(0, warned.exit(), warned.output());
        assertTrue(warned.output().contains("start java with --enable-native-access=ALL-UNNAMED"), warned.output());

        Run denied = runProbe(List.of("--illegal-native-access=deny"));
        assertNotEquals(0, denied.exit(), denied.output());
        assertTrue(denied.output().contains("native access is not enabled for panama-batchnorm: start java with "
                + "--enable-native-access=ALL-UNNAMED"), denied.output());
    }

    record Run(int exit, String output) {
    }

    private static Run runProbe(List<String> jvmOptions) throws IOException, InterruptedException {
        String java = ProcessHandle.current().info().command().orElse("java");
        List<String> command = new ArrayList<>(List.of(java));
        command.addAll(jvmOptions);
        String property = System.getProperty(NativeLibrary.PATH_PROPERTY);
        if (property != null) {
            command.add("-D" + NativeLibrary.PATH_PROPERTY + "=" + property);
        }
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), LoaderProbe.class.getName()));
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
