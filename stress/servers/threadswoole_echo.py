"""The server under test: a threadswoole echo server, written against its public API.

Mirrors what a PHP Swoole user would write (``$server->on('receive', ...)``
and ``$server->send($fd, $data)``), so the benchmark measures the cost of
the framework's dispatch path, not of a hand-tuned loop. ``--mode`` picks
SWOOLE_BASE / SWOOLE_PROCESS / SWOOLE_THREAD; ``--framing length`` turns on
Swoole's ``open_length_check`` with a 4-byte big-endian (``N``) length.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.servers.threadswoole_echo")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--mode", choices=("base", "process", "thread"), default="base")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reactors", type=int, default=None)
    ap.add_argument("--framing", choices=("none", "length"), default="none")
    ap.add_argument("--handler", choices=("echo", "cpu", "sleep"), default="echo",
                    help="echo; cpu: ~--cpu-ms of pure-Python work then echo; sleep: time.sleep(--sleep-ms) then echo")
    ap.add_argument("--cpu-ms", type=float, default=1.0)
    ap.add_argument("--sleep-ms", type=float, default=5.0)
    a = ap.parse_args(argv)

    import threadswoole  # noqa: F401  (imported here so --help works without the package)
    from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD, Server

    modes = {"base": SWOOLE_BASE, "process": SWOOLE_PROCESS, "thread": SWOOLE_THREAD}
    server = Server(a.host, a.port, modes[a.mode])
    settings: dict = {"worker_num": a.workers, "log_level": 4}   # 4 = warnings only
    if a.reactors:
        settings["reactor_num"] = a.reactors
    if a.framing == "length":
        settings.update(open_length_check=True, package_length_type="N",
                        package_length_offset=0, package_body_offset=4)
    server.set(settings)

    def on_receive(server, fd, reactor_id, data):
        server.send(fd, data)

    if a.handler == "cpu":
        spin = _calibrate(a.cpu_ms / 1000.0)

        def on_receive(server, fd, reactor_id, data):  # noqa: F811 - the chosen handler
            spin()
            server.send(fd, data)
    elif a.handler == "sleep":
        import time

        pause = a.sleep_ms / 1000.0

        def on_receive(server, fd, reactor_id, data):  # noqa: F811 - the chosen handler
            time.sleep(pause)
            server.send(fd, data)

    server.on("receive", on_receive)
    server.on("start", lambda s: print("READY", s.ports[0].port, flush=True))
    ok = server.start()       # blocks; SIGTERM shuts it down gracefully and returns True
    return 0 if ok in (True, None) else 1


def _calibrate(seconds: float):
    """A pure-Python function that takes about `seconds` on this interpreter (measured here)."""
    import time

    def work(n: int) -> int:
        total = 0
        for i in range(n):
            total += i * i % 7
        return total

    n = 1000
    while True:
        start = time.perf_counter()
        work(n)
        elapsed = time.perf_counter() - start
        if elapsed > 0.02:
            break
        n *= 2
    iterations = max(1, int(n * seconds / elapsed))
    return lambda: work(iterations)


if __name__ == "__main__":
    sys.exit(main())
