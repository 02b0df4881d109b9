package dev.panamabn.interop;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Writes a file beside its destination and moves it into place, so that readers see the old file
 * or the complete new one, never a partial one, and a failed write leaves the old file alone.
 */
final class AtomicFile {

    @FunctionalInterface
    interface Content {
        void writeTo(FileChannel channel) throws IOException;
    }

    private AtomicFile() {
    }

    static void write(Path file, Content content) throws IOException {
        Path target = file.toAbsolutePath();
        // A name of our own with CREATE_NEW instead of Files.createTempFile, whose owner-only
        // permissions would stay on the final file; this one gets the usual umask permissions.
        Path temp = target.resolveSibling("." + target.getFileName() + "."
                + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
        try {
            try (FileChannel channel = FileChannel.open(temp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                content.writeTo(channel);
            }
            try {
                Files.move(temp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(temp, target, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException | RuntimeException | Error e) {
            try {
                Files.deleteIfExists(temp);
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }
}
