package dev.panamabn;

import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A module that cannot be built leaves nothing behind. */
class ConstructionTest {

    /** A shared arena that fails its k-th allocation (0-based) and records what it did. */
    private static final class FailingArena implements Arena {
        private final Arena backing = Arena.ofShared();
        private final int failAt;
        private final OutOfMemoryError failure = new OutOfMemoryError("injected allocation failure");
        final List<Long> allocated = new ArrayList<>();
        int attempts;
        int closes;

        FailingArena(int failAt) {
            this.failAt = failAt;
        }

        @Override
        public MemorySegment allocate(long byteSize, long byteAlignment) {
            attempts++;
            if (allocated.size() == failAt) {
                throw failure;
            }
            allocated.add(byteSize);
            return backing.allocate(byteSize, byteAlignment);
        }

        @Override
        public MemorySegment.Scope scope() {
            return backing.scope();
        }

        @Override
        public void close() {
            closes++;
            backing.close();
        }
    }

    /** Every allocation of construction, failing in turn: the error comes through and the arena is closed. */
    @Test
    void aFailedAllocationClosesTheModulesArena() {
        for (BatchNormOptions options : new BatchNormOptions[] {
                BatchNormOptions.of(5), BatchNormOptions.of(5).withAffine(false).withTrackRunningStats(false)}) {
            FailingArena probe = new FailingArena(Integer.MAX_VALUE);
            BatchNorm.create(options, () -> probe).close();
            int allocations = probe.allocated.size();
            assertTrue(allocations >= 2, "construction made " + allocations + " allocations");
            for (int k = 0; k < allocations; k++) {
                FailingArena failing = new FailingArena(k);
                var e = assertThrows(OutOfMemoryError.class, () -> BatchNorm.create(options, () -> failing));
                assertSame(failing.failure, e, "the allocator's own error");
                assertEquals(1, failing.closes, "allocation " + k + " of " + allocations + " failed: arena closes");
                assertFalse(failing.scope().isAlive());
            }
        }
    }

    /** State larger than the machine's memory is refused before any allocation. */
    @Test
    void aModuleLargerThanMemoryIsRefusedBeforeAllocating() {
        BatchNormOptions huge = BatchNormOptions.of(Integer.MAX_VALUE);
        // Fails the first allocation, so that code which does allocate cannot take the machine's memory.
        FailingArena recording = new FailingArena(0);
        boolean[] arenaMade = new boolean[1];
        var e = assertThrows(OutOfMemoryError.class, () -> BatchNorm.create(huge, () -> {
            arenaMade[0] = true;
            return recording;
        }));
        assertTrue(e.getMessage().contains(Integer.MAX_VALUE + " channels"), e.getMessage());
        assertTrue(recording.attempts == 0 && !arenaMade[0], "allocated before refusing");
        recording.close();
    }
}
