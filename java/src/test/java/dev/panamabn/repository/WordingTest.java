package dev.panamabn.repository;

import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The repository speaks of the product, not of how it was made: no text file under version
 * control (docs, code, comments, scripts, test names, report templates) refers to work sessions,
 * tracker issues, numbered runs or the people and processes behind them.
 */
class WordingTest {

    private static final Path ROOT = Path.of(System.getProperty("panamabn.testdata", "testdata"))
            .toAbsolutePath().getParent();

    /**
     * Phrases that only describe the making of the product. Case-insensitive unless written with
     * (?-i). Each is narrow enough that product text never needs it.
     */
    static final List<Pattern> FORBIDDEN = Stream.of(
            "\\bsessions?\\s+\\d+",                               // a numbered work session
            "\\bsessions?\\s+[2-9]\\s*(-|–|to)\\s*\\d",            // a range of them
            "\\bthis session\\b", "\\bnext session\\b", "\\bprevious session\\b", "\\bsession's\\b",
            "\\bissues?[ -]?#?\\d+",                              // a numbered tracker issue
            "\\bthe issue (asks|says|wants|requires|demands)\\b",
            "\\bthe suite judges\\b", "\\bthe brief\\b", "\\bthe lead engineer\\b", "\\bthe CEO\\b",
            "(?-i)\\b[Rr]uns? [A-Z]\\b(?![/-])",                  // a lettered measurement (not "A/B")
            "(?-i)\\bfull run [A-Z]\\b")
            .map(p -> Pattern.compile(p, Pattern.CASE_INSENSITIVE | Pattern.UNICODE_CASE))
            .toList();

    /** This file: it holds the phrases, to match them. */
    private static final Path SELF = Path.of("java/src/test/java/dev/panamabn/repository/WordingTest.java");

    @Test
    void noTrackedFileDescribesHowTheProductWasMade() throws Exception {
        List<String> hits = new ArrayList<>();
        for (Path file : trackedTextFiles()) {
            if (file.endsWith(SELF)) {
                continue;
            }
            List<String> lines;
            try {
                lines = Files.readAllLines(ROOT.resolve(file), StandardCharsets.UTF_8);
            } catch (java.nio.charset.MalformedInputException binary) {
                continue;
            }
            for (int i = 0; i < lines.size(); i++) {
                for (Pattern p : FORBIDDEN) {
                    Matcher m = p.matcher(lines.get(i));
                    if (m.find()) {
                        hits.add(file + ":" + (i + 1) + ": \"" + m.group() + "\" in: " + lines.get(i).strip());
                        break;
                    }
                }
            }
        }
        assertTrue(hits.isEmpty(), hits.size() + " lines describe how the product was made:\n  "
                + String.join("\n  ", hits));
    }

    /**
     * The patterns catch the phrasings they are for, and leave ordinary product text alone. The
     * phrasings are assembled from the unit's noun and a number or letter, so that this file's own
     * lines do not carry them.
     */
    @Test
    void thePatternsMatchWhatTheyAreFor() {
        List<String> bad = new ArrayList<>(List.of("the %s asks for 3x".formatted("issue"),
                "the suite judges this target"));
        for (String form : List.of("measured in %s 7", "%ss 3 and 4 tried", "%ss 2-3", "this %s's tries")) {
            bad.add(form.formatted("session"));
        }
        for (String form : List.of("see %s 4", "(%s-3 target)", "%s #3")) {
            bad.add(form.formatted("issue"));
        }
        for (String form : List.of("in %s K the copy", "%ss I and J", "from full %s G")) {
            bad.add(form.formatted("run"));
        }
        for (String phrase : bad) {
            assertTrue(FORBIDDEN.stream().anyMatch(p -> p.matcher(phrase).find()), "not caught: " + phrase);
        }
        for (String fine : List.of("Arena.ofShared() sessions", "MemorySessionImpl", "an issue with the JDK",
                "run A/B in one process", "runs on any x86-64", "Run with --enable-native-access", "the run",
                "a test run", "CI runs ctest", "sessionId 7", "helpers to move test data")) {
            assertTrue(FORBIDDEN.stream().noneMatch(p -> p.matcher(fine).find()), "wrongly caught: " + fine);
        }
    }

    /** git ls-files when the tree is a git checkout, else every file outside build output. */
    private static List<Path> trackedTextFiles() throws IOException, InterruptedException {
        List<Path> files = new ArrayList<>();
        if (Files.exists(ROOT.resolve(".git"))) {
            Process git = new ProcessBuilder("git", "ls-files", "-z").directory(ROOT.toFile()).start();
            String out = new String(git.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (git.waitFor(60, TimeUnit.SECONDS) && git.exitValue() == 0) {
                for (String name : out.split("\0")) {
                    if (!name.isEmpty() && Files.isRegularFile(ROOT.resolve(name)) && isText(name)) {
                        files.add(Path.of(name));
                    }
                }
                return files;
            }
        }
        try (Stream<Path> walk = Files.walk(ROOT)) {
            walk.filter(Files::isRegularFile).map(ROOT::relativize)
                    .filter(p -> !p.startsWith("target") && !p.startsWith(".git") && !p.toString().contains("/target/"))
                    .filter(p -> isText(p.toString())).forEach(files::add);
        }
        return files;
    }

    private static boolean isText(String name) {
        return !name.matches(".*\\.(png|jpg|gif|so|jar|class|pb|onnx|bin|npy)$") && !name.startsWith("native/fuzz/corpus/");
    }
}
