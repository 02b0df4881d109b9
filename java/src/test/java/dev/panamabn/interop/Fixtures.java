package dev.panamabn.interop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Where the interop fixtures live, and running Debian's python3 for the tests that need it. */
final class Fixtures {

    /** Debian's python3, which has numpy, torch and onnx (a pyenv python3 earlier on the PATH may not). */
    static final String PYTHON = System.getProperty("panamabn.python", "/usr/bin/python3");
    /** The scripts' exit code when a Python package cannot be imported. */
    static final int NOT_IMPORTABLE = 3;

    private Fixtures() {
    }

    /** testdata/interop/{first}/{more...} */
    static Path path(String first, String... more) {
        return Path.of(System.getProperty("panamabn.testdata", "testdata"), "interop").resolve(Path.of(first, more));
    }

    static Path script(String name) {
        return Path.of(System.getProperty("panamabn.scripts", "scripts"), name);
    }

    /** The fixtures' recomputable values: arange(n) * 0.5 - 3. */
    static double[] arangeValues(int n) {
        double[] v = new double[n];
        for (int i = 0; i < n; i++) {
            v[i] = i * 0.5 - 3;
        }
        return v;
    }

    /** Skips the calling test with one visible line. */
    static void skipIf(boolean condition, String test, String reason) {
        if (condition) {
            System.out.println(test + " SKIPPED: " + reason);
        }
        assumeTrue(!condition, reason);
    }

    /** The outcome of a Python run: its exit code and its output (stdout and stderr). */
    record Run(int exitCode, String output) {
    }

    /**
     * Runs a NumPy check script with {@code args}; it must print {@code ok}. Skips the test when
     * python3 or numpy is missing.
     */
    static void assertNumpyCheckPasses(String test, String script, String... args)
            throws IOException, InterruptedException {
        String[] command = new String[args.length + 2];
        command[0] = "-c";
        command[1] = script;
        System.arraycopy(args, 0, command, 2, args.length);
        Run run = python(test, command);
        skipIf(run.output().contains("No module named 'numpy'"), test, "numpy is not importable by " + PYTHON);
        assertEquals(0, run.exitCode(), run.output());
        assertEquals("ok", run.output());
    }

    /** Runs {@code python3 args...}; skips the test when python3 is missing. */
    static Run python(String test, String... args) throws IOException, InterruptedException {
        skipIf(!Files.isExecutable(Path.of(PYTHON)), test, PYTHON + " is not installed");
        List<String> command = new ArrayList<>();
        command.add(PYTHON);
        command.addAll(List.of(args));
        Path log = Files.createTempFile("interop-python", ".log");
        try {
            Process process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
            if (!process.waitFor(5, TimeUnit.MINUTES)) {
                process.destroyForcibly();
                fail("python did not finish within 5 minutes: " + command);
            }
            return new Run(process.exitValue(), Files.readString(log).strip());
        } finally {
            Files.delete(log);
        }
    }
}
