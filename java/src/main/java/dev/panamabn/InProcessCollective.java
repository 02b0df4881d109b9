package dev.panamabn;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A {@link Collective} of replicas on the threads of one JVM: data-parallel training on one
 * machine, one {@link SyncBatchNorm} replica and one shard per thread. Made as a group,
 * {@link #group(int)}, whose member {@code r} is rank {@code r}; hand each member to one thread.
 *
 * <p>{@link #allgather} is a barrier: each member deposits a copy of its values, the last to
 * arrive publishes them all, and everyone returns its own copy of the published arrays. A
 * member that waits longer than the group's timeout breaks the group, naming the ranks that did
 * not arrive, so that a thread that died or took another path cannot hang the others for ever;
 * so does {@link #abort} (a thread that fails can end the others' wait at once) and an interrupt
 * of a waiting thread. A broken group refuses every later call. Ranks that pass arrays of
 * different lengths all get a {@link CollectiveException} with every rank's length; the group
 * stays usable.
 *
 * <p>Each member is for one thread at a time; members are thread-safe with respect to each other.
 */
public final class InProcessCollective implements Collective {

    /** The default time a member waits for the others: PyTorch's default for its process groups. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofMinutes(30);

    private final Group group;
    private final int rank;

    private InProcessCollective(Group group, int rank) {
        this.group = group;
        this.rank = rank;
    }

    /**
     * A group of {@code size} members with the {@linkplain #DEFAULT_TIMEOUT default timeout}.
     *
     * @param size the number of ranks, {@code >= 1}
     * @return the members in rank order
     * @throws IllegalArgumentException when {@code size < 1}
     */
    public static List<InProcessCollective> group(int size) {
        return group(size, DEFAULT_TIMEOUT);
    }

    /**
     * A group of {@code size} members.
     *
     * @param size the number of ranks, {@code >= 1}
     * @param timeout how long a member waits for the others in one exchange, positive
     * @return the members in rank order
     * @throws IllegalArgumentException when {@code size < 1} or the timeout is not positive
     */
    public static List<InProcessCollective> group(int size, Duration timeout) {
        Objects.requireNonNull(timeout, "timeout");
        if (size < 1) {
            throw new IllegalArgumentException("size must be >= 1, got " + size);
        }
        if (timeout.isNegative() || timeout.isZero()) {
            throw new IllegalArgumentException("timeout must be positive, got " + timeout);
        }
        Group group = new Group(size, saturatedNanos(timeout));
        List<InProcessCollective> members = new ArrayList<>(size);
        for (int r = 0; r < size; r++) {
            members.add(new InProcessCollective(group, r));
        }
        return List.copyOf(members);
    }

    @Override
    public int rank() {
        return rank;
    }

    @Override
    public int size() {
        return group.size;
    }

    /**
     * How long a member waits for the others in one exchange.
     *
     * @return the group's timeout
     */
    public Duration timeout() {
        return Duration.ofNanos(group.timeoutNanos);
    }

    /**
     * {@inheritDoc}
     *
     * @throws IllegalStateException when this member is already in an exchange (used from two
     *                               threads at once)
     */
    @Override
    public double[][] allgather(double[] values) {
        Objects.requireNonNull(values, "values");
        double[][] published = group.exchange(rank, values.clone());
        double[][] copy = new double[published.length][];
        for (int r = 0; r < copy.length; r++) {
            copy[r] = published[r].clone();
        }
        return copy;
    }

    /**
     * Breaks the group: every member waiting in an exchange, and every later call of any member,
     * throws a {@link CollectiveException} with {@code cause}. For a thread that fails and will not
     * reach the next exchange: the others stop waiting at once instead of at the timeout.
     * Nothing happens when the group is broken already.
     *
     * @param cause why, kept as the cause of the others' exceptions (may be null)
     */
    public void abort(Throwable cause) {
        group.breakGroup("rank " + rank + " aborted the group" + (cause == null ? "" : ": " + cause), cause);
    }

    /**
     * Whether the group is broken (by a timeout, an interrupt or {@link #abort}).
     *
     * @return true when every call now throws
     */
    public boolean isBroken() {
        return group.isBroken();
    }

    /** Like {@code InProcessCollective[rank 1 of 4]}. */
    @Override
    public String toString() {
        return "InProcessCollective[rank " + rank + " of " + group.size + (isBroken() ? ", broken" : "") + "]";
    }

    private static long saturatedNanos(Duration d) {
        try {
            return d.toNanos();
        } catch (ArithmeticException tooLong) {
            return Long.MAX_VALUE;
        }
    }

    /** The shared state of one group: the exchange in progress and the last one published. */
    private static final class Group {
        final int size;
        final long timeoutNanos;
        final ReentrantLock lock = new ReentrantLock();
        final Condition published = lock.newCondition();
        // The exchange being filled; a fresh array per exchange, so a published one never changes.
        double[][] slots;
        int arrived;
        long generation;
        double[][] lastPublished;
        long[] lastLengths;
        String brokenMessage;
        Throwable brokenCause;

        Group(int size, long timeoutNanos) {
            this.size = size;
            this.timeoutNanos = timeoutNanos;
            this.slots = new double[size][];
        }

        double[][] exchange(int rank, double[] values) {
            lock.lock();
            try {
                checkNotBroken();
                if (slots[rank] != null) {
                    throw new IllegalStateException("rank " + rank
                            + " is already in this exchange: a member is for one thread at a time");
                }
                slots[rank] = values;
                arrived++;
                long mine = generation;
                if (arrived == size) {
                    publish();
                } else {
                    awaitPublication(rank, mine);
                }
                // The next exchange cannot publish before this member joins it: lastPublished
                // is still this exchange's.
                if (lastLengths != null) {
                    throw new CollectiveException("the ranks passed arrays of different lengths: "
                            + CollectiveException.describe(lastLengths), lastLengths);
                }
                return lastPublished;
            } finally {
                lock.unlock();
            }
        }

        private void publish() {
            long[] lengths = new long[size];
            boolean equal = true;
            for (int r = 0; r < size; r++) {
                lengths[r] = slots[r].length;
                equal &= lengths[r] == lengths[0];
            }
            lastPublished = equal ? slots : null;
            lastLengths = equal ? null : lengths;
            slots = new double[size][];
            arrived = 0;
            generation++;
            published.signalAll();
        }

        private void awaitPublication(int rank, long mine) {
            long remaining = timeoutNanos;
            try {
                while (generation == mine && brokenMessage == null) {
                    if (remaining <= 0) {
                        breakGroup("rank " + rank + " waited " + Duration.ofNanos(timeoutNanos)
                                + " for rank(s) " + missing() + " in exchange " + mine
                                + ": a thread died, took another path or is too slow; raise the timeout if it is only slow",
                                null);
                        break;
                    }
                    remaining = published.awaitNanos(remaining);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                breakGroup("rank " + rank + " was interrupted while waiting for rank(s) " + missing(), e);
            }
            if (generation == mine) {
                checkNotBroken();
            }
        }

        private List<Integer> missing() {
            List<Integer> ranks = new ArrayList<>();
            for (int r = 0; r < size; r++) {
                if (slots[r] == null) {
                    ranks.add(r);
                }
            }
            return ranks;
        }

        void breakGroup(String message, Throwable cause) {
            lock.lock();
            try {
                if (brokenMessage == null) {
                    brokenMessage = message;
                    brokenCause = cause;
                    published.signalAll();
                }
            } finally {
                lock.unlock();
            }
        }

        boolean isBroken() {
            lock.lock();
            try {
                return brokenMessage != null;
            } finally {
                lock.unlock();
            }
        }

        private void checkNotBroken() {
            if (brokenMessage != null) {
                throw new CollectiveException("the in-process group is broken: " + brokenMessage, brokenCause);
            }
        }
    }
}
