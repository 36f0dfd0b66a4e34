"""The Table's hot paths: set, get, incr, exists and delete, as closures over one table's layout.

`build(store, schema)` is called by `Table.create()`; the Table's methods call these. What each
operation costs and why it is shaped so (figures: docs/table.md, "What it costs"):

- A key's place is computed once per process and cached (`KEY_CACHE` keys, then the cache starts
  over): its key block (length byte + UTF-8 key, zero-padded to 64 bytes: one bytes comparison
  tells whether a row holds the key), the slices of its bucket's head row, the stripe's mutex
  handle and write-sequence word. A dict lookup instead of encode, length check, CRC-32 and
  arithmetic on every call. The place depends only on the key and the table's fixed geometry,
  so a cached entry is never stale.
- Rows are copied in and out by slicing the segment's mmap (`mapping[a:b]`, `mapping[a:b] = data`):
  no memoryview is made, so there is no per-thread view to look up (see state/user_segments.py).
- Every name the hot operations use is a local, passed as a default argument: free-threaded
  3.13 does not specialise attribute and global lookups (each costs a dict search there), and it
  reads a closure cell under a critical section that two threads contend for (docs/table.md).
  Each default is also a reference counted on every call, contended between threads there, so
  the hot operations are fronts that take only what their common case reads and hand the rest
  to a general function (`*_general`: the key's placing, chained rows, partial rows, errors).
- Maps shared by the threads (the key cache, the column maps, the thread views) are read by
  subscript, never `dict.get`: on free-threaded 3.13 `dict.get` locks the dict on every call
  (its argument-clinic wrapper is a critical section), so two threads reading the key cache
  serialised on its mutex, and a lookup whose lock-free read failed took the same lock again
  inside it and spun 40 sched_yield calls before parking (2 threads on one counter: 35-55 us
  of CPU per incr instead of 2.6-3.1; docs/table.md). A subscript is lock-free there.
- Writers take the stripe's robust mutex (trylock, then `RowStore.lock_slow` only if that failed:
  contention or a dead holder) and write a head row holding the key directly; chains, inserts,
  partial rows and every error go to the `*_locked` functions, which are the general code.
- Readers of a head row (get, exists) take no lock where the CPU keeps loads in order and
  stores in order (x86: `LOCK_FREE_READS`): a seqlock. Every write to a stripe's rows runs under
  its mutex between two stores to the stripe's sequence word: `~n` (negative: a write is under
  way), then `n + 1`; a reader reads the word, copies the row, reads the word again, and keeps
  the copy only if the word was not negative and is unchanged, so it never sees a half-written
  row. Otherwise (a write under
  way, a key not in its head row, a missing key) it takes the lock like any writer, which also
  repairs the stripe of a dead writer (EOWNERDEAD) and makes its word positive again: a reader
  never spins. An `incr` of an aligned 8-byte column changes one word with one store and leaves
  the sequence alone; the reader's copy of that word is one load, old or new, never torn.
"""

from __future__ import annotations

import errno
import platform
import struct
import zlib
from ctypes import addressof
from typing import Any, Callable, Literal, NamedTuple

from threadswoole import _context
from threadswoole.sharing.native_sync import handle_trylock, handle_unlock
from threadswoole.sharing.table_schema import TYPE_FLOAT, TYPE_INT, TYPE_STRING, Column, Schema, read_text
from threadswoole.sharing.table_store import DATA_AT, KEY_MAX, S_OTHER_WRITES, S_SEQ, RowStore

KEY_CACHE = 4096  # cached key places per table and process: about 1 MB at most
LOCK_FREE_READS = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_KEY_AT = 4  # a row: [next: int32 | key block: length byte + 63 bytes | 4 bytes | data]


class Paths(NamedTuple):
    set: Callable[[Any, Any], bool]
    get: Callable[[Any, Any], Any]
    incr: Callable[[Any, Any, Any], Any]
    exists: Callable[[Any], bool]
    delete: Callable[[Any], bool]


def _false(code: int) -> Literal[False]:
    _context.current().last_error = code
    return False


def bad_key(key: Any) -> Exception:
    if not isinstance(key, str):
        return TypeError(f"a table key is a str, not {type(key).__name__}")
    return ValueError(f"a table key is 1 to {KEY_MAX} bytes, not {len(key.encode())}: {key[:80]!r}")


def check_step(schema: Schema, target: Column | None, column: Any, step: Any) -> None:
    """incr's argument checks beyond the fast path's: raise the precise error, or accept (an int
    subclass, a float subclass for a float column, any int column)."""
    if target is None:
        schema.column(column)  # raises ValueError
    if target.type == TYPE_STRING:
        raise TypeError(f"incr/decr need an int or float column; {column!r} is a string column")
    if target.type == TYPE_INT and (not isinstance(step, int) or isinstance(step, bool)):
        raise TypeError(f"column {column!r} holds ints: the step is an int, not {type(step).__name__}")
    if target.type == TYPE_FLOAT and not isinstance(step, (int, float)):
        raise TypeError(f"the step is a number, not {type(step).__name__}")


def overflow(target: Column, value: int) -> ValueError:
    return ValueError(f"incr would take column {target.name!r} to {value}, outside int{8 * target.size} ({target.low}..{target.high}); it is unchanged")


def build(store: RowStore, schema: Schema) -> Paths:  # noqa: C901 - one closure per operation
    """The five operations of one created table (its segment and columns are fixed by now)."""
    mapping, words, doubles, handles = store.mapping, store.words, store.doubles, store.handles
    mask, stripe_mask, rows_base, row_size = store.mask, store.stripe_mask, store.rows_base, store.row_size
    data_size, width, columns = schema.data_size, len(schema.order), schema.columns
    encode_full, encode_row, decode_read, decode_row = schema.encode_full, schema.encode_row, schema.decode_read, schema.decode_row
    unpack_row = struct.Struct("<i64s4x" + schema.read_format).unpack  # a head row: link, key block, data
    row_codec, find, find_or_insert, view_of, lock_slow = schema.row_codec, store.find, store.find_or_insert, store.view, store.lock_slow
    trylock, unlock, crc32, lock_free = handle_trylock, handle_unlock, zlib.crc32, LOCK_FREE_READS
    # builtins under local names, handed to the hot operations as default arguments:
    # free-threaded 3.13 does not specialise LOAD_GLOBAL, so each `type`, `len`, `dict`, `int`
    # there is a globals then a builtins dict search (~300 instructions each, callgrind)
    type_of, size_of, dict_type, int_type, float_type = type, len, dict, int, float
    other_from_seq = S_OTHER_WRITES - S_SEQ  # counts the writes that are not a set of an existing row
    # get(key, field): the key block and that one column, unpacked from a copy of the head row
    readers = {
        column.name: (struct.Struct(f"<{_KEY_AT}x64s{DATA_AT - _KEY_AT - 64 + column.offset}x{column.read_format}").unpack_from, column.type == TYPE_STRING, read_text)
        for column in schema.order
    }
    # incr's fast path: aligned int64 and float64 columns, one word each: (word offset, cells, float?)
    word_columns = {column.name: (column.offset >> 3, words if column.type == TYPE_INT else doubles, column.type == TYPE_FLOAT) for column in schema.order if column.word}
    cache: dict[str, tuple] = {}

    def place(key: Any) -> tuple:
        """(key block, key slice, data slice, row slice, mutex handle, sequence word, first data
        word, bucket, encoded key) of a key; TypeError/ValueError for a bad key."""
        if not isinstance(key, str):
            raise bad_key(key) from None  # not the cache miss that led here
        encoded = key.encode()
        length = len(encoded)
        if not 0 < length <= KEY_MAX:
            raise bad_key(key) from None  # not the cache miss that led here
        bucket = crc32(encoded) & mask
        head, stripe = rows_base + bucket * row_size, bucket & stripe_mask
        entry = (
            bytes((length,)) + encoded + bytes(KEY_MAX - length),
            slice(head + _KEY_AT, head + _KEY_AT + 64),
            slice(head + DATA_AT, head + DATA_AT + data_size),
            slice(head, head + DATA_AT + data_size),
            handles[stripe],
            store.seq_word(stripe),
            (head + DATA_AT) >> 3,
            bucket,
            encoded,
        )
        if type(key) is str:
            if len(cache) >= KEY_CACHE:
                cache.clear()
            cache[key] = entry
        return entry

    def contended(handle: Any, result: int) -> None:
        """The stripe's mutex after a trylock that did not get it: wait (or recover a dead holder's)."""
        lock_slow(addressof(handle), result)

    # -- writers ------------------------------------------------------------------------
    def set_locked(entry: tuple, data: bytes | None, parts: Any) -> bool:
        seq, view = entry[5], view_of()
        written = words[seq]
        words[seq] = ~written
        try:
            offset, created = find_or_insert(view, entry[7], entry[8], data or b"")
            if offset < 0 or created:
                words[seq + other_from_seq] += 1
            if offset < 0:
                return _false(errno.ENOMEM)
            if not created and data is not None:
                store.data.pack_into(view, offset + DATA_AT, data)
            for column, raw in parts:
                column.raw.pack_into(view, offset + DATA_AT + column.offset, raw)
            return True
        finally:
            words[seq] = written + 1

    def entry_of(key: Any) -> tuple:
        try:
            return cache[key]
        except (KeyError, TypeError):  # not cached yet; unhashable: not a str
            return place(key)

    # The general operations: any key, value and row (the fronts below take the common case).
    def under_lock(handle: Any, work: Any, *args: Any) -> Any:
        """work(*args) with the row's lock held (the general paths; the fronts write this inline)."""
        result = trylock(handle)
        if result:
            contended(handle, result)
        try:
            return work(*args)
        finally:
            unlock(handle)

    def set_general(key: Any, value: Any) -> bool:
        entry = entry_of(key)
        data = None
        if type(value) is dict and len(value) == width:
            try:
                data = encode_full(value)
            except Exception:  # a missing name, a bad value: encode_row says which
                pass
        parts: Any = ()
        if data is None:
            data, parts = encode_row(value)
        return under_lock(entry[4], set_locked, entry, data, parts)

    def incr_checked(entry: tuple, name: Any, step: Any) -> Any:
        target = columns.get(name) if isinstance(name, str) else None
        check_step(schema, target, name, step)
        assert target is not None
        return under_lock(entry[4], incr_locked, entry, target, step)

    def incr_locked(entry: tuple, target: Column, step: Any) -> Any:
        seq, view = entry[5], view_of()
        written = words[seq]
        words[seq] = ~written
        words[seq + other_from_seq] += 1
        try:
            offset, _ = find_or_insert(view, entry[7], entry[8], b"")
            if offset < 0:
                return _false(errno.ENOMEM)
            at = offset + DATA_AT + target.offset
            if target.word:
                cells = words if target.type == TYPE_INT else doubles
                value = cells[at >> 3] + step
                if target.type == TYPE_INT and not target.low <= value <= target.high:
                    raise overflow(target, value)
                cells[at >> 3] = value
                return value
            value = target.codec.unpack_from(view, at)[0] + step
            if target.type == TYPE_INT and not target.low <= value <= target.high:
                raise overflow(target, value)
            target.codec.pack_into(view, at, value)
            return value
        finally:
            words[seq] = written + 1

    def incr_general(key: Any, column: Any, step: Any) -> Any:
        return incr_checked(entry_of(key), column, step)

    def delete(key: Any) -> bool:
        entry = entry_of(key)
        handle, seq = entry[4], entry[5]
        result = trylock(handle)
        if result:
            contended(handle, result)
        try:
            written = words[seq]
            words[seq] = ~written
            words[seq + other_from_seq] += 1
            try:
                removed = store.remove(view_of(), entry[7], entry[8])
            finally:
                words[seq] = written + 1
        finally:
            unlock(handle)
        return removed or _false(errno.ENOENT)

    # -- readers ------------------------------------------------------------------------
    def get_locked(entry: tuple, column: Column | None) -> Any:
        handle = entry[4]
        result = trylock(handle)
        if result:
            contended(handle, result)
        try:
            view = view_of()
            offset = find(view, entry[7], entry[8])
            if offset < 0:
                fields = None
            elif column is None:
                fields = row_codec.unpack_from(view, offset + DATA_AT)
            else:
                fields = column.codec.unpack_from(view, offset + DATA_AT + column.offset)
        finally:
            unlock(handle)
        if fields is None:
            return _false(errno.ENOENT)
        return decode_row(fields) if column is None else column.decode(fields)

    def get_general(key: Any, field: Any) -> Any:
        entry = entry_of(key)
        return get_locked(entry, None if field is None else schema.column(field))  # ValueError: no such column

    def exists_general(key: Any) -> bool:
        entry = entry_of(key)
        handle = entry[4]
        result = trylock(handle)
        if result:
            contended(handle, result)
        try:
            return find(view_of(), entry[7], entry[8]) >= 0
        finally:
            unlock(handle)

    # -- the fronts: the common case, with only the shared objects it uses ---------------------
    # Each takes what it uses as default arguments (locals): free-threaded 3.13 does not
    # specialise global lookups, and it reads a closure cell under a critical section that two
    # threads on one table contend for. Callers pass only the leading arguments. But there every
    # default argument is also a reference taken when the call starts and dropped when it ends; an object made by another thread (the table is made by the main
    # thread, used by the workers') has its count changed atomically, and two threads changing
    # the same counts pull the same cache lines back and forth: a function with 12 such defaults
    # costs 172 ns of CPU per call from one thread and 549 ns from each of two, with 4 defaults
    # 143 and 254 (docs/table.md). So each front takes only what its common case uses and hands
    # everything else (a key not cached yet, a chained row, a partial row, an error) to the
    # general function above, which repeats the work from the start.
    def set_front(
        key: Any, value: Any, cache=cache, type_of=type_of, dict_type=dict_type, size_of=size_of, width=width,
        encode_full=encode_full, trylock=trylock, contended=contended, mapping=mapping, words=words, unlock=unlock,
        set_general=set_general,
    ) -> bool:
        try:
            entry = cache[key]
        except (KeyError, TypeError):
            return set_general(key, value)
        if type_of(value) is not dict_type or size_of(value) != width:
            return set_general(key, value)
        try:
            data = encode_full(value)
        except Exception:  # a missing name, a bad value: the general path says which
            return set_general(key, value)
        keyblock, key_slice, data_slice, _, handle, seq, _, _, _ = entry
        result = trylock(handle)
        if result:
            contended(handle, result)
        try:
            if mapping[key_slice] == keyblock:  # the bucket's own row: most keys
                written = words[seq]
                words[seq] = ~written  # negative: a write is under way
                mapping[data_slice] = data
                words[seq] = written + 1
                return True
        finally:
            unlock(handle)
        return set_general(key, value)  # a chained row or a new key: under the lock again

    def incr_front(
        key: Any, column: Any, step: Any, cache=cache, word_columns=word_columns, type_of=type_of, int_type=int_type,
        float_type=float_type, trylock=trylock, contended=contended, mapping=mapping, unlock=unlock,
        incr_general=incr_general,
    ) -> Any:
        try:
            entry = cache[key]
            target = word_columns[column]
        except (KeyError, TypeError):
            return incr_general(key, column, step)
        step_type = type_of(step)
        if not (step_type is int_type or (target[2] and step_type is float_type)):
            return incr_general(key, column, step)
        keyblock, key_slice, _, _, handle, _, data_word, _, _ = entry
        index, cells = data_word + target[0], target[1]
        result = trylock(handle)
        if result:
            contended(handle, result)
        try:
            if mapping[key_slice] == keyblock:
                value = cells[index] + step
                try:
                    cells[index] = value  # one aligned store; out of int64's range it raises, writing nothing
                    return value
                except ValueError:
                    pass  # the general path adds again under the lock and raises the column's error
        finally:
            unlock(handle)
        return incr_general(key, column, step)

    def get_front(
        key: Any, field: Any, cache=cache, words=words, mapping=mapping, unpack_row=unpack_row, decode_read=decode_read,
        readers=readers, get_general=get_general,
    ) -> Any:
        try:
            entry = cache[key]
        except (KeyError, TypeError):
            return get_general(key, field)
        seq = entry[5]
        start = words[seq]
        if field is None:
            fields = unpack_row(mapping[entry[3]])
            if fields[1] == entry[0] and words[seq] == start and start >= 0:
                return decode_read(fields)
        else:
            try:
                reader = readers[field]
            except (KeyError, TypeError):
                return get_general(key, field)  # raises the ValueError
            fields = reader[0](mapping[entry[3]])
            if fields[0] == entry[0] and words[seq] == start and start >= 0:
                return reader[2](fields[1], fields[2]) if reader[1] else fields[1]
        return get_general(key, field)

    def exists_front(key: Any, cache=cache, words=words, mapping=mapping, exists_general=exists_general) -> bool:
        try:
            entry = cache[key]
        except (KeyError, TypeError):
            return exists_general(key)
        seq = entry[5]
        start = words[seq]
        if mapping[entry[1]] == entry[0] and words[seq] == start and start >= 0:
            return True
        return exists_general(key)

    if not lock_free:  # readers take the lock: the general functions are the whole story
        return Paths(set_front, get_general, incr_front, exists_general, delete)
    return Paths(set_front, get_front, incr_front, exists_front, delete)
