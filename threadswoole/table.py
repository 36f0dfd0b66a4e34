"""`threadswoole.Table`: Swoole's shared-memory hash table, shared by every worker process and thread.

Declare columns, `create()` before `server.start()`, then any worker, task worker, user process or
thread reads and writes rows by key (api.md §13, §18.11):

    table = Table(1024)
    table.column("hits", Table.TYPE_INT)
    table.column("name", Table.TYPE_STRING, 32)
    table.create()
    table.set("alice", {"hits": 1, "name": "Alice"})
    table.incr("alice", "hits")          # 2, atomically, whoever calls it

Capacity is fixed at create(): `size` buckets (rounded up to a power of two, at least 64) plus
`size * conflict_proportion` (0.2 to 1.0) rows for keys whose bucket is taken. When none is left
`set`/`incr` return False; no row is ever overwritten by another key. How rows, locks and a
holder's death are handled: _table_store.py; the mechanism and why: _sync_native.py.

Errors (api.md R3): a missing key (`get`, `delete`) and a full table return False and record
ENOENT / ENOMEM for `get_last_error()`; a key that is not a str of 1 to 63 bytes, an unknown
column, a value of the wrong type or out of the column's range raise TypeError / ValueError and
change nothing; using the table before `create()` or after `destroy()`, `column()` after
`create()`, `create()` twice or inside a running server raise StateError.
"""

from __future__ import annotations

import errno
import zlib
from threading import get_ident
from typing import Any, Iterator, Literal

from threadswoole import _context
from threadswoole._aliases import alias
from threadswoole._segments import require_before_start
from threadswoole._sync_native import mutex_trylock, mutex_unlock
from threadswoole._table_schema import TYPE_FLOAT, TYPE_INT, TYPE_STRING, Schema
from threadswoole._table_store import DATA_AT, KEY_MAX, ROW_HEADER, S_CONFLICT, S_DELETE, S_INSERT, S_MAX_LEVEL, S_NUM, S_UPDATE, STRIPE_BYTES, UPDATE_WORD, RowStore
from threadswoole.errors import StateError

MIN_SIZE = 64
MAX_SIZE = 1 << 31
MIN_CONFLICT_PROPORTION = 0.2  # Swoole's SW_TABLE_CONFLICT_PROPORTION
MAX_STRIPES = 256  # locks per table: enough that workers rarely meet on one

_crc32 = zlib.crc32


def _false(code: int) -> Literal[False]:
    _context.current().last_error = code
    return False


class Table:
    """A fixed-capacity hash table of typed rows in shared memory; see the module docstring."""

    TYPE_INT, TYPE_FLOAT, TYPE_STRING = TYPE_INT, TYPE_FLOAT, TYPE_STRING

    def __init__(self, size: int, conflict_proportion: float = MIN_CONFLICT_PROPORTION) -> None:
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"size is an int, not {type(size).__name__}")
        if not 1 <= size <= MAX_SIZE:
            raise ValueError(f"size must be 1..{MAX_SIZE}, not {size}")
        if not isinstance(conflict_proportion, (int, float)) or isinstance(conflict_proportion, bool):
            raise TypeError(f"conflict_proportion is a float, not {type(conflict_proportion).__name__}")
        if not conflict_proportion >= 0:  # also NaN
            raise ValueError(f"conflict_proportion must be >= 0, not {conflict_proportion}")
        buckets = MIN_SIZE
        while buckets < size:
            buckets <<= 1
        self._buckets = buckets
        self._pool = int(buckets * min(1.0, max(MIN_CONFLICT_PROPORTION, float(conflict_proportion))))
        self._schema = Schema()
        self._store: RowStore | None = None
        self._destroyed = False

    # -- definition and lifetime ----------------------------------------------------------
    def column(self, name: str, type: int, size: int = 0) -> bool:  # noqa: A002 - Swoole's parameter name
        """Declare a column: TYPE_INT (size 1, 2, 4 or 8 bytes; 0 means 8), TYPE_FLOAT, or
        TYPE_STRING (size: the most bytes a value may take). Only before `create()`."""
        if self._store is not None or self._destroyed:
            raise StateError("columns are declared before create()")
        self._schema.add(name, type, size)
        return True

    def create(self) -> bool:
        """Allocate the shared memory: before `server.start()`, once."""
        if self._store is not None or self._destroyed:
            raise StateError("create() was already called on this table")
        require_before_start("Table.create()")
        if not self._schema.order:
            raise ValueError("a table needs at least one column before create()")
        self._schema.freeze()
        self._store = RowStore(self._buckets, self._pool, min(self._buckets, MAX_STRIPES), self._schema.data_size)
        self._columns = self._schema.columns
        return True

    def destroy(self) -> bool:
        """Release the table in this process (in the creator this also removes its name)."""
        store = self._ready()
        self._store, self._destroyed = None, True
        store.segment.close()
        return True

    def _ready(self) -> RowStore:
        store = self._store
        if store is None:
            raise StateError("the table has been destroyed" if self._destroyed else "the table is not created yet: call create() first")
        return store

    @staticmethod
    def _bad_key(key: Any) -> Exception:
        if not isinstance(key, str):
            return TypeError(f"a table key is a str, not {type(key).__name__}")
        return ValueError(f"a table key is 1 to {KEY_MAX} bytes, not {len(key.encode())}: {key[:80]!r}")

    # -- rows -----------------------------------------------------------------------------
    # The hot paths (set, get, incr) inline the stripe lock: trylock, and `lock_slow` only when
    # that failed (contention, a dead holder). Two ctypes calls per operation, nothing else.
    def set(self, key: str, value: Any) -> bool:
        """Write the columns named in `value` (a mapping). A new row starts with zeros and empty
        strings; an existing row keeps the columns not named. False when the table is full."""
        store = self._store or self._ready()
        encoded = key.encode() if isinstance(key, str) else b""
        if not 0 < len(encoded) <= KEY_MAX:
            raise self._bad_key(key)
        data, parts = self._schema.encode_row(value)
        bucket = _crc32(encoded) & store.mask
        view = store.views.get(get_ident()) or store.segment.new_view()
        address = store.stripes_at + (bucket & store.stripe_mask) * STRIPE_BYTES
        result = mutex_trylock(address)
        if result:
            store.lock_slow(address, result)
        try:
            offset = store.rows_base + bucket * store.row_size
            _, found_length, found = ROW_HEADER.unpack_from(view, offset)
            if found_length == len(encoded) and found.startswith(encoded):
                created = False  # the bucket's own row: most keys
            else:
                offset, created = store.find_or_insert(view, bucket, encoded, data or b"")
                if offset < 0:
                    return _false(errno.ENOMEM)
            if not created:
                if data is not None:
                    store.data.pack_into(view, offset + DATA_AT, data)
                store.words[((address - store.base) >> 3) + UPDATE_WORD] += 1
            for column, raw in parts:
                column.raw.pack_into(view, offset + DATA_AT + column.offset, raw)
            return True
        finally:
            mutex_unlock(address)

    def get(self, key: str, field: str | None = None) -> Any:
        """The row as a dict, or one column's value with `field`; False if the key is absent."""
        store = self._store or self._ready()
        encoded = key.encode() if isinstance(key, str) else b""
        if not 0 < len(encoded) <= KEY_MAX:
            raise self._bad_key(key)
        column = None if field is None else self._schema.column(field)
        bucket = _crc32(encoded) & store.mask
        view = store.views.get(get_ident()) or store.segment.new_view()
        address = store.stripes_at + (bucket & store.stripe_mask) * STRIPE_BYTES
        result = mutex_trylock(address)
        if result:
            store.lock_slow(address, result)
        try:
            offset = store.rows_base + bucket * store.row_size
            _, found_length, found = ROW_HEADER.unpack_from(view, offset)
            if found_length != len(encoded) or not found.startswith(encoded):
                offset = store.find(view, bucket, encoded)
                if offset < 0:
                    return _false(errno.ENOENT)
            if column is None:
                fields = self._schema.row_codec.unpack_from(view, offset + DATA_AT)
            else:
                fields = column.codec.unpack_from(view, offset + DATA_AT + column.offset)
        finally:
            mutex_unlock(address)
        return self._schema.decode_row(fields) if column is None else column.decode(fields)

    def exists(self, key: str) -> bool:
        store = self._store or self._ready()
        encoded = key.encode() if isinstance(key, str) else b""
        if not 0 < len(encoded) <= KEY_MAX:
            raise self._bad_key(key)
        bucket = _crc32(encoded) & store.mask
        view = store.views.get(get_ident()) or store.segment.new_view()
        address = store.lock(bucket)
        try:
            return store.find(view, bucket, encoded) >= 0
        finally:
            mutex_unlock(address)

    def delete(self, key: str) -> bool:
        """Remove the row; False if the key is absent."""
        store = self._store or self._ready()
        encoded = key.encode() if isinstance(key, str) else b""
        if not 0 < len(encoded) <= KEY_MAX:
            raise self._bad_key(key)
        bucket = _crc32(encoded) & store.mask
        view = store.views.get(get_ident()) or store.segment.new_view()
        address = store.lock(bucket)
        try:
            removed = store.remove(view, bucket, encoded)
        finally:
            mutex_unlock(address)
        return removed or _false(errno.ENOENT)

    def incr(self, key: str, column: str, incrby: int | float = 1) -> int | float | Literal[False]:
        """Add `incrby` to an int or float column atomically; the new value. A missing row is
        created with the column at 0 first (api.md §18.11); False when the table is full."""
        store = self._store or self._ready()
        encoded = key.encode() if isinstance(key, str) else b""
        if not 0 < len(encoded) <= KEY_MAX:
            raise self._bad_key(key)
        target = self._columns.get(column) if isinstance(column, str) else None
        if target is None or not (type(incrby) is int or (type(incrby) is float and target.type == TYPE_FLOAT)) or target.type == TYPE_STRING:
            self._check_step(target, column, incrby)
        bucket = _crc32(encoded) & store.mask
        view = store.views.get(get_ident()) or store.segment.new_view()
        address = store.stripes_at + (bucket & store.stripe_mask) * STRIPE_BYTES
        result = mutex_trylock(address)
        if result:
            store.lock_slow(address, result)
        try:
            offset = store.rows_base + bucket * store.row_size
            _, found_length, found = ROW_HEADER.unpack_from(view, offset)
            if found_length != len(encoded) or not found.startswith(encoded):
                offset, _ = store.find_or_insert(view, bucket, encoded, b"")
                if offset < 0:
                    return _false(errno.ENOMEM)
            at = offset + DATA_AT + target.offset
            if target.word:  # an aligned int64 or double: one word, read and written in place
                cells = store.words if target.type == TYPE_INT else store.doubles
                value = cells[at >> 3] + incrby
                if target.type == TYPE_INT and not target.low <= value <= target.high:
                    raise self._overflow(target, value)
                cells[at >> 3] = value
                return value
            value = target.codec.unpack_from(view, at)[0] + incrby
            if target.type == TYPE_INT and not target.low <= value <= target.high:
                raise self._overflow(target, value)
            target.codec.pack_into(view, at, value)
            return value
        finally:
            mutex_unlock(address)

    def _check_step(self, target: Any, column: Any, step: Any) -> None:
        """The slow path of incr's argument checks: raise the precise error, or accept (an int
        subclass, a float subclass for a float column)."""
        if target is None:
            self._schema.column(column)  # raises ValueError
        if target.type == TYPE_STRING:
            raise TypeError(f"incr/decr need an int or float column; {column!r} is a string column")
        if target.type == TYPE_INT and (not isinstance(step, int) or isinstance(step, bool)):
            raise TypeError(f"column {column!r} holds ints: the step is an int, not {type(step).__name__}")
        if target.type == TYPE_FLOAT and not isinstance(step, (int, float)):
            raise TypeError(f"the step is a number, not {type(step).__name__}")

    @staticmethod
    def _overflow(target: Any, value: int) -> ValueError:
        return ValueError(f"incr would take column {target.name!r} to {value}, outside int{8 * target.size} ({target.low}..{target.high}); it is unchanged")

    def decr(self, key: str, column: str, decrby: int | float = 1) -> int | float | Literal[False]:
        """Subtract `decrby` (see `incr`)."""
        if isinstance(decrby, (int, float)) and not isinstance(decrby, bool):
            return self.incr(key, column, -decrby)
        return self.incr(key, column, decrby)  # raises the TypeError

    # -- the whole table ------------------------------------------------------------------
    def count(self) -> int:
        """How many rows the table holds."""
        return self._ready().counter_total(S_NUM)

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.exists(key)

    def __iter__(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, row) for every row, each a consistent copy taken under its lock; rows added or
        removed meanwhile may or may not be seen."""
        codec, decode = self._schema.row_codec, self._schema.decode_row
        for bucket in range(self._buckets):
            store = self._ready()
            view = store.view()  # again after each yield: the generator may resume in another thread
            if not store.maybe_used(view, bucket):
                continue
            address = store.lock(bucket)
            try:
                copies = store.rows_of(view, bucket, codec)
            finally:
                mutex_unlock(address)
            for key, fields in copies:
                yield key.decode("utf-8", "replace"), decode(fields)

    def stats(self) -> dict[str, int]:
        """Swoole's keys (num, conflict_count, conflict_max_level, insert/update/delete_count,
        available/total_slice_num) plus size, memory_size, row_memory_size and recovered_count
        (locks taken over from dead holders). update_count counts `set` on an existing row."""
        store = self._ready()
        return {
            "num": store.counter_total(S_NUM),
            "conflict_count": store.counter_total(S_CONFLICT),
            "conflict_max_level": store.counter_max(S_MAX_LEVEL),
            "insert_count": store.counter_total(S_INSERT),
            "update_count": store.counter_total(S_UPDATE),
            "delete_count": store.counter_total(S_DELETE),
            "available_slice_num": store.pool_available(),
            "total_slice_num": self._pool,
            "size": self._buckets,
            "memory_size": store.segment.size,
            "row_memory_size": store.row_size,
            "recovered_count": store.recovered(),
        }

    @property
    def size(self) -> int:
        """Buckets: the requested size rounded up to a power of two, at least 64."""
        return self._buckets

    @property
    def memory_size(self) -> int:
        """Bytes of shared memory the table takes (0 before create())."""
        return self._store.segment.size if self._store is not None else 0

    def get_size(self) -> int:
        return self._buckets

    def get_memory_size(self) -> int:
        return self.memory_size

    exist = alias("exists")
    del_ = alias("delete")
    getSize = alias("get_size")
    getMemorySize = alias("get_memory_size")
    memorySize = alias("memory_size")

    def __reduce__(self) -> Any:
        raise TypeError("a Table is shared by inheritance (fork), it cannot be pickled")

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed else ("created" if self._store is not None else "not created")
        return f"<threadswoole.Table size={self._buckets} columns={[c.name for c in self._schema.order]} {state}>"


setattr(Table, "del", alias("delete"))  # Swoole's name, a keyword in Python: getattr(table, "del")
