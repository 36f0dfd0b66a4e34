"""threadswoole.redis.Server over real sockets, in every mode, with real Redis clients.

examples/redis_kv.py runs as written (a subprocess, several workers too) under redis-cli (inline,
piped, ``-3``) and redis-benchmark; small servers built here check the rest: pipelining, reply
order with sends inside handlers, Redis's protocol-error texts then the close (counted in stats),
unknown commands, QUIT, HELLO 3, callbacks and added ports, max_request in PROCESS mode under
pipelined load, threadswoole.Client speaking RESP, and the start() checks.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import threadswoole
from threadswoole import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_SOCK_TCP, Client, ConfigError, redis
from conftest import connect, recv_closed

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "redis_kv.py")
needs_redis_tools = pytest.mark.skipif(
    shutil.which("redis-cli") is None or shutil.which("redis-benchmark") is None, reason="needs redis-tools (redis-cli, redis-benchmark)"
)


# -- a small RESP reader for the tests ------------------------------------------------------------
class Conn:
    """A client socket that reads whole RESP replies (RESP2 and the RESP3 types HELLO 3 brings)."""

    def __init__(self, port: int) -> None:
        self.sock = connect(port)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the server; unread {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, size: int) -> bytes:
        while len(self.buf) < size + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server inside a bulk")
            self.buf += chunk
        data, self.buf = self.buf[:size], self.buf[size + 2 :]
        return data

    def reply(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return line.decode()  # "+OK", "-ERR ...": the sign says which
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if rest == b"-1" else self._exact(int(rest))
        if kind in (b"*", b"~"):
            return None if rest == b"-1" else [self.reply() for _ in range(int(rest))]
        if kind == b"%":
            return {self.reply(): self.reply() for _ in range(int(rest))}
        if kind == b"_":
            return None
        raise AssertionError(f"unexpected reply line {line!r}")

    def replies(self, count: int) -> list[Any]:
        return [self.reply() for _ in range(count)]

    def call(self, *args: bytes | str) -> Any:
        self.send(command(*args))
        return self.reply()

    def closed(self) -> bool:
        """The server closed (EOF, nothing unread); then this end closes too, as real clients do
        (after an error answer the server's lingering close waits for that, up to 2 s)."""
        eof = not self.buf and recv_closed(self.sock)
        if eof:
            self.sock.close()
        return eof

    def close(self) -> None:
        self.sock.close()


def command(*args: bytes | str) -> bytes:
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def redis_cli(port: int, *args: str, resp3: bool = False, stdin: str | None = None) -> str:
    cmd = ["redis-cli", "-p", str(port), *(["-3"] if resp3 else []), *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30, check=True).stdout


def redis_benchmark(port: int, *args: str) -> str:
    cmd = ["redis-benchmark", "-p", str(port), "-n", "2000", "-c", "8", "-q", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def stats_when(conn: Conn, predicate: Any, timeout: float = 5.0) -> dict:
    """Ask the test server's STATS command until `predicate` holds (other threads' counters
    reach shared memory a few milliseconds late)."""
    import json

    deadline = time.monotonic() + timeout
    while True:
        stats = json.loads(conn.call("STATS"))
        if predicate(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def basic_handlers(server: Any, emit: Any) -> None:
    """PING, ECHO, SET/GET on a per-process dict, STATS, and the handlers the tests below need.

    (No events per connection here: the server blocks once 10 unread events wait in the
    harness's datagram socket, net.unix.max_dgram_qlen; `with_events` adds them.)"""
    import json

    store: dict[bytes, bytes] = {}
    server.set_handler("PING", lambda srv, fd, args: redis.format(redis.STATUS, "PONG"))
    server.set_handler("ECHO", lambda srv, fd, args: redis.format(redis.STRING, args[0]))
    server.set_handler("SET", lambda srv, fd, args: store.__setitem__(args[0], args[1]) or redis.format(redis.STATUS))
    server.set_handler("GET", lambda srv, fd, args: redis.format(redis.STRING, store[args[0]]) if args[0] in store else redis.format(redis.NIL))
    server.set_handler("STATS", lambda srv, fd, args: redis.format(redis.STRING, json.dumps(srv.stats())))

    def parts(srv: Any, fd: int, args: list[bytes]) -> bytes:
        srv.send(fd, b"+one\r\n")  # joins the reply, in order
        srv.send(fd, "+two\r\n")
        return b"+three\r\n"

    def later(srv: Any, fd: int, args: list[bytes]) -> bytes:
        srv.after(20, lambda: srv.send(fd, b"+later\r\n"))  # outside the handler: a plain send
        return b"+now\r\n"

    def quit_(srv: Any, fd: int, args: list[bytes]) -> bytes:
        srv.close(fd)  # closes once +OK is written
        return redis.format(redis.STATUS)

    def reset(srv: Any, fd: int, args: list[bytes]) -> bytes:
        srv.close(fd, True)
        return b"+never sent\r\n"

    def boom(srv: Any, fd: int, args: list[bytes]) -> bytes:
        raise RuntimeError("handler failure on purpose")

    def proto(srv: Any, fd: int, args: list[bytes]) -> bytes | bool:
        return srv.format_for(fd, redis.NIL)  # RESP3 after HELLO 3

    for name, handler in {"PARTS": parts, "LATER": later, "QUIT": quit_, "RESET": reset, "BOOM": boom, "NULL": proto}.items():
        server.set_handler(name, handler)
    server.set_handler("NOREPLY", lambda srv, fd, args: None)
    server.set_handler("TEXT", lambda srv, fd, args: "+str reply\r\n")


def with_events(server: Any, emit: Any) -> None:
    """basic_handlers, and a `connect` / `close` event per connection (for tests with few of them)."""
    basic_handlers(server, emit)
    server.on("connect", lambda srv, fd, reactor_id: emit("connect", fd=fd))
    server.on("close", lambda srv, fd, reactor_id: emit("close", fd=fd))


# -- examples/redis_kv.py, as written ------------------------------------------------------------
class Example:
    """examples/redis_kv.py in a subprocess of its own process group, on a port the OS picks."""

    def __init__(self, mode: str, workers: int) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        args = [sys.executable, EXAMPLE, "--port", "0", "--mode", mode, "--workers", str(workers)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        line = self.proc.stdout.readline()  # "redis_kv on 127.0.0.1:<port> (...)", printed before start()
        assert line.startswith("redis_kv on "), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.port = int(line.split(":")[1].split()[0])
        deadline = time.monotonic() + 15
        while True:  # listening from the constructor; answering once a worker runs
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as probe:
                    probe.sendall(b"PING\r\n")
                    if probe.recv(16) == b"+PONG\r\n":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the example never answered PING"
            time.sleep(0.05)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            self.kill()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of its tree
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def example():
    started: list[Example] = []

    def start(mode: str, workers: int = 1) -> Example:
        started.append(Example(mode, workers))
        return started[-1]

    yield start
    for ex in started:
        if ex.proc.returncode is None:
            ex.kill()


@needs_redis_tools
@pytest.mark.parametrize("workers", [1, 2])
def test_the_example_under_redis_cli_and_redis_benchmark(example, mode: str, workers: int) -> None:
    ex = example(mode, workers)
    port = ex.port
    assert redis_cli(port, "SET", "greeting", "hello world", "EX", "100") == "OK\n"
    assert redis_cli(port, "GET", "greeting") == "hello world\n"
    assert redis_cli(port, "TTL", "greeting") == "100\n"
    assert redis_cli(port, "NOSUCH", "a") == "ERR unknown command 'NOSUCH', with args beginning with: 'a' \n\n"
    assert redis_cli(port, "GET", "greeting", resp3=True) == "hello world\n"  # -3: HELLO 3 first
    hello = redis_cli(port, "HELLO", "3", resp3=True).splitlines()  # (its own connection: id 1 in BASE w1)
    assert hello[0] == "server threadswoole" and "proto 3" in hello and "mode standalone" in hello
    # a pipe of commands (redis-cli sends them as one stream)
    assert redis_cli(port, stdin="SET k 41\nINCR k\nINCR k\nGET k\n") == "OK\n42\n43\n43\n"
    # every worker sees the same data (a Table with several worker processes)
    for _ in range(8):
        assert redis_cli(port, "GET", "k") == "43\n"
    out = redis_benchmark(port, "-t", "set,get,incr", "-P", "16")
    assert "SET:" in out and "GET:" in out and "INCR:" in out, out
    out = redis_benchmark(port, "-t", "ping_inline,ping_mbulk,set")
    assert "PING_INLINE:" in out and "PING_MBULK:" in out, out
    assert int(redis_cli(port, "GET", "counter:__rand_int__")) == 2000  # INCR -P 16, no command lost
    assert ex.stop() == 0


# -- small servers built here --------------------------------------------------------------------
def test_pipelined_commands_are_answered_in_order(run_server, mode: str) -> None:
    handle = run_server(basic_handlers, mode=mode, settings={"worker_num": 2}, server_class=redis.Server)
    conn = Conn(handle.port)
    pipeline = b"".join(command("ECHO", "%d" % i) for i in range(2000))
    conn.send(pipeline)
    assert conn.replies(2000) == [b"%d" % i for i in range(2000)]
    # byte by byte, a multibulk and an inline command mixed
    for byte in command("SET", "k", "a\r\nb") + b"GET k\r\n":
        conn.send(bytes([byte]))
    assert conn.replies(2) == ["+OK", b"a\r\nb"]
    # sends inside a handler join its reply; None sends nothing; a str is sent as UTF-8
    conn.send(command("PING") + command("PARTS") + command("NOREPLY") + command("TEXT") + command("PING"))
    assert conn.replies(6) == ["+PONG", "+one", "+two", "+three", "+str reply", "+PONG"]
    # a send outside any handler (a timer) is a plain send, after the reply of its command
    conn.send(command("LATER"))
    assert conn.replies(2) == ["+now", "+later"]
    # a value above the parser's fast path (1 MiB) both ways
    big = os.urandom(1 << 20)
    assert conn.call("SET", "big", big) == "+OK" and conn.call("GET", "big") == big
    conn.close()
    assert handle.stop() == 0


def test_unknown_commands_hello_and_resp3(run_server, mode: str) -> None:
    handle = run_server(basic_handlers, mode=mode, server_class=redis.Server)
    conn = Conn(handle.port)
    assert conn.call("FLUSHALL", "x" * 200, "y") == "-ERR unknown command 'FLUSHALL', with args beginning with: '" + "x" * 128 + "' "
    assert conn.call("NULL") is None and conn.buf == b""
    conn.send(command("NULL"))
    assert conn._line() == b"$-1"  # RESP2 null
    hello = conn.call("HELLO", "3")
    assert hello[b"server"] == b"threadswoole" and hello[b"proto"] == 3 and hello[b"mode"] == b"standalone"
    conn.send(command("NULL"))
    assert conn._line() == b"_"  # the RESP3 null, on this connection only
    other = Conn(handle.port)
    other.send(command("NULL"))
    assert other._line() == b"$-1"
    assert conn.call("HELLO", "4") == "-NOPROTO unsupported protocol version"
    conn.close()
    other.close()
    assert handle.stop() == 0


@needs_redis_tools
def test_redis_cli_and_benchmark_against_a_small_server(run_server, mode: str) -> None:
    handle = run_server(basic_handlers, mode=mode, settings={"worker_num": 2}, server_class=redis.Server)
    assert redis_cli(handle.port, "PING") == "PONG\n"
    assert redis_cli(handle.port, "ECHO", "x y") == "x y\n"
    # one connection: one worker, whose store this is (each worker process has its own here)
    assert redis_cli(handle.port, stdin="SET k v\nGET k\n", resp3=True) == "OK\nv\n"
    assert redis_cli(handle.port, "NULL", resp3=True) == "\n"  # the RESP3 null (after -3's HELLO 3), as redis-cli prints nil
    out = redis_benchmark(handle.port, "-t", "set,get", "-P", "16")
    assert "SET:" in out and "GET:" in out, out
    assert handle.stop() == 0


@pytest.mark.parametrize(
    "bad, text",
    [
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
        (b'SET "a b\r\n', "unbalanced quotes in request"),
        (b"*1\r\n$3000000\r\n", "invalid bulk length"),  # over package_max_length (2 MiB)
    ],
)
def test_protocol_errors_get_redis_texts_then_a_close(run_server, mode: str, bad: bytes, text: str) -> None:
    handle = run_server(with_events, mode=mode, settings={"worker_num": 1}, server_class=redis.Server)
    conn = Conn(handle.port)
    before = stats_when(conn, lambda s: True)["protocol_error_count"]
    conn.send(command("PING") + command("SET", "k", "v") + bad + command("PING"))
    assert conn.replies(3) == ["+PONG", "+OK", "-ERR Protocol error: " + text]  # what came before is answered
    assert conn.closed()
    handle.wait("close")
    probe = Conn(handle.port)
    stats = stats_when(probe, lambda s: s["protocol_error_count"] == before + 1)
    assert stats["protocol_error_count"] == before + 1
    assert probe.call("GET", "k") == b"v"
    probe.close()
    assert handle.stop() == 0


def test_quit_before_bad_bytes_closes_without_the_protocol_error(run_server, mode: str) -> None:
    handle = run_server(with_events, mode=mode, settings={"worker_num": 1}, server_class=redis.Server)
    conn = Conn(handle.port)
    conn.send(command("PING") + command("QUIT") + b"*x\r\n")  # QUIT ran first: its +OK is the last word
    assert conn.replies(2) == ["+PONG", "+OK"] and conn.closed()
    handle.wait("close")
    assert handle.stop() == 0


def test_quit_reset_and_a_failing_handler(run_server, mode: str) -> None:
    handle = run_server(with_events, mode=mode, server_class=redis.Server)
    conn = Conn(handle.port)
    fd = handle.wait("connect")["fd"]
    conn.send(command("PING") + command("QUIT") + command("PING"))  # the PING after QUIT never runs
    assert conn.replies(2) == ["+PONG", "+OK"] and conn.closed()
    assert handle.wait("close")["fd"] == fd
    conn = Conn(handle.port)
    conn.send(command("RESET") + command("PING"))
    assert conn.closed() and conn.buf == b""  # reset: no reply at all
    conn = Conn(handle.port)
    before = stats_when(conn, lambda s: True)["callback_error_count"]
    conn.send(command("BOOM", "x") + command("PING"))
    assert conn.replies(2) == ["-ERR internal error in the 'BOOM' handler", "+PONG"]  # the pipeline goes on
    assert stats_when(conn, lambda s: s["callback_error_count"] == before + 1)["callback_error_count"] == before + 1
    conn.close()
    assert handle.stop() == 0


def test_every_command_is_a_request(run_server, mode: str) -> None:
    handle = run_server(basic_handlers, mode=mode, server_class=redis.Server)
    conn = Conn(handle.port)
    before = stats_when(conn, lambda s: True)["request_count"]  # (the STATS command itself counts)
    conn.send(b"".join(command("PING") for _ in range(100)))
    assert conn.replies(100) == ["+PONG"] * 100
    stats = stats_when(conn, lambda s: s["request_count"] >= before + 101)
    assert stats["request_count"] == before + 101
    conn.close()
    assert handle.stop() == 0


def test_max_request_in_process_mode_loses_no_pipelined_command(run_server) -> None:
    def setup(server: Any, emit: Any) -> None:
        starts = threadswoole.Atomic()  # shared memory: counts worker (re)starts across processes
        server.set_handler("ECHO", lambda srv, fd, args: redis.format(redis.STRING, args[0]))
        server.set_handler("STARTS", lambda srv, fd, args: redis.format(redis.INT, starts.get()))
        server.on("worker_start", lambda srv, worker_id: starts.add())

    handle = run_server(setup, mode="process", settings={"worker_num": 2, "max_request": 300}, server_class=redis.Server)
    errors: list[BaseException] = []

    def client(number: int) -> None:
        try:
            conn = Conn(handle.port)
            for batch in range(40):
                words = [b"%d:%d:%d" % (number, batch, i) for i in range(25)]
                conn.send(b"".join(command("ECHO", w) for w in words))
                assert conn.replies(25) == words
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while any(thread.is_alive() for thread in threads) and time.monotonic() < deadline:
        handle.drain(settle=0.05)  # each new worker reports __ready__: keep the harness's queue short
    for thread in threads:
        thread.join(1)
    assert not errors, errors
    conn = Conn(handle.port)
    assert conn.call("STARTS") >= 2 + 4000 // 300 - 2  # the workers were recycled under the load (4000 commands, 300 each)
    conn.close()
    assert handle.stop() == 0


def test_threadswoole_client_speaks_resp(run_server, mode: str) -> None:
    handle = run_server(basic_handlers, mode=mode, server_class=redis.Server)
    client = Client(SWOOLE_SOCK_TCP)
    client.set(open_eof_check=True, package_eof=b"\r\n")  # every reply here is one CRLF-terminated line
    assert client.connect("127.0.0.1", handle.port, 5.0)
    pipeline = command("SET", "k", "7") + b"PING\r\n" + command("NOSUCH")
    assert client.send(pipeline) == len(pipeline)
    received = b""
    while received.count(b"\r\n") < 3:
        chunk = client.recv()
        assert chunk, client.err_code
        received += chunk
    assert received == b"+OK\r\n+PONG\r\n-ERR unknown command 'NOSUCH', with args beginning with: \r\n"
    client.send(b"*1\r\n$x\r\n")
    assert client.recv() == b"-ERR Protocol error: invalid bulk length\r\n"
    assert client.recv() == b""  # then the server closes the connection
    client.close()
    assert handle.stop() == 0


def test_thread_mode_workers_share_the_table_safely(run_server) -> None:
    """Several worker threads, one CommandTable: each connection keeps its own HELLO state and order."""
    handle = run_server(basic_handlers, mode="thread", settings={"worker_num": 4}, server_class=redis.Server)
    errors: list[BaseException] = []

    def client(number: int) -> None:
        try:
            for _ in range(10):  # connections come and go: sessions are created and forgotten
                conn = Conn(handle.port)
                resp3 = number % 2 == 0
                if resp3:
                    assert conn.call("HELLO", "3")[b"proto"] == 3
                conn.send(b"".join(command("ECHO", "%d" % i) + command("NULL") for i in range(50)))
                for i in range(50):
                    assert conn.reply() == b"%d" % i
                    assert conn._line() == (b"_" if resp3 else b"$-1")
                conn.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert handle.stop() == 0


def test_callbacks_and_added_ports(run_server, mode: str) -> None:
    """connect/close work on the RESP port and no receive is needed there; an added port is a raw
    stream for `receive` (as in Swoole) unless it sets open_redis_protocol itself."""

    def setup(server: Any, emit: Any) -> None:
        with_events(server, emit)
        server.on("receive", lambda srv, fd, reactor_id, data: srv.send(fd, b"raw:" + data))
        server.add_listener("127.0.0.1", 0, SWOOLE_SOCK_TCP)
        resp = server.add_listener("127.0.0.1", 0, SWOOLE_SOCK_TCP)
        resp.set(open_redis_protocol=True)

    handle = run_server(setup, mode=mode, server_class=redis.Server)
    main_port, raw_port, resp_port = handle.ports
    conn = Conn(main_port)
    assert handle.wait("connect")["fd"] > 0
    assert conn.call("PING") == "+PONG"
    raw = connect(raw_port)
    raw.sendall(b"PING\r\n")
    assert raw.recv(64) == b"raw:PING\r\n"
    other = Conn(resp_port)
    assert other.call("ECHO", "same handlers") == b"same handlers"
    for sock in (conn.sock, raw, other.sock):
        sock.close()
    handle.wait_n("close", 3)
    assert handle.stop() == 0


# -- start() checks (nothing forks: they raise before the server runs) ----------------------------
def test_start_checks() -> None:
    plain = threadswoole.Server("127.0.0.1", 0, SWOOLE_BASE)
    plain.set(open_redis_protocol=True)
    with pytest.raises(ConfigError, match="threadswoole.redis.Server"):
        plain.start()
    server = redis.Server("127.0.0.1", 0, SWOOLE_PROCESS)
    server.set(dispatch_mode=1)
    with pytest.raises(ConfigError, match="dispatch mode"):
        server.start()
    for sock in (plain.get_socket(), server.get_socket()):
        sock.close()


def test_the_class_api() -> None:
    server = redis.Server("127.0.0.1", 0, SWOOLE_BASE)
    try:
        assert isinstance(server, threadswoole.Server)
        assert server.ports[0].setting["open_redis_protocol"] is True
        assert (server.NIL, server.ERROR, server.STATUS, server.INT, server.STRING, server.SET, server.MAP) == (1, 0, 2, 3, 4, 5, 6)
        assert redis.Server.format(redis.Server.INT, 5) == b":5\r\n" and server.format(redis.NIL) == b"$-1\r\n"
        assert redis.Server.format(redis.Server.INT, "x") is False
        handler = lambda srv, fd, args: None  # noqa: E731
        assert server.set_handler("get", handler) is True
        assert server.get_handler("GET") is handler and server.getHandler("Get") is handler
        assert server.setHandler("SET", handler) is True and server.get_handler("set") is handler
        assert server.get_handler("nothing") is None
        with pytest.raises(TypeError):
            server.set_handler("x", "not callable")  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            server.set_handler("x" * 64, handler)
        assert server.command_table.get_handler("get") is handler
    finally:
        server.get_socket().close()


def test_the_readme_and_docs_example_runs_as_written() -> None:
    """README "Redis server" (the same code opens docs/redis.md): served as written, port swapped."""
    import re

    readme = open(os.path.join(ROOT, "README.md")).read()
    code = re.search(r"## Redis server.*?```python\n(.*?)```", readme, re.S).group(1)
    docs = open(os.path.join(ROOT, "docs", "redis.md")).read()
    assert code in docs
    code = code.replace('redis.Server("127.0.0.1", 6380', 'redis.Server("127.0.0.1", 0')
    code = code.replace("server.start()", 'server.on("start", lambda s: print("PORT", s.port, flush=True))\nserver.start()')
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=ROOT), start_new_session=True)
    try:
        port = int(proc.stdout.readline().split()[1])
        conn = Conn(port)
        assert conn.call("SET", "greeting", "hello") == "+OK" and conn.call("GET", "greeting") == b"hello"
        assert conn.call("GET", "nothing") is None
        conn.close()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        proc.stdout.close()
