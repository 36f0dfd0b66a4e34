"""RESP end to end over a real threadswoole server, with real clients (redis-cli, redis-benchmark,
threadswoole.Client), in every mode.

Until redis.Server runs RespCodec in the reactor, this test drives the codec and the command
table from a plain server's `receive` callback, the way redis.Server will: one codec per
connection (batch mode), one dispatch and one write per batch, the protocol error reply then
close, sessions forgotten on close. It checks that the pieces fit and that real Redis clients
accept what they produce.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import pytest

from threadswoole import SWOOLE_SOCK_TCP, Client
from threadswoole.protocol.codec import ProtocolError
from threadswoole.protocol.resp import RespCodec
from threadswoole.redis import CommandTable

pytestmark = pytest.mark.timeout(120)

_EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "redis_kv.py")
needs_redis_tools = pytest.mark.skipif(shutil.which("redis-cli") is None or shutil.which("redis-benchmark") is None, reason="needs redis-cli and redis-benchmark")


def resp_setup(server, emit) -> None:
    spec = importlib.util.spec_from_file_location("redis_kv", _EXAMPLE)
    kv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kv)  # type: ignore[union-attr]
    table = CommandTable()
    kv.register(table, kv.KeyValueStore())
    codecs: dict[int, RespCodec] = {}

    def run(srv, fd, events) -> None:
        for event in events:
            reply = table.dispatch_batch(srv, fd, event.commands)
            if reply:
                srv.send(fd, reply)

    def on_receive(srv, fd, reactor_id, data) -> None:
        codec = codecs.get(fd)
        if codec is None:
            codec = codecs[fd] = RespCodec(batch=True)
        try:
            events = codec.feed(data)
        except ProtocolError as err:
            run(srv, fd, err.events)
            emit("protocol_error", reason=err.reason)
            if err.response:
                srv.send(fd, err.response)
            srv.close(fd)
            return
        run(srv, fd, events)
        if table.closing(fd):
            srv.close(fd)

    def on_close(srv, fd, reactor_id) -> None:
        codecs.pop(fd, None)
        table.forget(fd)

    server.on("receive", on_receive)
    server.on("close", on_close)


def redis_cli(port: int, *args: str, resp3: bool = False) -> str:
    command = ["redis-cli", "-p", str(port), *(["-3"] if resp3 else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout


@needs_redis_tools
def test_redis_cli_and_benchmark(run_server, mode) -> None:
    handle = run_server(resp_setup, mode=mode, settings={"worker_num": 1})
    port = handle.port
    assert redis_cli(port, "SET", "greeting", "hello world", "EX", "100") == "OK\n"
    assert redis_cli(port, "GET", "greeting") == "hello world\n"
    assert redis_cli(port, "TTL", "greeting") == "100\n"
    assert redis_cli(port, "INCR", "n") == "1\n"
    assert redis_cli(port, "NOSUCH", "a").strip() == "ERR unknown command 'NOSUCH', with args beginning with: 'a'"
    assert redis_cli(port, "GET", "greeting", resp3=True) == "hello world\n"  # redis-cli -3 sends HELLO 3 first
    result = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", "3000", "-P", "16", "-c", "4", "-q"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "SET:" in result.stdout and "GET:" in result.stdout, result.stdout
    assert int(redis_cli(port, "DBSIZE")) >= 2
    assert handle.stop() == 0


def test_threadswoole_client_speaks_resp(run_server, mode) -> None:
    handle = run_server(resp_setup, mode=mode, settings={"worker_num": 1})
    client = Client(SWOOLE_SOCK_TCP)
    client.set(open_eof_check=True, package_eof=b"\r\n")  # every reply here is one CRLF-terminated line
    assert client.connect("127.0.0.1", handle.port, 5.0)
    pipeline = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n7\r\nINCR k\r\nPING\r\n"
    assert client.send(pipeline) == len(pipeline)
    received = b""
    while received.count(b"\r\n") < 3:
        chunk = client.recv()
        assert chunk, client.err_code
        received += chunk
    assert received == b"+OK\r\n:8\r\n+PONG\r\n"
    client.send(b"*1\r\n$x\r\n")
    assert client.recv() == b"-ERR Protocol error: invalid bulk length\r\n"
    assert client.recv() == b""  # then the server closes the connection
    assert handle.wait("protocol_error")["reason"] == "invalid_bulk_length"
    client.close()
    assert handle.stop() == 0
