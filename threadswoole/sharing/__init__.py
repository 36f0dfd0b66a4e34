"""Shared memory for users (contract §13): `Table`, `Atomic` and `Lock`, the same across worker
processes and threads in every mode.

`table.py` is the Table API, `table_schema.py` its columns and row codecs, `table_store.py` the
segment's rows, stripes and robust row locks, `table_paths.py` the hot paths made at create();
`atomic.py` and `lock.py` the other two; `native_sync.py` the futexes and robust pthread mutexes
(ctypes) they all stand on, and why that mechanism. A public package: it may import everything
below the public API, and nothing below imports it. Figures: docs/table.md.
"""

from threadswoole.sharing.atomic import Atomic
from threadswoole.sharing.lock import Lock
from threadswoole.sharing.table import Table

__all__ = ["Table", "Atomic", "Lock"]
