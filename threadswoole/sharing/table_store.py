"""The rows of a Table segment: layout, stripe locks, bucket chains, the pool of collision rows, repair.

Layout of the segment:

    header    16 words, then the pool mutex
    stripes   `stripes` records of [robust mutex | counters: rows, inserts, updates, deletes, ...,
              the write sequence]
    rows      `buckets` bucket rows, then `pool` rows for collisions

A row is [next row + 1: int32 | key length: uint8 (0: free) | key: 63 bytes | 4 bytes | column data]. A key
hashes (CRC-32: the same in every process) to a bucket; keys of one bucket are chained through
pool rows, as in Swoole. A bucket belongs to stripe `bucket % stripes`; the stripe's mutex guards
the bucket's whole chain and the stripe's counters, so readers never see a half-written row and
the table's row count is the sum of the stripes'. The pool's free list has its own mutex, always
taken after a stripe's (one order, no deadlock). A deleted head row stays in place, free, with its
chain behind it; the next insert into that bucket reuses it.

A process killed while holding a lock: the next locker gets EOWNERDEAD (see native_sync.py),
makes the mutex consistent, checks the stripe's chains (cuts a link that points nowhere or loops,
recounts the rows) or the pool's free list, logs a warning and goes on. Writes are ordered so a
chain is never broken by a death: a new row is written whole before the one store that publishes
it (the 4-byte link to a pool row; the key-length byte of a bucket's head row), and a row is
unlinked before it is given back. What a death can cost: the row being
written may hold a mix of old and new column values, and a pool row may be lost.

Every method that takes `view` runs with the bucket's stripe locked by the caller.
"""

from __future__ import annotations

import logging
import os
import struct
from threading import get_ident

from threadswoole.state.user_segments import Segment
from threadswoole.sharing.native_sync import EBUSY, EDEADLK, EOWNERDEAD, MUTEX_BYTES, init_mutex, mutex_consistent, mutex_handle, mutex_lock, mutex_trylock, mutex_unlock
from threadswoole.errors import StateError

log = logging.getLogger("threadswoole")

KEY_MAX = 63  # bytes, as in Swoole (SW_TABLE_KEY_SIZE - 1)
MAGIC = 0x5457_5441_424C  # "TWTABL"
HEADER_BYTES = 128 + MUTEX_BYTES
H_MAGIC, H_BUCKETS, H_POOL, H_ROW_SIZE, H_STRIPES, H_POOL_HWM, H_POOL_FREE, H_POOL_USED, H_POOL_RECOVERED = range(9)
POOL_MUTEX = 128
STRIPE_BYTES = MUTEX_BYTES + 64
STRIPE_WORDS = STRIPE_BYTES // 8
S_NUM, S_INSERT, S_OTHER_WRITES, S_DELETE, S_CONFLICT, S_MAX_LEVEL, S_RECOVERED, S_SEQ = range(8)
# S_SEQ counts a stripe's writes (see table_paths.py); S_OTHER_WRITES those that were not a set of an
# existing row, so Swoole's update_count is their difference and the most common write bumps no counter.

ROW_HEADER = struct.Struct("<iB63s")
NEXT = struct.Struct("<i")
KEY_LENGTH = struct.Struct("<B")
DATA_AT = 72  # the row header, padded to a word: the data's 8-byte columns are word-aligned


class RowStore:
    """One table's rows in its segment (made by the creating process before any fork)."""

    def __init__(self, buckets: int, pool: int, stripes: int, data_size: int) -> None:
        self.buckets, self.pool, self.stripes = buckets, pool, stripes
        self.row_size = (DATA_AT + data_size + 7) & ~7
        self.rows_base = HEADER_BYTES + stripes * STRIPE_BYTES
        self.segment = segment = Segment("table", self.rows_base + (buckets + pool) * self.row_size)
        self.words = words = segment.words
        self.doubles = segment.doubles
        self.views = segment.thread_views
        self.mapping = segment.mapping
        self.base = segment.address
        words[H_MAGIC], words[H_BUCKETS], words[H_POOL] = MAGIC, buckets, pool
        words[H_ROW_SIZE], words[H_STRIPES] = self.row_size, stripes
        self.stripes_at = segment.address + HEADER_BYTES
        self.counters_at = (HEADER_BYTES + MUTEX_BYTES) // 8  # word index of stripe 0's counters
        init_mutex(segment.address + POOL_MUTEX)
        for stripe in range(stripes):
            init_mutex(self.stripes_at + stripe * STRIPE_BYTES)
        self.handles = [mutex_handle(self.stripes_at + stripe * STRIPE_BYTES) for stripe in range(stripes)]
        self.mask, self.stripe_mask = buckets - 1, stripes - 1
        self.new_row = struct.Struct(f"<iB63s{DATA_AT - ROW_HEADER.size}x{data_size}s")
        self.data = struct.Struct(f"{data_size}s")

    def seq_word(self, stripe: int) -> int:
        """Word index of the stripe's write sequence: negative while a write to its rows is under way
        (see table_paths.py: lock-free readers compare it before and after their copy)."""
        return self.counters_at + stripe * STRIPE_WORDS + S_SEQ

    def view(self) -> memoryview:
        """The calling thread's byte view of the segment. (A subscript, not `dict.get`: on
        free-threaded 3.13 `dict.get` locks the dict, so threads sharing it serialise; see
        table_paths.py.)"""
        try:
            return self.views[get_ident()]
        except KeyError:
            return self.segment.new_view()

    # -- locks ----------------------------------------------------------------------------
    def lock(self, bucket: int) -> int:
        """Lock the bucket's stripe; returns the mutex address to give to `mutex_unlock`. (The
        Table's hot paths do the same inline: mutex_trylock, then `lock_slow` if that failed.)"""
        address = self.stripes_at + (bucket & self.stripe_mask) * STRIPE_BYTES
        result = mutex_trylock(address)
        if result:
            self.lock_slow(address, result)
        return address

    def _lock_pool(self, view: memoryview) -> int:
        address = self.base + POOL_MUTEX
        result = mutex_trylock(address)
        if result:
            self.lock_slow(address, result, view)
        return address

    def lock_slow(self, address: int, result: int, view: memoryview | None = None) -> None:
        """After a failed trylock: wait for the mutex, or take it over from a dead holder."""
        if result == EBUSY:
            result = mutex_lock(address)
            if not result:
                return
        if result == EDEADLK:
            raise StateError("a Table operation was re-entered by the thread that holds the row lock (from a signal handler?)")
        if result != EOWNERDEAD:
            raise OSError(result, f"Table lock: {os.strerror(result)}")
        mutex_consistent(address)  # first: unlocking an inconsistent robust mutex would ruin it
        try:
            if address == self.base + POOL_MUTEX:
                self._repair_pool(view or self.view())
            else:
                self._repair_stripe((address - self.stripes_at) // STRIPE_BYTES)
        except BaseException:
            mutex_unlock(address)
            raise

    # -- chains ---------------------------------------------------------------------------
    def find(self, view: memoryview, bucket: int, key: bytes) -> int:
        """Byte offset of the key's row, or -1."""
        rows_base, row_size, length = self.rows_base, self.row_size, len(key)
        following, found_length, found = ROW_HEADER.unpack_from(view, rows_base + bucket * row_size)
        if found_length == length and found[:length] == key:
            return rows_base + bucket * row_size
        for _ in range(self.pool):
            if not following:
                return -1
            offset = rows_base + (following - 1) * row_size
            following, found_length, found = ROW_HEADER.unpack_from(view, offset)
            if found_length == length and found[:length] == key:
                return offset
        return -1

    def find_or_insert(self, view: memoryview, bucket: int, key: bytes, data: bytes) -> tuple[int, bool]:
        """(offset of the row, created?) with `data` as a new row's columns; (-1, False) when full."""
        rows_base, row_size, length = self.rows_base, self.row_size, len(key)
        head = offset = rows_base + bucket * row_size
        head_next, head_length, found = ROW_HEADER.unpack_from(view, head)
        if head_length == length and found[:length] == key:
            return head, False
        following, depth = head_next, 0
        while following and depth < self.pool:  # to the tail: a free head may still have a chain
            offset = rows_base + (following - 1) * row_size
            following, found_length, found = ROW_HEADER.unpack_from(view, offset)
            if found_length == length and found[:length] == key:
                return offset, False
            depth += 1
        words = self.words
        counters = self.counters_at + (bucket & self.stripe_mask) * STRIPE_WORDS
        if not head_length:
            # The key length is what makes a head row live, and pack_into writes field by field:
            # the row goes in marked free, then the one byte that publishes it. (Written in one
            # pack, a kill -9 between the length and the key left a live row with a zeroed key.)
            self.new_row.pack_into(view, head, head_next, 0, key, data)
            KEY_LENGTH.pack_into(view, head + 4, length)
            new = head
        else:
            row = self._allocate(view)
            if row < 0:
                return -1, False
            new = rows_base + row * row_size
            self.new_row.pack_into(view, new, 0, length, key, data)
            NEXT.pack_into(view, offset, row + 1)  # the one store that publishes it
            words[counters + S_CONFLICT] += 1
            if depth + 1 > words[counters + S_MAX_LEVEL]:
                words[counters + S_MAX_LEVEL] = depth + 1
        words[counters + S_NUM] += 1
        words[counters + S_INSERT] += 1
        return new, True

    def remove(self, view: memoryview, bucket: int, key: bytes) -> bool:
        rows_base, row_size, length = self.rows_base, self.row_size, len(key)
        row, previous = bucket, -1
        for _ in range(self.pool + 1):
            offset = rows_base + row * row_size
            following, found_length, found = ROW_HEADER.unpack_from(view, offset)
            if found_length == length and found[:length] == key:
                break
            if not following:
                return False
            row, previous = following - 1, offset
        else:
            return False
        if row == bucket:
            KEY_LENGTH.pack_into(view, offset + 4, 0)  # the head stays, free, its chain behind it
        else:
            NEXT.pack_into(view, previous, following)  # unlink first, then give it back
            self._free(view, row)
        counters = self.counters_at + (bucket & self.stripe_mask) * STRIPE_WORDS
        self.words[counters + S_NUM] -= 1
        self.words[counters + S_DELETE] += 1
        return True

    def rows_of(self, view: memoryview, bucket: int, codec: struct.Struct) -> list[tuple[bytes, tuple]]:
        """Copies of the bucket's live rows: (key, fields unpacked with `codec`)."""
        rows_base, row_size = self.rows_base, self.row_size
        copies = []
        row = bucket
        for _ in range(self.pool + 1):
            offset = rows_base + row * row_size
            following, length, key = ROW_HEADER.unpack_from(view, offset)
            if length:
                copies.append((key[:length], codec.unpack_from(view, offset + DATA_AT)))
            if not following:
                break
            row = following - 1
        return copies

    def maybe_used(self, view: memoryview, bucket: int) -> bool:
        """Unlocked hint for iteration: False if the bucket is certainly empty right now."""
        following, length, _ = ROW_HEADER.unpack_from(view, self.rows_base + bucket * self.row_size)
        return bool(length or following)

    def counter_total(self, counter: int) -> int:
        words, first = self.words, self.counters_at + counter
        return sum(words[first + stripe * STRIPE_WORDS] for stripe in range(self.stripes))

    def update_count(self) -> int:
        """Sets of an existing row: the stripes' writes less their other writes."""
        words, total = self.words, 0
        for stripe in range(self.stripes):
            counters = self.counters_at + stripe * STRIPE_WORDS
            written = words[counters + S_SEQ]
            total += (written if written >= 0 else ~written) - words[counters + S_OTHER_WRITES]
        return total

    def counter_max(self, counter: int) -> int:
        words, first = self.words, self.counters_at + counter
        return max(words[first + stripe * STRIPE_WORDS] for stripe in range(self.stripes))

    # -- the pool -------------------------------------------------------------------------
    def _allocate(self, view: memoryview) -> int:
        """A free pool row's index, or -1."""
        words = self.words
        address = self._lock_pool(view)
        try:
            free = words[H_POOL_FREE]
            if free:
                row = free - 1
                words[H_POOL_FREE] = NEXT.unpack_from(view, self.rows_base + row * self.row_size)[0]
            elif words[H_POOL_HWM] < self.pool:
                row = self.buckets + words[H_POOL_HWM]
                words[H_POOL_HWM] += 1
            else:
                return -1
            words[H_POOL_USED] += 1
            return row
        finally:
            mutex_unlock(address)

    def _free(self, view: memoryview, row: int) -> None:
        words = self.words
        address = self._lock_pool(view)
        try:
            ROW_HEADER.pack_into(view, self.rows_base + row * self.row_size, words[H_POOL_FREE], 0, b"")
            words[H_POOL_FREE] = row + 1
            words[H_POOL_USED] -= 1
        finally:
            mutex_unlock(address)

    def pool_available(self) -> int:
        return self.pool - self.words[H_POOL_USED]

    def recovered(self) -> int:
        return self.counter_total(S_RECOVERED) + self.words[H_POOL_RECOVERED]

    # -- after a holder died --------------------------------------------------------------
    def _repair_stripe(self, stripe: int) -> None:
        """Make the stripe's chains sound again after its holder died mid-operation."""
        view = self.view()
        rows_base, row_size, end = self.rows_base, self.row_size, self.buckets + self.pool
        live = 0
        for bucket in range(stripe, self.buckets, self.stripes):
            row = bucket
            for depth in range(self.pool + 1):
                offset = rows_base + row * row_size
                following, length, _ = ROW_HEADER.unpack_from(view, offset)
                if length > KEY_MAX:
                    KEY_LENGTH.pack_into(view, offset + 4, 0)
                    length = 0
                live += bool(length)
                if not following:
                    break
                if not self.buckets <= following - 1 < end or depth == self.pool:
                    NEXT.pack_into(view, offset, 0)  # a link that points nowhere, or a loop: cut it
                    break
                row = following - 1
        counters = self.counters_at + stripe * STRIPE_WORDS
        self.words[counters + S_NUM] = live
        self.words[counters + S_RECOVERED] += 1
        if self.words[counters + S_SEQ] < 0:  # it died inside a write (table_paths.py: ~n, then n + 1)
            self.words[counters + S_SEQ] = ~self.words[counters + S_SEQ] + 1
            self.words[counters + S_OTHER_WRITES] += 1
        log.warning("Table: a process died holding the lock of stripe %d; its chains were checked (%d rows); the row it was writing may be partly updated", stripe, live)

    def _repair_pool(self, view: memoryview) -> None:
        words = self.words
        high_water, free, seen = words[H_POOL_HWM], words[H_POOL_FREE], 0
        while free and seen <= self.pool:
            if not self.buckets <= free - 1 < self.buckets + high_water:
                break
            seen += 1
            free = NEXT.unpack_from(view, self.rows_base + (free - 1) * self.row_size)[0]
        if free:  # the free list is broken: drop it (its rows are lost, none is handed out twice)
            words[H_POOL_FREE], seen = 0, 0
        words[H_POOL_USED] = high_water - seen
        words[H_POOL_RECOVERED] += 1
        log.warning("Table: a process died holding the pool lock; its free list was checked")
