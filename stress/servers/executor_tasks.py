"""Task round trips through ``concurrent.futures``: the peer of threadswoole's task workers.

One submitter keeps ``--inflight`` tasks in flight to a ``ProcessPoolExecutor`` or
``ThreadPoolExecutor`` of ``--workers`` workers; each task echoes a ``--size``-byte
payload, and its done-callback checks the answer and submits the next one (as an
event worker's ``finish`` callback would send the next task). Self-driven: after
``--warmup`` s it prints ``READY 0`` (the benchmark samples the process tree's CPU),
runs ``--duration`` s, prints ``RESULT {json}`` and waits for SIGTERM.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor


def echo(data: bytes) -> bytes:
    return data


def pump(ex: Executor, payload: bytes, inflight: int, seconds: float) -> dict:
    """``inflight`` chains of submit -> done-callback -> submit, for ``seconds``; counts."""
    lock = threading.Lock()
    state = {"done": 0, "errors": 0, "live": inflight, "last": 0.0}
    finished = threading.Event()
    start = time.monotonic()
    end = start + seconds

    def on_done(fut) -> None:
        try:
            ok = fut.result() == payload
        except Exception:
            ok = False
        now = time.monotonic()
        with lock:
            state["done"] += ok
            state["errors"] += not ok
            state["last"] = now
            if now >= end:
                state["live"] -= 1
                if not state["live"]:
                    finished.set()
                return
        ex.submit(echo, payload).add_done_callback(on_done)

    for _ in range(inflight):
        ex.submit(echo, payload).add_done_callback(on_done)
    finished.wait(seconds + 30)
    return {"requests": state["done"], "errors": state["errors"], "duration": state["last"] - start}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.servers.executor_tasks")
    ap.add_argument("--host", default="127.0.0.1")       # accepted for the harness; unused
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--kind", choices=("process", "thread"), default="process")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    a = ap.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    payload = (b"task-payload-" * (a.size // 13 + 1))[:a.size]
    cls = ProcessPoolExecutor if a.kind == "process" else ThreadPoolExecutor
    with cls(max_workers=a.workers) as ex:
        pump(ex, payload, a.inflight, a.warmup)
        print("READY 0", flush=True)
        res = pump(ex, payload, a.inflight, a.duration)
        res["rps"] = res["requests"] / res["duration"] if res["duration"] > 0 else 0.0
        print("RESULT", json.dumps(res), flush=True)
        stop.wait(120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
