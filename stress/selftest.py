"""Self-checks of the stress tooling itself (not of threadswoole): ``python -m stress.selftest``.

Why: a benchmark that miscounts is worse than none. This checks, against the
stdlib peers and tiny in-process servers, that the load generator's counts
are consistent (requests x size == bytes received), that byte-exactness is
really checked (a corrupting server yields mismatches), that length framing,
Unix sockets and ::1 work, that CPU accounting covers forked and already
reaped children, and that stopping a server leaves no process behind, even
one whose child ignores SIGTERM. About 30 s; loopback only.

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

from stress.loadgen import run_load
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
        c0 = srv.tree.cpu()
        time.sleep(0.3)
        _wait_line(srv, "REAPED", 10)
        c1 = srv.tree.cpu()
        check("tree CPU counts a child reaped mid-window", c1 - c0 >= 0.8,
              f"{c1 - c0:.2f}s (child burnt ~1s and was reaped)")
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
    ap.add_argument("what", nargs="?", default="all", choices=("all", "loadgen", "cpu", "serve-forker"))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--burn", type=float, default=1.0)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--stubborn", action="store_true")
    a = ap.parse_args(argv)
    if a.what == "serve-forker":
        return serve_forker(a.host, a.port, a.burn, a.delay, a.stubborn)
    if a.what in ("all", "loadgen"):
        test_loadgen()
    if a.what in ("all", "cpu"):
        test_cpu_accounting()
    failed = sum(not ok for _, ok, _ in RESULTS)
    print(f"selftest: {len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
