package dev.panamabn;

import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/** Every case of testdata/golden (PyTorch's results, see FORMAT.md) through both API paths. */
class GoldenDataTest {

    static Path goldenDir() {
        String testdata = System.getProperty("panamabn.testdata");
        assertNotNull(testdata, "system property panamabn.testdata (set by surefire) is missing");
        return Path.of(testdata, "golden");
    }

    static List<Path> caseFiles(Path dir) throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            return files.filter(p -> p.getFileName().toString().endsWith(".txt")).sorted().toList();
        }
    }

    @TestFactory
    List<DynamicTest> everyGoldenCase() throws IOException {
        List<Path> files = caseFiles(goldenDir());
        assertFalse(files.isEmpty(), "no golden cases (*.txt) in " + goldenDir());
        List<DynamicTest> tests = new ArrayList<>();
        for (Path file : files) {
            GoldenCase gc = GoldenCase.read(file);
            tests.add(DynamicTest.dynamicTest(gc.name() + " via MemorySegment", () -> GoldenReplay.replay(gc, false)));
            tests.add(DynamicTest.dynamicTest(gc.name() + " via float[]", () -> GoldenReplay.replay(gc, true)));
        }
        return tests;
    }
}
