"""examples/redis_kv.py: its handlers as plain functions, through a CommandTable and the RESP parser,
over both of its stores (a dict; a threadswoole.Table for several worker processes).

(The example running as a server, with real clients: tests/test_redis_server.py.)
"""

from __future__ import annotations

import importlib.util
import os
import threading

import pytest

from threadswoole.protocol.resp import RespCodec
from threadswoole.redis import CommandTable

pytestmark = pytest.mark.timeout(30)

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "redis_kv.py")
_spec = importlib.util.spec_from_file_location("redis_kv", _PATH)
redis_kv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(redis_kv)  # type: ignore[union-attr]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ServerStandIn:
    def __init__(self, table: CommandTable) -> None:
        self.table = table
        self.closed: list[int] = []

    def send(self, fd: int, data: bytes) -> bool:
        return self.table.capture(fd, data)

    def close(self, fd: int) -> bool:
        if not self.table.defer_close(fd):
            self.closed.append(fd)
        return True


@pytest.fixture(params=["dict", "dict-alone", "table"])
def kv(request):
    clock = Clock()
    if request.param == "dict":
        store = redis_kv.KeyValueStore(clock)
    elif request.param == "dict-alone":  # one thread alone (one worker process): no lock
        store = redis_kv.KeyValueStore(clock, lock=False)
    else:
        data = redis_kv.SharedData(max_keys=256, max_value=64)
        request.addfinalizer(data._table.destroy)
        store = redis_kv.KeyValueStore(clock, data=data)
    table = CommandTable()
    redis_kv.register(table, store)
    server = ServerStandIn(table)

    def run(line: bytes) -> bytes | None:
        (event,) = RespCodec().feed(line + b"\r\n")
        return table.dispatch(server, 1, event.args)

    run.clock = clock  # type: ignore[attr-defined]
    run.table = table  # type: ignore[attr-defined]
    run.server = server  # type: ignore[attr-defined]
    return run


def test_get_set_del(kv) -> None:
    assert kv(b"GET k") == b"$-1\r\n"
    assert kv(b"SET k hello") == b"+OK\r\n"
    assert kv(b"get k") == b"$5\r\nhello\r\n"
    assert kv(b'SET k "two words"') == b"+OK\r\n" and kv(b"GET k") == b"$9\r\ntwo words\r\n"
    assert kv(b"DEL k k nothere") == b":1\r\n"
    assert kv(b"GET k") == b"$-1\r\n"
    assert kv(b"GET") == b"-ERR wrong number of arguments for 'get' command\r\n"


def test_set_options(kv) -> None:
    assert kv(b"SET k v NX") == b"+OK\r\n"
    assert kv(b"SET k w NX") == b"$-1\r\n" and kv(b"GET k") == b"$1\r\nv\r\n"
    assert kv(b"SET k w XX") == b"+OK\r\n" and kv(b"GET k") == b"$1\r\nw\r\n"
    assert kv(b"SET other v XX") == b"$-1\r\n"
    assert kv(b"SET k v NX XX") == b"-ERR syntax error\r\n"
    assert kv(b"SET k v EX") == b"-ERR syntax error\r\n"
    assert kv(b"SET k v EX 0") == b"-ERR invalid expire time in 'set' command\r\n"
    assert kv(b"SET k v EX ten") == b"-ERR value is not an integer or out of range\r\n"
    assert kv(b"SET k v EX 10 PX 100") == b"-ERR syntax error\r\n"


def test_expiry(kv) -> None:
    assert kv(b"SET k v EX 10") == b"+OK\r\n"
    assert kv(b"TTL k") == b":10\r\n"
    kv.clock.now += 9.6
    assert kv(b"TTL k") == b":0\r\n" and kv(b"GET k") == b"$1\r\nv\r\n"
    kv.clock.now += 0.5
    assert kv(b"GET k") == b"$-1\r\n" and kv(b"TTL k") == b":-2\r\n"
    assert kv(b"SET p v PX 1500") == b"+OK\r\n" and kv(b"TTL p") == b":2\r\n"
    assert kv(b"SET forever v") == b"+OK\r\n" and kv(b"TTL forever") == b":-1\r\n"
    assert kv(b"EXPIRE forever 5") == b":1\r\n" and kv(b"TTL forever") == b":5\r\n"
    assert kv(b"EXPIRE nothere 5") == b":0\r\n"
    assert kv(b"EXPIRE forever -1") == b":1\r\n" and kv(b"GET forever") == b"$-1\r\n"


def test_incr(kv) -> None:
    assert kv(b"INCR n") == b":1\r\n" and kv(b"INCR n") == b":2\r\n"
    assert kv(b"SET s abc") == b"+OK\r\n" and kv(b"INCR s") == b"-ERR value is not an integer or out of range\r\n"
    assert kv(b"SET big 9223372036854775807") == b"+OK\r\n"
    assert kv(b"INCR big") == b"-ERR increment or decrement would overflow\r\n"
    assert kv(b"SET t 5 EX 100") == b"+OK\r\n" and kv(b"INCR t") == b":6\r\n" and kv(b"TTL t") == b":100\r\n"


def test_keys_dbsize_flushall(kv) -> None:
    for line in (b"SET user:1 a", b"SET user:2 b", b"SET item:1 c", b"SET short v PX 10"):
        assert kv(line) == b"+OK\r\n"
    assert kv(b"DBSIZE") == b":4\r\n"
    kv.clock.now += 1
    assert kv(b"DBSIZE") == b":3\r\n"
    reply = kv(b"KEYS user:*")
    assert reply in (b"*2\r\n$6\r\nuser:1\r\n$6\r\nuser:2\r\n", b"*2\r\n$6\r\nuser:2\r\n$6\r\nuser:1\r\n")
    assert kv(b"KEYS *:1").startswith(b"*2\r\n") and kv(b"KEYS nope*") == b"*0\r\n"
    assert kv(b"FLUSHALL") == b"+OK\r\n" and kv(b"DBSIZE") == b":0\r\n"


def test_what_redis_benchmark_and_redis_cli_ask_first(kv) -> None:
    assert kv(b"CONFIG GET save") == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert kv(b"CONFIG GET appendonly") == b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    assert kv(b"CONFIG GET nothing") == b"*0\r\n"
    assert kv(b"COMMAND DOCS") == b"*0\r\n"
    assert kv(b"PING") == b"+PONG\r\n" and kv(b"PING hi") == b"$2\r\nhi\r\n" and kv(b"ECHO x") == b"$1\r\nx\r\n"
    assert kv(b"HELLO 3").startswith(b"%7\r\n")  # built into the table


def test_quit_replies_then_closes(kv) -> None:
    assert kv(b"QUIT") == b"+OK\r\n"
    assert kv.table.closing(1) and kv.server.closed == []  # redis.Server closes once +OK is written


def test_threads_share_one_store() -> None:
    store = redis_kv.KeyValueStore()
    table = CommandTable()
    redis_kv.register(table, store)

    def hammer() -> None:
        for _ in range(2000):
            table.dispatch(None, threading.get_ident(), [b"INCR", b"counter"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert table.dispatch(None, 1, [b"GET", b"counter"]) == b"$4\r\n8000\r\n"


def test_the_shared_store_answers_its_limits_with_errors() -> None:
    data = redis_kv.SharedData(max_keys=64, max_value=8)
    try:
        store = redis_kv.KeyValueStore(data=data)
        table = CommandTable()
        redis_kv.register(table, store)
        run = lambda *args: table.dispatch(None, 1, [*args])  # noqa: E731
        assert run(b"SET", b"k" * 62, b"v") == b"+OK\r\n" and run(b"GET", b"k" * 62) == b"$1\r\nv\r\n"
        assert run(b"SET", b"k" * 63, b"v") == b"-ERR key longer than this shared store's 62 bytes\r\n"
        assert run(b"SET", b"k", b"v" * 9) == b"-ERR value longer than this shared store's 8 bytes (--max-value)\r\n"
        assert run(b"SET", b"", b"empty") == b"+OK\r\n" and run(b"GET", b"") == b"$5\r\nempty\r\n"
        assert run(b"SET", b"\xff\x00key", b"\r\n") == b"+OK\r\n"  # any bytes, both ways
        assert sorted(data) == [b"", b"k" * 62, b"\xff\x00key"]
        replies = [run(b"SET", b"key%d" % i, b"v") for i in range(200)]
        assert b"-ERR the shared store is full (--max-keys)\r\n" in replies  # then nothing is overwritten
        assert run(b"GET", b"k" * 62) == b"$1\r\nv\r\n"
    finally:
        data._table.destroy()


def test_make_store_takes_a_lock_only_where_threads_share_it() -> None:
    alone = redis_kv.make_store("base", 1)
    assert alone._alone and not alone.limited
    assert redis_kv.make_store("process", 1)._alone
    threaded = redis_kv.make_store("thread", 4)
    assert not threaded._alone and isinstance(threaded._lock, type(threading.Lock()))
    shared = redis_kv.make_store("base", 2, max_keys=64, max_value=16)
    try:
        assert shared.limited and not shared._alone
    finally:
        shared._data._table.destroy()
