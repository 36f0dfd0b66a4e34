"""CPU per Table operation from N threads of one process, one fresh process per run:
``python -m stress.table_cpu [incr|incr_own|setget|get|exists] [threads] [ops] [runs]``.

Why: table_bench reports the best of its runs, which hides a cost that comes and goes between
processes (free-threaded 3.13's locking `dict.get` did so: docs/table.md). This prints every
run's CPU microseconds per operation (process CPU, start-up included, / all threads' ops), so
1 thread and 2 threads can be compared run by run. Each run is a new interpreter: `sys.executable`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

ROW = {"n": 7, "f": 1.5, "s": "x" * 32}
KEYS = [f"key{i}" for i in range(64)]


def one_run(case: str, threads: int, ops: int) -> float:
    """In this process: the case from `threads` threads; CPU microseconds per operation."""
    from threadswoole import Table

    started = time.process_time()
    table = Table(1024)
    table.column("n", Table.TYPE_INT)
    table.column("f", Table.TYPE_FLOAT)
    table.column("s", Table.TYPE_STRING, 32)
    table.create()
    for key in KEYS:
        table.set(key, ROW)
    table.set("counter", ROW)

    def work(worker: int) -> None:
        put, get, incr, exists, own = table.set, table.get, table.incr, table.exists, KEYS[worker]
        if case == "incr":  # every thread on one counter
            for _ in range(ops):
                incr("counter", "n")
        elif case == "incr_own":
            for _ in range(ops):
                incr(own, "n")
        elif case == "setget":  # stress/table_bench.py's case: each thread its own 32 rows
            for i in range(ops // 2):
                key = KEYS[(i & 31) + 32 * (worker & 1)]
                put(key, ROW)
                get(key)
        elif case == "get":
            for _ in range(ops):
                get(own)
        else:
            for _ in range(ops):
                exists(own)

    barrier = threading.Barrier(threads)
    pool = [threading.Thread(target=lambda w=w: (barrier.wait(), work(w))) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if case == "incr":
        assert table.get("counter", "n") == 7 + threads * ops, "lost increments"
    table.destroy()
    return (time.process_time() - started) / (threads * ops) * 1e6


def main(argv: list[str]) -> int:
    case = argv[0] if argv else "incr"
    threads, ops, runs = (int(argv[i]) if len(argv) > i else default for i, default in ((1, 2), (2, 100_000), (3, 6)))
    if len(argv) > 4 and argv[4] == "--one":
        print(f"{one_run(case, threads, ops):.2f}")
        return 0
    figures = [subprocess.run([sys.executable, "-m", "stress.table_cpu", case, str(threads), str(ops), "1", "--one"], capture_output=True, text=True, check=True).stdout.strip() for _ in range(runs)]
    print(f"{case}, {threads} threads, {ops} ops each: us of CPU per op, one run per process: {' '.join(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
