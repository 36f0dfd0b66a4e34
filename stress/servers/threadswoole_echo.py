"""The server under test: a threadswoole echo server, written against its public API.

Mirrors what a PHP Swoole user would write (``$server->on('receive', ...)``
and ``$server->send($fd, $data)``), so the benchmark measures the cost of
the framework's dispatch path, not of a hand-tuned loop. ``--mode`` picks
SWOOLE_BASE / SWOOLE_PROCESS / SWOOLE_THREAD; ``--framing length`` turns on
Swoole's ``open_length_check`` with a 4-byte big-endian (``N``) length.

Options used by the stress scenarios (all off by default, so the benchmark's
hot path is unchanged): ``--max-conn``, ``--backlog``, ``--rlimit-nofile``
(raise this process's open-files soft limit before the server starts; its
children inherit it), ``--heartbeat-interval`` / ``--heartbeat-idle``,
``--socket-buffer-size``, and ``--control``: with length framing, a packet
whose body starts with ``!ctl:`` is a command for the test, not an echo:

- ``!ctl:stats`` -> a packet with ``server.stats()`` as JSON (plus ``pid``, ``worker_id``);
- ``!ctl:pid``   -> a packet with the pid, worker id and native thread id of the worker;
- ``!ctl:clients`` -> the first 100 of ``get_client_list()`` with a few ``get_client_info()`` fields;
- ``!ctl:die``   -> raises ``WorkerDeath`` (a ``BaseException``, which no callback guard
  catches): the worker's loop dies. In THREAD mode that is the equivalent of kill -9
  of a worker process (a thread cannot be killed); the supervisor starts a new one;
- ``!ctl:exit``  -> raises ``SystemExit`` in the callback (the documented way to end a worker).

Load-generator messages start with a hex tag (``1f:2a;``) or a binary sequence
number, never with ``!ctl:``.
"""
from __future__ import annotations

import argparse
import sys

CONTROL = b"!ctl:"


class WorkerDeath(BaseException):
    """Escapes every ``except Exception`` guard: ends the worker's event loop."""


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
    ap.add_argument("--max-conn", type=int, default=None, help="max_conn setting")
    ap.add_argument("--backlog", type=int, default=None, help="listen backlog")
    ap.add_argument("--rlimit-nofile", type=int, default=None,
                    help="raise RLIMIT_NOFILE (soft, capped at the hard limit) before starting")
    ap.add_argument("--heartbeat-interval", type=float, default=None, help="heartbeat_check_interval (s)")
    ap.add_argument("--heartbeat-idle", type=float, default=None, help="heartbeat_idle_time (s)")
    ap.add_argument("--socket-buffer-size", type=int, default=None, help="socket_buffer_size (bytes)")
    ap.add_argument("--max-wait-time", type=float, default=None, help="max_wait_time (s)")
    ap.add_argument("--control", action="store_true", help="answer !ctl: packets (needs --framing length)")
    a = ap.parse_args(argv)
    if a.control and a.framing != "length":
        ap.error("--control needs --framing length")

    if a.rlimit_nofile:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = a.rlimit_nofile if hard == resource.RLIM_INFINITY else min(a.rlimit_nofile, hard)
        if want > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

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
    for key, value in (("max_conn", a.max_conn), ("backlog", a.backlog),
                       ("heartbeat_check_interval", a.heartbeat_interval),
                       ("heartbeat_idle_time", a.heartbeat_idle),
                       ("socket_buffer_size", a.socket_buffer_size),
                       ("max_wait_time", a.max_wait_time)):
        if value is not None:
            settings[key] = value
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

    if a.control:
        echo = on_receive

        def on_receive(server, fd, reactor_id, data):  # noqa: F811 - echo + test commands
            if data[4:9] == CONTROL:
                _control(server, fd, bytes(data[9:]))
            else:
                echo(server, fd, reactor_id, data)

    server.on("receive", on_receive)
    server.on("start", lambda s: print("READY", s.ports[0].port, flush=True))
    ok = server.start()       # blocks; SIGTERM shuts it down gracefully and returns True
    return 0 if ok in (True, None) else 1


def _control(server, fd: int, command: bytes) -> None:
    import json
    import os
    import struct
    import threading

    def reply(obj: dict) -> None:
        body = json.dumps(obj).encode()
        server.send(fd, struct.pack(">I", len(body)) + body)

    who = {"pid": os.getpid(), "worker_id": server.worker_id, "tid": threading.get_native_id()}
    if command == b"stats":
        reply({**server.stats(), **who})
    elif command == b"pid":
        reply(who)
    elif command == b"clients":
        fds = server.get_client_list(0, 100) or []
        info = {}
        for other in fds:
            ci = server.get_client_info(other, -1, True) or {}
            info[other] = {k: ci.get(k) for k in ("remote_port", "connect_time", "last_time", "worker_id")}
        reply({"clients": info, **who})
    elif command == b"die":
        raise WorkerDeath(f"worker {server.worker_id} told to die")
    elif command == b"exit":
        raise SystemExit(3)
    else:
        reply({"error": f"unknown command {command!r}"})


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
