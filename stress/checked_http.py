"""Verified HTTP/1.1 keep-alive load for the fault scenarios.

Every connection sends ``GET /check/<connection>/<sequence>`` one at a time and the answer
must be ``200`` with that path as its body (the server runs ``stress.servers.threadswoole_http
--handler path``), so a lost, repeated or misrouted answer shows as a failure or a mismatch.
A request unanswered within ``timeout`` fails (the connection is dropped and reopened, never
retried); a connection the server closes (EOF or reset) is "lost" and its request failed.
The figures are a `stress.checked.CheckedResult` (the same rows as the framed load).
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from multiprocessing.connection import wait as mp_wait
from typing import Callable, Optional

from stress._net import _check_loopback, _reap, _serve_parent, _spawn
from stress.checked import CheckedResult

_LOST = (http.client.RemoteDisconnected, http.client.IncompleteRead, ConnectionResetError, BrokenPipeError,
         ConnectionAbortedError)


def _connection(host: str, port: int, cid: int, start: float, stop_at: float, timeout: float,
                result: CheckedResult, lock: threading.Lock) -> None:
    """One keep-alive client: request, verify, repeat until ``stop_at``."""
    ok = failed = timeouts = lost = mismatches = connect_failed = opened = received = 0
    latencies: list[int] = []
    conn: Optional[http.client.HTTPConnection] = None
    sequence = 0
    time.sleep(max(0.0, start - time.monotonic()))
    while time.monotonic() < stop_at:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.connect()
                opened += 1
            except OSError:
                connect_failed += 1
                conn = None
                time.sleep(0.05)
                continue
        path = f"/check/{cid}/{sequence}"
        sequence += 1
        sent = time.monotonic_ns()
        try:
            conn.request("GET", path)
            reply = conn.getresponse()
            body = reply.read()
        except socket.timeout:
            failed += 1
            timeouts += 1
            conn.close()
            conn = None
            continue
        except _LOST:
            failed += 1
            lost += 1
            conn.close()
            conn = None
            continue
        latencies.append((time.monotonic_ns() - sent) // 1000)
        received += len(body)
        if reply.status == 200 and body == path.encode():
            ok += 1
        else:
            mismatches += 1
            failed += 1
        if reply.will_close:  # the server said Connection: close
            lost += 1
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with lock:
        result.ok += ok
        result.failed += failed
        result.timeouts += timeouts
        result.lost += lost
        result.mismatches += mismatches
        result.connect_failed += connect_failed
        result.opened += opened
        result.bytes += received
        for latency in latencies:
            result.latency_hist.record(latency)


def _load_main(pipe, host: str, port: int, cids: list[int], start: float, duration: float, timeout: float) -> None:
    def body() -> None:
        result = CheckedResult()
        lock = threading.Lock()
        threads = [threading.Thread(target=_connection, args=(host, port, cid, start, start + duration, timeout, result, lock),
                                    daemon=True) for cid in cids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration + timeout + 10)
        result.duration = duration
        pipe.send(("result", result))

    _serve_parent(pipe, body)


def run_checked_http(address: tuple, *, connections: int = 50, duration: float = 10.0, processes: int = 2,
                     timeout: float = 5.0, on_tick: Optional[Callable[[float], None]] = None) -> CheckedResult:
    """``connections`` verified keep-alive clients (threads in ``processes`` load processes)
    for ``duration`` seconds; ``on_tick(elapsed)`` runs here about every 50 ms (fault injection)."""
    _check_loopback(address)
    host, port = address
    nproc = max(1, min(processes, connections))
    start = time.monotonic() + 0.3
    workers = [_spawn(_load_main, host, port, list(range(index, connections, nproc)), start, duration, timeout)
               for index in range(nproc)]
    total = CheckedResult()
    pending = {pipe: proc for proc, pipe in workers}
    deadline = start + duration + timeout + 15
    finished = False
    try:
        while pending and time.monotonic() < deadline:
            for pipe in mp_wait(list(pending), timeout=0.05):
                try:
                    kind, value = pipe.recv()
                except (EOFError, OSError) as exc:
                    total.worker_errors.append(f"load process {pending.pop(pipe).pid}: {exc!r}")
                    continue
                pending.pop(pipe)
                if kind == "result":
                    total.merge(value)
                else:
                    total.worker_errors.append(value)
            if on_tick is not None and time.monotonic() >= start:
                on_tick(time.monotonic() - start)
        total.worker_errors += [f"load process {proc.pid} timed out" for proc in pending.values()]
        finished = not pending
    finally:
        _reap(workers, kill=not finished)
    total.duration = duration
    total.failed += len(total.worker_errors)
    return total
