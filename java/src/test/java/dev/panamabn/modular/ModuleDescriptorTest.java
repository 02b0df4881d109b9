package dev.panamabn.modular;

import org.junit.jupiter.api.Test;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The compiled module {@code dev.panamabn} as a modular application gets it (on the module path,
 * native access granted by module name): it exports only the public API (and its interchange package), requires only
 * jackson-core, keeps the generated
 * bindings closed, loads its library and runs. The tests themselves run on the class path.
 */
class ModuleDescriptorTest {

    @Test
    void theModuleExportsOnlyThePublicApiAndRuns() throws Exception {
        List<String> classPath = Arrays.asList(System.getProperty("java.class.path").split(File.pathSeparator));
        String classes = classPath.stream().filter(p -> p.endsWith("classes") && !p.endsWith("test-classes"))
                .findFirst().orElseThrow(() -> new AssertionError("no classes directory in " + classPath));
        String testClasses = classPath.stream().filter(p -> p.endsWith("test-classes")).findFirst().orElseThrow();
        assertTrue(Files.isRegularFile(Path.of(classes, "module-info.class")), "no module-info.class in " + classes);

        String jackson = classPath.stream().filter(p -> p.contains("jackson-core")).findFirst()
                .orElseThrow(() -> new AssertionError("no jackson-core jar in " + classPath));

        String java = ProcessHandle.current().info().command().orElseThrow();
        List<String> command = new ArrayList<>(List.of(java, "--enable-native-access=dev.panamabn",
                "--module-path", classes + File.pathSeparator + jackson, "--add-modules", "dev.panamabn",
                "-cp", testClasses,
                ModuleProbe.class.getName()));
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the probe hung");
        assertEquals(0, p.exitValue(), output);
        assertEquals(List.of("module dev.panamabn", "exports dev.panamabn",
                "exports dev.panamabn.interop", "packages [dev.panamabn, dev.panamabn.internal, dev.panamabn.internal.mpi, dev.panamabn.interop]", "native access true", "forward ran, counter 1",
                "internal refused: IllegalAccessException"), output.strip().lines().toList(), output);
    }
}
