package dev.panamabn.interop;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.foreign.Arena;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.file.Path;
import java.util.Collections;
import java.util.Enumeration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipException;
import java.util.zip.ZipFile;
import java.util.zip.ZipOutputStream;

/**
 * NumPy's {@code .npz} archives ({@code np.savez}, {@code np.savez_compressed}): a zip file with
 * one {@code .npy} entry per array, {@code name.npy} for the key {@code name}. Each entry is read
 * and written like {@link Npy#read} and {@link Npy#write} (so big-endian and Fortran-order
 * entries are converted on reading).
 */
public final class Npz {

    private static final String SUFFIX = ".npy";
    /** A zip archive with no entries: just the end-of-central-directory record. */
    private static final byte[] EMPTY_ZIP = {'P', 'K', 5, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};

    private Npz() {
    }

    /**
     * Reads every array of a {@code .npz} file into {@code arena}, in the archive's order.
     *
     * @param file the file to read
     * @param arena the arena that allocates the arrays' data
     * @return the arrays by key (the entry name without {@code .npy}); an unmodifiable map
     * @throws TensorFormatException when the file is not a zip archive, an entry is not a
     *                               {@code .npy} file, a key appears twice, or an entry is malformed
     *                               (the message names the entry)
     * @throws IOException when the file cannot be read
     */
    public static Map<String, Tensor> read(Path file, Arena arena) throws IOException {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(arena, "arena");
        ZipFile zip;
        try {
            zip = new ZipFile(file.toFile());
        } catch (ZipException e) {
            throw new TensorFormatException(file + ": not a .npz file (not a zip archive: " + e.getMessage() + ")", e);
        }
        try (zip) {
            Map<String, Tensor> tensors = new LinkedHashMap<>();
            Enumeration<? extends ZipEntry> entries = zip.entries();
            while (entries.hasMoreElements()) {
                ZipEntry entry = entries.nextElement();
                String source = file + "[" + entry.getName() + "]";
                if (entry.isDirectory() || !entry.getName().endsWith(SUFFIX)) {
                    throw new TensorFormatException(source + ": a .npz entry must be an array named <key>.npy");
                }
                String key = entry.getName().substring(0, entry.getName().length() - SUFFIX.length());
                if (tensors.containsKey(key)) {
                    throw new TensorFormatException(source + ": key '" + key + "' appears twice");
                }
                try (InputStream in = zip.getInputStream(entry)) {
                    tensors.put(key, Npy.read(in, source, arena));
                } catch (ZipException e) {
                    throw new TensorFormatException(source + ": corrupt zip entry: " + e.getMessage(), e);
                }
            }
            return Collections.unmodifiableMap(tensors);
        }
    }

    /**
     * Writes the arrays uncompressed, as {@code np.savez} does, replacing any file of that name.
     * Each array is an entry {@code key.npy}, written as {@link Npy#write} writes a file, in the
     * map's iteration order; an empty map gives an archive without entries.
     *
     * @param file the file to write
     * @param tensors the arrays by key
     * @throws IllegalArgumentException for an empty key
     * @throws IOException when the file cannot be written (the old file, if any, is left as it was)
     */
    public static void write(Path file, Map<String, Tensor> tensors) throws IOException {
        write(file, tensors, false);
    }

    /**
     * Writes the arrays like {@link #write}, with every entry deflated, as
     * {@code np.savez_compressed} does.
     *
     * @param file the file to write
     * @param tensors the arrays by key
     * @throws IllegalArgumentException for an empty key
     * @throws IOException when the file cannot be written (the old file, if any, is left as it was)
     */
    public static void writeCompressed(Path file, Map<String, Tensor> tensors) throws IOException {
        write(file, tensors, true);
    }

    private static void write(Path file, Map<String, Tensor> tensors, boolean compressed) throws IOException {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(tensors, "tensors");
        for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
            Objects.requireNonNull(e.getKey(), "a key is null");
            Objects.requireNonNull(e.getValue(), () -> "the tensor of key '" + e.getKey() + "' is null");
            if (e.getKey().isEmpty()) {
                throw new IllegalArgumentException("a .npz key must not be empty");
            }
        }
        AtomicFile.write(file, channel -> {
            if (tensors.isEmpty()) {
                // ZipOutputStream refuses an archive without entries; np.savez() writes this one.
                Npy.writeFully(channel, ByteBuffer.wrap(EMPTY_ZIP));
                return;
            }
            OutputStream raw = new BufferedOutputStream(Channels.newOutputStream(channel), 1 << 16);
            try (ZipOutputStream zip = new ZipOutputStream(raw)) {
                for (Map.Entry<String, Tensor> e : tensors.entrySet()) {
                    writeEntry(zip, e.getKey() + SUFFIX, e.getValue(), compressed);
                }
            }
        });
    }

    private static void writeEntry(ZipOutputStream zip, String name, Tensor tensor, boolean compressed)
            throws IOException {
        byte[] header = Npy.header(tensor);
        ZipEntry entry = new ZipEntry(name);
        if (compressed) {
            entry.setMethod(ZipEntry.DEFLATED);
        } else {
            // Stored entries need their size and CRC before the data.
            CRC32 crc = new CRC32();
            crc.update(header);
            Npy.forEachChunk(tensor.data(), crc::update);
            long size = header.length + tensor.data().byteSize();
            entry.setMethod(ZipEntry.STORED);
            entry.setSize(size);
            entry.setCompressedSize(size);
            entry.setCrc(crc.getValue());
        }
        zip.putNextEntry(entry);
        zip.write(header);
        Npy.writeData(zip, tensor);
        zip.closeEntry();
    }
}
