"""A small Redis-compatible key-value server written against threadswoole's documented API.

    python3 examples/redis_kv.py --port 6380 --mode thread --workers 4
    redis-cli -p 6380 set greeting hello ex 60
    redis-benchmark -p 6380 -t set,get -n 100000 -P 16

Commands: PING, ECHO, GET, SET (EX/PX, NX/XX), DEL, INCR, EXPIRE, TTL, KEYS (glob), DBSIZE,
FLUSHALL/FLUSHDB, CONFIG GET (what redis-benchmark asks for), COMMAND (empty), QUIT; HELLO is
built into redis.Server. Replies and error texts are Redis's.

The data lives in one `KeyValueStore`. With one worker (no lock needed), or in SWOOLE_THREAD mode
(every worker thread shares the process's store, a lock guards it), it is a dict. With several worker
*processes* (SWOOLE_BASE or SWOOLE_PROCESS, --workers > 1) it lives in a `threadswoole.Table`
made before start() (shared memory every worker sees) under one `threadswoole.Lock`; then a key
holds at most 62 bytes, a value at most --max-value bytes, and at most about --max-keys keys fit
(Redis's limits are far larger): past them a command gets an ``-ERR`` that says which.

The handlers are plain methods `(server, fd, args) -> reply bytes`, so they can be called
(and tested) without a server; `register()` puts them in anything with `set_handler`.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import threading
import time
from typing import Any, Callable

from threadswoole import redis

_INT64 = (-(2**63), 2**63 - 1)
OK = redis.format(redis.STATUS)
NIL = redis.format(redis.NIL)
PONG = redis.format(redis.STATUS, "PONG")


def error(text: str) -> bytes:
    return redis.format(redis.ERROR, text)  # type: ignore[return-value]


def wrong_arity(command: str) -> bytes:
    return error(f"ERR wrong number of arguments for '{command}' command")


NOT_AN_INTEGER = error("ERR value is not an integer or out of range")
SYNTAX = error("ERR syntax error")


def parse_int(data: bytes) -> int | None:
    """A Redis integer argument: canonical decimal, signed 64-bit."""
    try:
        value = int(data)
    except ValueError:
        return None
    if b"%d" % value != data or not _INT64[0] <= value <= _INT64[1]:
        return None
    return value


class StoreLimit(ValueError):
    """A key, a value or the number of keys is beyond what the shared store holds."""


class SharedData:
    """The store's mapping (key -> (value, expiry or None)) in a `threadswoole.Table`, so that every
    worker process sees the same data. Only the few mapping operations `KeyValueStore` uses."""

    KEY_BYTES = 62  # a Table key is 1 to 63 bytes; one goes to the prefix that lets b"" be a key

    def __init__(self, max_keys: int = 16384, max_value: int = 1024) -> None:
        from threadswoole import Table

        self._table = Table(max_keys)
        self._table.column("value", Table.TYPE_STRING, max_value)
        self._table.column("expires", Table.TYPE_FLOAT)
        self._table.create()
        self.max_value = max_value

    def _key(self, key: bytes) -> str:
        text = "k" + key.decode("latin-1")  # every byte one char; back with .encode("latin-1")
        if len(text.encode()) > self.KEY_BYTES + 1:
            raise StoreLimit(f"key longer than this shared store's {self.KEY_BYTES} bytes")
        return text

    def get(self, key: bytes) -> tuple[bytes, float | None] | None:
        row = self._table.get(self._key(key))
        return None if row is False else (row["value"], row["expires"] or None)

    def __setitem__(self, key: bytes, entry: tuple[bytes, float | None]) -> None:
        value, expires = entry
        if len(value) > self.max_value:
            raise StoreLimit(f"value longer than this shared store's {self.max_value} bytes (--max-value)")
        if not self._table.set(self._key(key), {"value": value, "expires": expires or 0.0}):
            raise StoreLimit("the shared store is full (--max-keys)")

    def __delitem__(self, key: bytes) -> None:
        self._table.delete(self._key(key))

    def pop(self, key: bytes, default: Any = None) -> Any:
        entry = self.get(key)
        if entry is None:
            return default
        del self[key]
        return entry

    def items(self) -> list[tuple[bytes, tuple[bytes, float | None]]]:
        return [(key[1:].encode("latin-1"), (row["value"], row["expires"] or None)) for key, row in self._table]

    def __iter__(self) -> Any:
        return iter([key for key, _ in self.items()])

    def __len__(self) -> int:
        return self._table.count()

    def clear(self) -> None:
        for key, _ in list(self._table):
            self._table.delete(key)


class KeyValueStore:
    """Keys -> (value, expiry time or None); expired keys vanish when touched (as Redis's lazy expiry).

    `data` and `lock` default to a dict and a thread lock (one process); `shared()` builds the
    store over a `SharedData` and a `threadswoole.Lock`, for several worker processes."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, data: Any = None, lock: Any = None) -> None:
        self._data: Any = {} if data is None else data
        # THREAD mode: every worker thread calls in, a lock guards the store. lock=False: one
        # thread alone uses it (one worker process), so it needs none (a `with` of a lock costs
        # about as much as the plain SET it guards: callgrind, stress/callgrind/base_redis.sh).
        self._lock = threading.Lock() if lock is None else lock or contextlib.nullcontext()
        self._alone = lock is False
        self._clock = clock  # time.monotonic is one clock for every process of the machine
        self.limited = isinstance(self._data, SharedData)

    @classmethod
    def shared(cls, max_keys: int = 16384, max_value: int = 1024) -> "KeyValueStore":
        """A store every worker process shares (made before server.start())."""
        from threadswoole import Lock

        return cls(data=SharedData(max_keys, max_value), lock=Lock(Lock.MUTEX))

    # -- helpers (call with the lock held) ---------------------------------------------------------
    def _live(self, key: bytes, now: float) -> tuple[bytes, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _purge(self, now: float) -> None:
        for key in [k for k, (_, at) in self._data.items() if at is not None and at <= now]:
            del self._data[key]

    # -- commands -------------------------------------------------------------------------------------
    def ping(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if len(args) > 1:
            return wrong_arity("ping")
        return redis.format(redis.STRING, args[0]) if args else PONG  # type: ignore[return-value]

    def echo(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if len(args) != 1:
            return wrong_arity("echo")
        return redis.format(redis.STRING, args[0])  # type: ignore[return-value]

    def get(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if len(args) != 1:
            return wrong_arity("get")
        entry = self._data.get(args[0])  # one atomic read (entries are never changed in place)
        if entry is not None and entry[1] is not None:  # it may have expired: check under the lock
            with self._lock:
                entry = self._live(args[0], self._clock())
        return NIL if entry is None else redis.format(redis.STRING, entry[0])  # type: ignore[return-value]

    def set(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        """SET key value [NX | XX] [EX seconds | PX milliseconds]."""
        if len(args) < 2:
            return wrong_arity("set")
        key, value = args[0], args[1]
        if len(args) == 2:  # a plain SET (the common case): no options, old value and expiry replaced
            if self._alone:
                self._data[key] = (value, None)
            else:
                with self._lock:
                    self._data[key] = (value, None)
            return OK
        ttl: float | None = None
        condition = None
        options = [a.upper() for a in args[2:]]
        i = 0
        while i < len(options):
            option = options[i]
            if option in (b"NX", b"XX") and condition in (None, option):
                condition = option
            elif option in (b"EX", b"PX") and ttl is None and i + 1 < len(options):
                amount = parse_int(args[2 + i + 1])
                if amount is None:
                    return NOT_AN_INTEGER
                if amount <= 0:
                    return error("ERR invalid expire time in 'set' command")
                ttl = amount if option == b"EX" else amount / 1000
                i += 1
            else:
                return SYNTAX
            i += 1
        with self._lock:
            now = self._clock()
            if condition is not None:  # (a plain SET need not read the old value)
                exists = self._live(key, now) is not None
                if (condition == b"NX" and exists) or (condition == b"XX" and not exists):
                    return NIL
            self._data[key] = (value, None if ttl is None else now + ttl)
        return OK

    def delete(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if not args:
            return wrong_arity("del")
        with self._lock:
            now = self._clock()
            removed = sum(1 for key in args if self._live(key, now) is not None and self._data.pop(key, None))
        return redis.format(redis.INT, removed)  # type: ignore[return-value]

    def incr(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if len(args) != 1:
            return wrong_arity("incr")
        with self._lock:
            entry = self._live(args[0], self._clock())
            value, expires = (b"0", None) if entry is None else entry
            number = parse_int(value)
            if number is None:
                return NOT_AN_INTEGER
            if number == _INT64[1]:
                return error("ERR increment or decrement would overflow")
            self._data[args[0]] = (b"%d" % (number + 1), expires)
        return redis.format(redis.INT, number + 1)  # type: ignore[return-value]

    def expire(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if len(args) != 2:
            return wrong_arity("expire")
        seconds = parse_int(args[1])
        if seconds is None:
            return NOT_AN_INTEGER
        with self._lock:
            now = self._clock()
            entry = self._live(args[0], now)
            if entry is None:
                return redis.format(redis.INT, 0)  # type: ignore[return-value]
            if seconds <= 0:
                del self._data[args[0]]
            else:
                self._data[args[0]] = (entry[0], now + seconds)
        return redis.format(redis.INT, 1)  # type: ignore[return-value]

    def ttl(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if len(args) != 1:
            return wrong_arity("ttl")
        with self._lock:
            now = self._clock()
            entry = self._live(args[0], now)
        if entry is None:
            return redis.format(redis.INT, -2)  # type: ignore[return-value]
        if entry[1] is None:
            return redis.format(redis.INT, -1)  # type: ignore[return-value]
        return redis.format(redis.INT, max(0, round(entry[1] - now)))  # type: ignore[return-value]

    def keys(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if len(args) != 1:
            return wrong_arity("keys")
        pattern = args[0].decode("latin-1")
        with self._lock:
            self._purge(self._clock())
            found = [k for k in self._data if fnmatch.fnmatchcase(k.decode("latin-1"), pattern)]
        return redis.format(redis.SET, found)  # type: ignore[return-value]

    def dbsize(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        if args:
            return wrong_arity("dbsize")
        with self._lock:
            self._purge(self._clock())
            return redis.format(redis.INT, len(self._data))  # type: ignore[return-value]

    def flushall(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        with self._lock:
            self._data.clear()
        return OK

    def config(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        """CONFIG GET <glob>: redis-benchmark asks for "save" and "appendonly" before it starts."""
        if len(args) != 2 or args[0].upper() != b"GET":
            return error("ERR CONFIG subcommand must be GET here")
        known = {"save": "", "appendonly": "no", "databases": "1"}
        pattern = args[1].decode("latin-1").lower()
        pairs = [item for name, value in known.items() if fnmatch.fnmatchcase(name, pattern) for item in (name, value)]
        return redis.format(redis.SET, pairs)  # type: ignore[return-value]

    def command(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        """COMMAND (and COMMAND DOCS, which redis-cli asks for): nothing to describe."""
        return redis.format(redis.SET, [])  # type: ignore[return-value]

    def quit(self, server: Any, fd: int, args: list[bytes]) -> bytes:
        """+OK, then the connection is closed (redis.Server closes it once the reply is written)."""
        server.close(fd)
        return OK


HANDLERS = {
    "PING": "ping", "ECHO": "echo", "GET": "get", "SET": "set", "DEL": "delete", "INCR": "incr",
    "EXPIRE": "expire", "TTL": "ttl", "KEYS": "keys", "DBSIZE": "dbsize", "FLUSHALL": "flushall",
    "FLUSHDB": "flushall", "CONFIG": "config", "COMMAND": "command", "QUIT": "quit",
}  # fmt: skip


def register(target: Any, store: KeyValueStore) -> None:
    """`target.set_handler(name, handler)` for every command (a redis.Server or a redis.CommandTable)."""
    for name, method in HANDLERS.items():
        handler = getattr(store, method)
        target.set_handler(name, _answering_limits(handler) if store.limited else handler)


def _answering_limits(handler: Callable[[Any, int, list[bytes]], bytes]) -> Callable[[Any, int, list[bytes]], bytes]:
    """The shared store's limits as ``-ERR`` replies (the plain store has none, and no wrapper)."""

    def run(server: Any, fd: int, args: list[bytes]) -> bytes:
        try:
            return handler(server, fd, args)
        except StoreLimit as exc:
            return error(f"ERR {exc}")

    return run


def make_store(mode: str, workers: int, max_keys: int = 16384, max_value: int = 1024) -> KeyValueStore:
    """The store for `workers` workers of `mode` ("base", "process" or "thread")."""
    if workers > 1 and mode != "thread":  # several processes: shared memory
        return KeyValueStore.shared(max_keys, max_value)
    if mode == "thread":  # worker threads share the process's store
        return KeyValueStore()
    return KeyValueStore(lock=False)  # one worker process, one thread: no lock needed


def main(argv: list[str] | None = None) -> None:
    import threadswoole

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6380)
    parser.add_argument("--mode", choices=("base", "process", "thread"), default="base")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-keys", type=int, default=16384, help="keys the shared store holds (several worker processes)")
    parser.add_argument("--max-value", type=int, default=1024, help="bytes of one value in the shared store")
    options = parser.parse_args(argv)
    if options.workers < 1:
        parser.error("--workers must be at least 1")
    mode = {"base": threadswoole.SWOOLE_BASE, "process": threadswoole.SWOOLE_PROCESS, "thread": threadswoole.SWOOLE_THREAD}[options.mode]
    server = redis.Server(options.host, options.port, mode)
    server.set({"worker_num": options.workers})
    store = make_store(options.mode, options.workers, options.max_keys, options.max_value)
    register(server, store)
    print(f"redis_kv on {options.host}:{server.port} ({options.mode}, {options.workers} worker(s))", flush=True)  # --port 0: the port the OS chose
    server.start()


if __name__ == "__main__":
    main()
