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
holder's death are handled: table_store.py; the mechanism and why: native_sync.py.

Errors (api.md R3): a missing key (`get`, `delete`) and a full table return False and record
ENOENT / ENOMEM for `get_last_error()`; a key that is not a str of 1 to 63 bytes, an unknown
column, a value of the wrong type or out of the column's range raise TypeError / ValueError and
change nothing; using the table before `create()` or after `destroy()`, `column()` after
`create()`, `create()` twice or inside a running server raise StateError.
"""

from __future__ import annotations

from typing import Any, Iterator, Literal

from threadswoole._aliases import alias
from threadswoole.state.user_segments import require_before_start
from threadswoole.sharing.native_sync import mutex_unlock
from threadswoole.sharing.table_paths import build as build_paths
from threadswoole.sharing.table_schema import TYPE_FLOAT, TYPE_INT, TYPE_STRING, Schema
from threadswoole.sharing.table_store import S_CONFLICT, S_DELETE, S_INSERT, S_MAX_LEVEL, S_NUM, RowStore
from threadswoole.errors import StateError

MIN_SIZE = 64
MAX_SIZE = 1 << 31
MIN_CONFLICT_PROPORTION = 0.2  # Swoole's SW_TABLE_CONFLICT_PROPORTION
MAX_STRIPES = 256  # locks per table: enough that workers rarely meet on one


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
        self._set = self._get = self._incr = self._exists = self._delete = self._unusable

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
        self._set, self._get, self._incr, self._exists, self._delete = build_paths(self._store, self._schema)
        return True

    def destroy(self) -> bool:
        """Release the table in this process (in the creator this also removes its name)."""
        store = self._ready()
        self._store, self._destroyed = None, True
        self._set = self._get = self._incr = self._exists = self._delete = self._unusable
        store.segment.close()
        return True

    def _ready(self) -> RowStore:
        store = self._store
        if store is None:
            raise StateError("the table has been destroyed" if self._destroyed else "the table is not created yet: call create() first")
        return store

    def _unusable(self, *args: Any) -> Any:
        """What the row operations are before create() and after destroy(): the StateError."""
        self._ready()
        raise StateError("the table is not usable")

    # -- rows -----------------------------------------------------------------------------
    # The work is in table_paths.py: closures over this table's layout, made by create().
    def set(self, key: str, value: Any) -> bool:
        """Write the columns named in `value` (a mapping). A new row starts with zeros and empty
        strings; an existing row keeps the columns not named. False when the table is full."""
        return self._set(key, value)

    def get(self, key: str, field: str | None = None) -> Any:
        """The row as a dict, or one column's value with `field`; False if the key is absent."""
        return self._get(key, field)

    def exists(self, key: str) -> bool:
        return self._exists(key)

    def delete(self, key: str) -> bool:
        """Remove the row; False if the key is absent."""
        return self._delete(key)

    def incr(self, key: str, column: str, incrby: int | float = 1) -> int | float | Literal[False]:
        """Add `incrby` to an int or float column atomically; the new value. A missing row is
        created with the column at 0 first (api.md §18.11); False when the table is full."""
        return self._incr(key, column, incrby)

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
            "update_count": store.update_count(),
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
