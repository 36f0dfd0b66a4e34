"""Self-checks of the stress tooling itself (not of threadswoole): ``python -m stress.selftest``.

Why: a benchmark that miscounts is worse than none. This checks, against the
stdlib peers and tiny in-process servers, that the load generator's counts
are consistent (requests x size == bytes received), that byte-exactness is
really checked (a corrupting server yields mismatches), that length framing,
Unix sockets and ::1 work, that CPU accounting covers forked and already
reaped children, and that stopping a server leaves no process behind, even
one whose child ignores SIGTERM. For the stress scenarios' drivers: that
``run_checked`` reports a clean run as clean and detects corrupted, swallowed
(timed out) and cut-off (lost) answers, that ``run_churn`` completes every
cycle, and that ``ConnectionPool`` holds and drives its connections. The
benchmark workloads' tooling (C generator, wrk / redis-benchmark parsers, skip and
probe paths, targets, fan-out pool) is checked by ``stress.selftest_bench``, the
``websocket`` scenario's held connections by ``stress.selftest_ws``.
About 60 s; loopback only.

Also hosts the ``forker`` test server used for the CPU/orphan checks
(``python -m stress.selftest serve-forker --host H --port 0 --burn S [--stubborn]``).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Callable, Optional

import psutil

from stress.checked import run_checked
from stress.loadgen import run_load
from stress.loadtools import ConnectionPool, run_churn
from stress.proctree import ServerProcess

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def consistent(res, size: int, conns: int) -> tuple[bool, str]:
    slack = size * conns * 2           # a partial message per connection at each window edge
    ok = (res.requests > 0 and res.mismatches == 0 and res.errors == 0
          and abs(res.bytes_received - res.requests * size) <= slack)
    return ok, (f"requests={res.requests} x {size} = {res.requests * size} vs received "
                f"{res.bytes_received}; mismatches={res.mismatches} errors={res.errors}")


def with_server(module: str, args: list[str], host: str, body: Callable[[ServerProcess], None]) -> None:
    srv = ServerProcess(module, args, host=host)
    try:
        srv.start()
        body(srv)
    finally:
        srv.stop()
        left = srv.tree.survivors() if srv.tree else []
        check(f"{module} {' '.join(args)}: nothing left after stop", not left,
              f"stop={srv.stop_status} left={[p.pid for p in left]}")


class _InProcEcho(threading.Thread):
    """Blocking thread echo server for a listening socket; ``corrupt_every`` flips a byte."""

    def __init__(self, lsock: socket.socket, corrupt_every: int = 0) -> None:
        super().__init__(daemon=True)
        self.lsock, self.corrupt_every, self.n = lsock, corrupt_every, 0

    def run(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c: socket.socket) -> None:
        with c:
            try:
                while data := c.recv(65536):
                    self.n += 1
                    if self.corrupt_every and self.n % self.corrupt_every == 0:
                        data = bytes([data[0] ^ 0xFF]) + data[1:]
                    c.sendall(data)
            except OSError:
                pass


def test_loadgen() -> None:
    def raw(srv: ServerProcess) -> None:
        for pattern in ("reqresp", "pipelined"):
            r = run_load(("127.0.0.1", srv.port), connections=20, duration=1.5, warmup=0.3,
                         message_size=100, pattern=pattern, pipeline_depth=8)
            check(f"loadgen {pattern} counts consistent (epoll)", *consistent(r, 100, 20))
    with_server("stress.servers.epoll_echo", [], "127.0.0.1", raw)

    def framed(srv: ServerProcess) -> None:
        r = run_load(("127.0.0.1", srv.port), connections=20, duration=1.5, warmup=0.3,
                     message_size=200, framing="length", pattern="pipelined", pipeline_depth=4)
        check("loadgen framing=length vs asyncio-length", *consistent(r, 200, 20))
    with_server("stress.servers.asyncio_echo", ["--framing", "length"], "127.0.0.1", framed)

    def spinning(srv: ServerProcess) -> None:  # --spin: the same echo, more Python per read
        r = run_load(("127.0.0.1", srv.port), connections=10, duration=1.0, warmup=0.2)
        check("asyncio_echo --spin still echoes", *consistent(r, 64, 10))
    with_server("stress.servers.asyncio_echo", ["--spin", "50"], "127.0.0.1", spinning)

    if socket.has_ipv6:
        def v6(srv: ServerProcess) -> None:
            r = run_load(("::1", srv.port), connections=10, duration=1.0, warmup=0.2)
            check("loadgen over ::1", *consistent(r, 64, 10))
        try:
            with_server("stress.servers.asyncio_echo", [], "::1", v6)
        except Exception as exc:
            check("loadgen over ::1", False, f"skipped? {exc}")

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "echo.sock")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        ls.listen(128)
        _InProcEcho(ls).start()
        r = run_load(path, connections=10, duration=1.0, warmup=0.2, processes=1)
        check("loadgen over a Unix socket", *consistent(r, 64, 10))
        ls.close()

    ls = socket.create_server(("127.0.0.1", 0))
    _InProcEcho(ls, corrupt_every=50).start()
    r = run_load(ls.getsockname(), connections=5, duration=1.0, warmup=0.2, processes=1)
    check("loadgen detects corrupted echoes", r.mismatches > 0,
          f"mismatches={r.mismatches} of {r.requests}")
    ls.close()


class _FramedFaulty(threading.Thread):
    """Length-framed echo server (thread per connection) that misbehaves on purpose:
    ``corrupt`` flips a payload byte of every 50th frame, ``swallow`` never answers every
    200th frame, ``close`` closes the connection at every 300th frame."""

    def __init__(self, lsock: socket.socket, fault: str = "") -> None:
        super().__init__(daemon=True)
        self.lsock, self.fault, self.n = lsock, fault, 0
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    @staticmethod
    def _exact(c: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("eof")
            buf += chunk
        return buf

    def serve(self, c: socket.socket) -> None:
        with c:
            try:
                while True:
                    head = self._exact(c, 4)
                    body = self._exact(c, int.from_bytes(head, "big"))
                    with self.lock:
                        self.n += 1
                        n = self.n
                    if self.fault == "corrupt" and n % 50 == 0 and len(body) > 12:
                        body = body[:-1] + bytes([body[-1] ^ 0xFF])
                    elif self.fault == "swallow" and n % 200 == 0:
                        continue
                    elif self.fault == "close" and n % 300 == 0:
                        return
                    c.sendall(head + body)
            except OSError:
                pass


def test_checked() -> None:
    """run_checked (soak / faults), run_churn and ConnectionPool count what they claim."""
    sizes = ((16, 50), (300, 30), (5000, 20))
    expect = {
        "": lambda r: r.ok > 0 and r.failed == 0 and r.mismatches == 0 and r.lost == 0,
        "corrupt": lambda r: r.mismatches > 0 and r.failed >= r.mismatches,
        "swallow": lambda r: r.timeouts > 0 and r.lost == 0 and r.mismatches == 0,
        "close": lambda r: r.lost > 0 and r.timeouts == 0 and r.mismatches == 0,
    }
    for fault, ok in expect.items():
        ls = socket.create_server(("127.0.0.1", 0))
        _FramedFaulty(ls, fault).start()
        # request/response only for "swallow": on a pipelined connection a missing answer
        # shows as the next answer arriving in its place (a mismatch), not as a timeout
        r = run_checked(ls.getsockname(), connections=6, pipelined=0 if fault == "swallow" else 2,
                        depth=4, duration=1.5,
                        sizes=sizes, timeout=1.0, interval=0.5, processes=1)
        ls.close()
        check(f"run_checked {'detects ' + fault if fault else 'clean run is clean'}", ok(r) and not r.worker_errors,
              r.summary() + f"; {len(r.intervals)} intervals")

    def churn_and_pool(srv: ServerProcess) -> None:
        c = run_churn(("127.0.0.1", srv.port), 2000, processes=2, framing="length")
        check("run_churn completes every cycle", c.cycles == 2000 and c.failed == 0 and c.mismatches == 0,
              f"{c.cycles} cycles, failed {c.failed}, mismatches {c.mismatches}, {c.rate():.0f}/s")
        with ConnectionPool(("127.0.0.1", srv.port), 600, per_process=300, framing="length") as pool:
            opened, failed = pool.open()
            lr = pool.traffic(100, 1.0, warmup=0.2)
            still = pool.open_count()
        check("ConnectionPool holds and drives its connections",
              opened == 600 and failed == 0 and still == 600 and lr.requests > 0 and lr.mismatches == 0,
              f"opened {opened}, failed {failed}, still open {still}; traffic {lr.summary()}")
    with_server("stress.servers.asyncio_echo", ["--framing", "length"], "127.0.0.1", churn_and_pool)


def test_cpu_accounting() -> None:
    def prefork(srv: ServerProcess) -> None:
        tree = srv.tree
        kids = tree.live()[1:]
        c0, r0 = tree.cpu(), _own_cpu(tree.root)
        run_load(("127.0.0.1", srv.port), connections=40, duration=2.0, warmup=0.2)
        c1, r1 = tree.cpu(), _own_cpu(tree.root)
        check("tree CPU covers pre-forked workers", len(kids) == 2 and (c1 - c0) > 5 * (r1 - r0) + 0.2,
              f"{len(kids)} children; tree {c1 - c0:.2f}s vs master alone {r1 - r0:.2f}s")
    with_server("stress.servers.asyncio_echo", ["--workers", "2"], "127.0.0.1", prefork)

    def reaped(srv: ServerProcess) -> None:
        c0, (u0, s0) = srv.tree.cpu(), srv.tree.cpu_split()
        time.sleep(0.3)
        _wait_line(srv, "REAPED", 10)
        c1, (u1, s1) = srv.tree.cpu(), srv.tree.cpu_split()
        check("tree CPU counts a child reaped mid-window", c1 - c0 >= 0.8,
              f"{c1 - c0:.2f}s (child burnt ~1s and was reaped)")
        # (the burn loop calls process_time, a real syscall: much of it is system time)
        split = (u1 - u0) + (s1 - s0)
        check("tree CPU split: user + system is the total, the reaped child included",
              split >= 0.8 and abs(split - (c1 - c0)) < 0.05,
              f"user {u1 - u0:.2f}s + system {s1 - s0:.2f}s against {c1 - c0:.2f}s")
    with_server("stress.selftest", ["serve-forker", "--burn", "1.0", "--delay", "0.2"], "127.0.0.1", reaped)

    def stubborn(srv: ServerProcess) -> None:
        time.sleep(0.5)
        check("stubborn child present before stop", len(srv.tree.live()) == 2)
    with_server("stress.selftest", ["serve-forker", "--burn", "0", "--stubborn"], "127.0.0.1", stubborn)


def _own_cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def _wait_line(srv: ServerProcess, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not any(text in x for x in list(srv.stdout_tail)):
        time.sleep(0.05)


def serve_forker(host: str, port: int, burn: float, delay: float, stubborn: bool) -> int:
    """Test server: listens, prints READY, forks a child that burns CPU (or ignores SIGTERM)."""
    ls = socket.create_server((host, port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("READY", ls.getsockname()[1], flush=True)
    time.sleep(delay)
    pid = os.fork()
    if pid == 0:
        if stubborn:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(60)               # outlives its parent; must be killed by the bench
        end = time.process_time() + burn
        while time.process_time() < end:
            pass
        os._exit(0)
    if not stubborn:
        os.waitpid(pid, 0)
        print("REAPED", flush=True)
    stop.wait(30)
    return 0                             # stubborn: exits, leaving its child orphaned


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.selftest")
    ap.add_argument("what", nargs="?", default="all",
                    choices=("all", "loadgen", "checked", "cpu", "bench", "ws", "serve-forker", "serve-skip"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--burn", type=float, default=1.0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--stubborn", action="store_true")
    a = ap.parse_args(argv)
    if a.what == "serve-forker":
        return serve_forker(a.host, a.port, a.burn, a.delay, a.stubborn)
    if a.what == "serve-skip":           # a server that cannot run here (benchkit's skip path)
        print("SKIP not here", flush=True)
        return 0
    if a.what in ("all", "loadgen"):
        test_loadgen()
    if a.what in ("all", "checked"):
        test_checked()
    if a.what in ("all", "cpu"):
        test_cpu_accounting()
    if a.what in ("all", "bench"):
        from stress import selftest_bench

        selftest_bench.run(check)
    if a.what in ("all", "ws"):
        from stress import selftest_ws

        selftest_ws.run(check)
    failed = sum(not ok for _, ok, _ in RESULTS)
    print(f"selftest: {len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
