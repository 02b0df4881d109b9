package dev.panamabn;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * Fresh random cases from PyTorch, generated now by {@code scripts/gen_golden.py --random} with
 * Debian's python3 (the one that has torch), replayed like the committed golden data. Skipped,
 * with the reason printed, when python3 or torch is missing; the seed is printed for replaying a
 * failure.
 */
class PyTorchCrossCheckTest {

    /** Debian's python3, which has torch (a pyenv python3 earlier on the PATH may not). */
    private static final String PYTHON = System.getProperty("panamabn.python", "/usr/bin/python3");
    private static final int CASES = 20;
    /** gen_golden.py's exit code when torch cannot be imported. */
    private static final int NO_TORCH = 3;

    @Test
    void freshRandomCasesMatchPyTorch(@TempDir Path out) throws IOException, InterruptedException {
        Path script = Path.of(System.getProperty("panamabn.scripts", "scripts"), "gen_golden.py");
        assertTrue(Files.isRegularFile(script), script + " is missing");
        skipIf(!Files.isExecutable(Path.of(PYTHON)), PYTHON + " is not installed");

        long seed = Long.getLong("panamabn.seed", ThreadLocalRandom.current().nextLong(1L << 31));
        System.out.println("PyTorchCrossCheckTest: seed " + seed + " (rerun with -Dpanamabn.seed=" + seed + ")");
        List<String> command = List.of(PYTHON, script.toString(), "--random", Integer.toString(CASES),
                "--seed", Long.toString(seed), "--out", out.toString());
        Path log = Files.createTempFile("gen_golden", ".log");
        Process process = new ProcessBuilder(command).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        if (!process.waitFor(5, TimeUnit.MINUTES)) {
            process.destroyForcibly();
            fail("gen_golden.py did not finish within 5 minutes: " + command);
        }
        String output = Files.readString(log);
        Files.delete(log);
        skipIf(process.exitValue() == NO_TORCH, "torch is not importable by " + PYTHON + ": " + output.strip());
        assertEquals(0, process.exitValue(), "gen_golden.py failed: " + command + "\n" + output);

        List<Path> files = GoldenDataTest.caseFiles(out);
        assertEquals(CASES, files.size(), "gen_golden.py --random " + CASES + " wrote " + files.size() + " cases");
        List<String> failures = new ArrayList<>();
        for (Path file : files) {
            GoldenCase gc = GoldenCase.read(file);
            for (boolean arrays : new boolean[] {false, true}) {
                try {
                    GoldenReplay.replay(gc, arrays);
                } catch (AssertionError e) {
                    failures.add(e.getMessage());
                }
            }
        }
        assertTrue(failures.isEmpty(), "seed " + seed + ": " + failures.size() + " failures:\n"
                + String.join("\n", failures));
    }

    private static void skipIf(boolean condition, String reason) {
        if (condition) {
            System.out.println("PyTorchCrossCheckTest SKIPPED: " + reason);
        }
        assumeTrue(!condition, reason);
    }
}
