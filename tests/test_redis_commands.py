"""threadswoole.redis.CommandTable: handlers, dispatch, reply order, HELLO / RESP3 (no server needed)."""

from __future__ import annotations

import pytest

from threadswoole import redis
from threadswoole.protocol.resp import RespCodec
from threadswoole.redis import CommandTable, unknown_command

pytestmark = pytest.mark.timeout(30)


class ServerStandIn:
    """What redis.Server does around the table: send/close go through capture/defer_close first."""

    def __init__(self, table: CommandTable) -> None:
        self.table = table
        self.sent: list[tuple[int, bytes]] = []
        self.closed: list[int] = []

    def send(self, fd: int, data: bytes) -> bool:
        if self.table.capture(fd, data):
            return True
        self.sent.append((fd, bytes(data)))
        return True

    def close(self, fd: int) -> bool:
        if self.table.defer_close(fd):
            return True
        self.closed.append(fd)
        return True


@pytest.fixture
def table() -> CommandTable:
    return CommandTable()


def test_handlers_are_found_case_insensitively(table: CommandTable) -> None:
    seen = []

    def get(server, fd, args):
        seen.append((server, fd, args))
        return redis.format(redis.STRING, b"v")

    assert table.set_handler("Get", get) is True
    assert table.get_handler("GET") is get and table.get_handler("get") is get
    assert table.get_handler("set") is None
    for name in (b"GET", b"get", b"gEt"):
        assert table.dispatch("srv", 7, [name, b"k"]) == b"$1\r\nv\r\n"
    assert seen == [("srv", 7, [b"k"])] * 3


def test_set_handler_replaces_and_validates(table: CommandTable) -> None:
    table.set_handler("ping", lambda s, fd, a: b"+ONE\r\n")
    table.set_handler("PING", lambda s, fd, a: b"+TWO\r\n")
    assert table.dispatch(None, 1, [b"ping"]) == b"+TWO\r\n"
    with pytest.raises(TypeError):
        table.set_handler("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        table.set_handler(b"x", lambda *a: None)  # type: ignore[arg-type]
    for bad in ("", " get", "x" * 64):
        with pytest.raises(ValueError):
            table.set_handler(bad, lambda *a: None)
    table.set_handler("x" * 63, lambda *a: b"+LONG\r\n")
    assert table.get_handler("X" * 63) is not None


def test_return_values(table: CommandTable) -> None:
    table.set_handler("bytes", lambda s, fd, a: b"+B\r\n")
    table.set_handler("str", lambda s, fd, a: "+S\r\n")
    table.set_handler("none", lambda s, fd, a: None)
    table.set_handler("true", lambda s, fd, a: True)  # e.g. `return server.send(...)`
    table.set_handler("false", lambda s, fd, a: redis.format(redis.INT, "nope"))
    table.set_handler("bytearray", lambda s, fd, a: bytearray(b":1\r\n"))
    assert table.dispatch(None, 1, [b"bytes"]) == b"+B\r\n"
    assert table.dispatch(None, 1, [b"str"]) == b"+S\r\n"
    assert table.dispatch(None, 1, [b"none"]) is None
    assert table.dispatch(None, 1, [b"true"]) is None
    assert table.dispatch(None, 1, [b"false"]) is None
    assert table.dispatch(None, 1, [b"bytearray"]) == b":1\r\n"


def test_unknown_command_text_is_redis_own(table: CommandTable) -> None:
    assert table.dispatch(None, 1, [b"foo", b"a", b"b"]) == b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
    assert table.dispatch(None, 1, [b"foo"]) == b"-ERR unknown command 'foo', with args beginning with: \r\n"
    long = unknown_command([b"x", b"a" * 200, b"b"])
    assert long == b"-ERR unknown command 'x', with args beginning with: '" + b"a" * 128 + b"' \r\n"
    assert unknown_command([b"a\r\nb", b"c\nd"]) == b"-ERR unknown command 'a  b', with args beginning with: 'c d' \r\n"


def test_sends_inside_a_handler_keep_the_reply_order(table: CommandTable) -> None:
    server = ServerStandIn(table)

    def multi_part(srv, fd, args):
        srv.send(fd, b"+first\r\n")
        srv.send(fd, "+second\r\n")
        return b"+third\r\n"

    table.set_handler("multi", multi_part)
    table.set_handler("ping", lambda s, fd, a: b"+PONG\r\n")
    reply = table.dispatch_batch(server, 3, [[b"PING"], [b"MULTI"], [b"PING"]])
    assert reply == b"+PONG\r\n+first\r\n+second\r\n+third\r\n+PONG\r\n"
    assert server.sent == []
    assert server.send(3, b"+later\r\n") and server.sent == [(3, b"+later\r\n")]  # no handler running: sent


def test_close_in_a_handler_waits_for_the_reply_and_stops_the_batch(table: CommandTable) -> None:
    server = ServerStandIn(table)

    def quit_(srv, fd, args):
        srv.close(fd)
        return redis.format(redis.STATUS)

    table.set_handler("quit", quit_)
    table.set_handler("ping", lambda s, fd, a: b"+PONG\r\n")
    assert table.dispatch_batch(server, 5, [[b"PING"], [b"QUIT"], [b"PING"]]) == b"+PONG\r\n+OK\r\n"
    assert server.closed == [] and table.closing(5)
    assert table.dispatch(server, 5, [b"PING"]) is None  # nothing runs once closing
    table.forget(5)
    assert not table.closing(5) and table.dispatch(server, 5, [b"PING"]) == b"+PONG\r\n"


def test_http_request_lines_close_without_a_reply(table: CommandTable) -> None:
    commands = [event.args for event in RespCodec().feed(b"POST / HTTP/1.1\r\nHost: x\r\n\r\n")]
    assert table.dispatch_batch(None, 9, commands) is None
    assert table.closing(9)
    table.set_handler("host:", lambda s, fd, a: b"+fine\r\n")  # unless the application handles them
    assert table.dispatch(None, 10, [b"Host:", b"x"]) == b"+fine\r\n"


def test_a_raising_handler_answers_an_error_and_the_pipeline_goes_on() -> None:
    errors = []
    table = CommandTable(error_hook=lambda exc, args: errors.append((type(exc), args)))
    table.set_handler("boom", lambda s, fd, a: 1 / 0)
    table.set_handler("ping", lambda s, fd, a: b"+PONG\r\n")
    reply = table.dispatch_batch(None, 1, [[b"BOOM", b"x"], [b"PING"]])
    assert reply == b"-ERR internal error in the 'BOOM' handler\r\n+PONG\r\n"
    assert errors == [(ZeroDivisionError, [b"BOOM", b"x"])]


def test_system_exit_in_a_handler_propagates(table: CommandTable) -> None:
    def leave(s, fd, a):
        raise SystemExit(3)

    table.set_handler("leave", leave)
    with pytest.raises(SystemExit):
        table.dispatch(None, 1, [b"leave"])
    assert table.session(1).pending is None  # the capture ended with it


def test_hello_switches_to_resp3_and_back(table: CommandTable) -> None:
    reply = table.dispatch(None, 4, [b"HELLO", b"3"])
    assert reply.startswith(b"%7\r\n$6\r\nserver\r\n$12\r\nthreadswoole\r\n")
    assert b"$5\r\nproto\r\n:3\r\n" in reply and b"$4\r\nmode\r\n$10\r\nstandalone\r\n" in reply
    assert table.is_resp3(4) and not table.is_resp3(5)
    assert table.format(4, redis.NIL) == b"_\r\n" and table.format(5, redis.NIL) == b"$-1\r\n"
    reply = table.dispatch(None, 4, [b"hello", b"2"])
    assert reply.startswith(b"*14\r\n") and b"$5\r\nproto\r\n:2\r\n" in reply
    assert not table.is_resp3(4)
    assert table.dispatch(None, 4, [b"HELLO"]).startswith(b"*14\r\n")  # no version: stays as it is


@pytest.mark.parametrize(
    "args,reply",
    [
        ([b"HELLO", b"4"], b"-NOPROTO unsupported protocol version\r\n"),
        ([b"HELLO", b"1"], b"-NOPROTO unsupported protocol version\r\n"),
        ([b"HELLO", b"x"], b"-ERR Protocol version is not an integer or out of range\r\n"),
        ([b"HELLO", b"03"], b"-ERR Protocol version is not an integer or out of range\r\n"),
        ([b"HELLO", b"3", b"FOO"], b"-ERR Syntax error in HELLO option 'FOO'\r\n"),
        ([b"HELLO", b"3", b"AUTH", b"user"], b"-ERR Syntax error in HELLO option 'AUTH'\r\n"),
        ([b"HELLO", b"3", b"SETNAME", b"a b"], b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"),
    ],
)
def test_hello_errors(table: CommandTable, args: list[bytes], reply: bytes) -> None:
    assert table.dispatch(None, 1, args) == reply
    assert not table.is_resp3(1)


def test_hello_options(table: CommandTable) -> None:
    reply = table.dispatch(None, 1, [b"HELLO", b"3", b"AUTH", b"default", b"secret", b"SETNAME", b"worker-1"])
    assert reply.startswith(b"%7\r\n") and table.is_resp3(1)
    assert table.session(1).name == b"worker-1"
    first, second = table.session(1).id, table.session(2).id
    assert first != second


def test_an_application_hello_replaces_the_built_in_one(table: CommandTable) -> None:
    def hello(srv, fd, args):
        table.set_resp3(fd, args[:1] == [b"3"])
        return table.format(fd, redis.MAP, {"proto": "custom"})

    table.set_handler("hello", hello)
    assert table.dispatch(None, 2, [b"HELLO", b"3"]) == b"%1\r\n$5\r\nproto\r\n$6\r\ncustom\r\n"
    assert table.is_resp3(2)


def test_parser_and_table_together() -> None:
    # What the lead's dispatcher does per batch: codec events in, one write out.
    table = CommandTable()
    store: dict[bytes, bytes] = {}

    def set_(srv, fd, args):
        store[args[0]] = args[1]
        return redis.format(redis.STATUS)

    table.set_handler("set", set_)
    table.set_handler("get", lambda s, fd, a: redis.format(redis.STRING, store[a[0]]) if a[0] in store else redis.format(redis.NIL))
    codec = RespCodec(batch=True)
    (batch,) = codec.feed(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\nGET k\r\nGET nope\r\nNOPE x\r\n")
    assert table.dispatch_batch(None, 1, batch.commands) == (
        b"+OK\r\n$2\r\nv1\r\n$-1\r\n-ERR unknown command 'NOPE', with args beginning with: 'x' \r\n"
    )


def test_threads_share_a_table_without_mixing_replies() -> None:
    """SWOOLE_THREAD shares one table: sessions come and go on several threads at once, and a
    handler that sends to another connection (running on another thread) never lands in that
    connection's reply: capture only acts for the handler running on the calling thread."""
    import threading

    table = CommandTable()
    outside: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    class Recorder(ServerStandIn):
        def send(self, fd: int, data: bytes) -> bool:
            if self.table.capture(fd, data):
                return True
            with lock:
                outside.append((fd, bytes(data)))
            return True

    server = Recorder(table)

    def poke(srv, fd, args):
        srv.send(fd, b"+mine\r\n")  # captured: this handler's own connection
        srv.send(fd ^ 1, b"+yours\r\n")  # the partner connection, busy on the other thread
        return b"+done\r\n"

    table.set_handler("poke", poke)
    errors: list[BaseException] = []

    def worker(parity: int) -> None:
        try:
            for round_ in range(3000):
                fd = 2 * (round_ % 50) + parity
                assert table.dispatch_batch(server, fd, [[b"POKE"], [b"POKE"]]) == b"+mine\r\n+done\r\n" * 2
                if round_ % 7 == 0:
                    table.forget(fd)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(parity,)) for parity in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(outside) == 2 * 3000 * 2 and {data for _, data in outside} == {b"+yours\r\n"}
    ids = [session.id for session in table.sessions.values()]
    assert len(ids) == len(set(ids))  # session ids stay unique under concurrent creation
