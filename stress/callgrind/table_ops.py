"""One Table operation N times, for callgrind: `python stress/callgrind/table_ops.py [tree] OP N`.

A Table of int64 + float + 32-byte string columns (stress/table_bench.py's row), the row written
and the operation warmed up, then OP N times; table_ops.sh runs it with N and with 0 under
callgrind and prints the difference per operation. OP: set, get, get_field, incr, exists.
"""

from __future__ import annotations

import sys

tree, op, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, tree)

from threadswoole import Table  # noqa: E402

ROW = {"n": 7, "f": 1.5, "s": "x" * 32}
table = Table(1024)
table.column("n", Table.TYPE_INT)
table.column("f", Table.TYPE_FLOAT)
table.column("s", Table.TYPE_STRING, 32)
table.create()
table.set("k", ROW)
put, get, incr, exists = table.set, table.get, table.incr, table.exists
operations = {
    "set": lambda: put("k", ROW),
    "get": lambda: get("k"),
    "get_field": lambda: get("k", "n"),
    "incr": lambda: incr("k", "n"),
    "exists": lambda: exists("k"),
}
call = operations[op]
for _ in range(100):  # the first calls: caches filled, lazy paths taken
    call()
for _ in range(count):
    call()
table.destroy()
