package dev.panamabn;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Steady-state calls allocate nothing on the Java heap, on both paths: module buffers are reused,
 * and the array wrappers of the float[] path are removed by escape analysis once the JIT has
 * compiled the caller. Measured in a fresh JVM running a plain training-style loop
 * ({@link AllocationProbe}): inside this test JVM, the other tests' mix of segment types skews
 * the JIT's profiles, which says nothing about an application's steady state.
 */
class AllocationTest {

    @Test
    void forwardAndBackwardAllocateNothingOnceCompiled() throws Exception {
        List<String> command = new ArrayList<>(List.of(ProcessHandle.current().info().command().orElse("java"),
                NativeLibrary.nativeAccessFlag()));
        String library = System.getProperty(NativeLibrary.PATH_PROPERTY);
        if (library != null) {
            command.add("-D" + NativeLibrary.PATH_PROPERTY + "=" + library);
        }
        command.addAll(List.of("-cp", System.getProperty("java.class.path"), AllocationProbe.class.getName()));
        Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
        String output = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(2, TimeUnit.MINUTES), "the probe did not finish");
        System.out.print("AllocationTest: " + output);
        assertEquals(0, p.exitValue(), output);
    }
}
