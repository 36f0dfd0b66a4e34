"""RESP figures: the parser alone (timeit, CPU time), and whole servers under redis-benchmark.

    python -m stress.resp_bench codec
    python -m stress.resp_bench servers [--modes base,process,thread] [--requests 200000]

`servers` runs redis-server and a threadswoole server in turn on loopback, drives each with
`redis-benchmark -t set,get -c 50` at -P 1 and -P 16, and reports commands per CPU-second of
the server's whole process tree (psutil), the measure of issue 16's targets (>= 0.5x Redis at
-P 1, >= 0.2x at -P 16). The threadswoole side is redis.Server with examples/redis_kv.py's
handlers, one worker (`python -m stress.bench redis` is the full comparison).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def codec_figures() -> None:
    from threadswoole.protocol.resp import RespCodec

    batch = b"".join(_command(b"SET", b"key:%06d" % i, b"xxx") if i % 2 == 0 else _command(b"GET", b"key:%06d" % (i - 1)) for i in range(16))
    single = _command(b"SET", b"key:000001", b"xxx")
    exact = b"".join(_command(b"SET", b"key:%06d" % i, b"x\r\nx") for i in range(16))
    inline = b"".join(b"SET key:%06d xxx\r\n" % i for i in range(16))
    cases = [("16 pipelined SET/GET, batch=True", batch, 16, True), ("16 pipelined SET/GET, one event each", batch, 16, False),
             ("1 SET per feed (-P 1)", single, 1, False), ("16 SET whose value holds CRLF (exact path)", exact, 16, False),
             ("16 inline SET", inline, 16, False)]  # fmt: skip
    for label, data, count, batch_mode in cases:
        codec = RespCodec(batch=batch_mode)
        number = 200000 // count
        best = min(timeit.repeat(lambda: codec.feed(data), number=number, repeat=7, timer=time.process_time))
        print(f"{label:46s} {best / number / count * 1e9:7.0f} ns CPU per command")


def serve(port: int, mode_name: str) -> None:
    """The threadswoole side: redis.Server with the example's handlers, one worker."""
    import threadswoole
    from threadswoole import redis

    spec = importlib.util.spec_from_file_location("redis_kv", os.path.join(ROOT, "examples", "redis_kv.py"))
    kv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kv)  # type: ignore[union-attr]
    mode = {"base": threadswoole.SWOOLE_BASE, "process": threadswoole.SWOOLE_PROCESS, "thread": threadswoole.SWOOLE_THREAD}[mode_name]
    server = redis.Server("127.0.0.1", port, mode)
    server.set({"worker_num": 1})
    kv.register(server, kv.KeyValueStore())
    server.start()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on port {port} did not start")


def _cpu(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _measure(command: list[str], port: int, requests: int, pipeline: int) -> float:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port, proc)
        bench = ["redis-benchmark", "-p", str(port), "-t", "set,get", "-c", "50", "-q", "-P", str(pipeline)]
        subprocess.run([*bench, "-n", "2000"], capture_output=True, timeout=120)  # warm-up
        before = _cpu(proc.pid)
        subprocess.run([*bench, "-n", str(requests)], capture_output=True, timeout=600, check=True)
        return 2 * requests / (_cpu(proc.pid) - before)
    finally:
        proc.terminate()
        proc.wait(15)


def server_figures(modes: list[str], requests: int) -> None:
    for pipeline in (1, 16):
        count = requests if pipeline > 1 else max(20000, requests // 5)
        port = _free_port()
        redis_rate = _measure(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], port, count, pipeline)
        print(f"-P {pipeline:2d}  redis-server            {redis_rate:10.0f} commands per CPU-second")
        for mode in modes:
            port = _free_port()
            rate = _measure([sys.executable, "-m", "stress.resp_bench", "serve", str(port), mode], port, count, pipeline)
            print(f"-P {pipeline:2d}  threadswoole {mode:8s}   {rate:10.0f} commands per CPU-second  ({rate / redis_rate:.2f}x redis)")


def main() -> None:
    parser = argparse.ArgumentParser(description="RESP parser and server figures")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("codec")
    servers = sub.add_parser("servers")
    servers.add_argument("--modes", default="base,process,thread")
    servers.add_argument("--requests", type=int, default=200000)
    serve_parser = sub.add_parser("serve")
    serve_parser.add_argument("port", type=int)
    serve_parser.add_argument("mode")
    options = parser.parse_args()
    if options.what == "codec":
        codec_figures()
    elif options.what == "servers":
        server_figures(options.modes.split(","), options.requests)
    else:
        serve(options.port, options.mode)


if __name__ == "__main__":
    main()
