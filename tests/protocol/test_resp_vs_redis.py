"""The RESP parser and the unknown-command reply against a real redis-server (skipped without one).

The corpus says what Redis answers; this checks it against Redis itself: every invalid case
(except those whose `redis_differs` explains a deliberate difference) must get the same error
reply, and every valid case the same number of replies as the parser finds commands.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from threadswoole.protocol.resp import RespCodec
from threadswoole.redis import unknown_command

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")]

CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "corpus", "resp")


@pytest.fixture(scope="module")
def redis_socket(tmp_path_factory):
    """A throw-away redis-server on a Unix socket, with the parser's default bulk limit (2 MiB)."""
    directory = tmp_path_factory.mktemp("redis")
    path = str(directory / "redis.sock")
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no",
         "--proto-max-bulk-len", str(2 * 1024 * 1024), "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                probe = socket.socket(socket.AF_UNIX)
                probe.connect(path)
                probe.close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("redis-server did not start") from None
                time.sleep(0.02)
        yield path
    finally:
        proc.terminate()
        proc.wait(10)


def talk(path: str, data: bytes, timeout: float = 5.0) -> bytes:
    """Send `data`, read until Redis closes the connection."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    sock.connect(path)
    try:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        sock.close()


def count_replies(data: bytes) -> int:
    """How many top-level RESP2 replies `data` holds."""
    pos = 0

    def one() -> None:
        nonlocal pos
        end = data.index(b"\r\n", pos)
        kind, value = data[pos : pos + 1], data[pos + 1 : end]
        pos = end + 2
        if kind == b"$" and int(value) >= 0:
            pos += int(value) + 2
        elif kind == b"*":
            for _ in range(max(0, int(value))):
                one()

    replies = 0
    while pos < len(data):
        one()
        replies += 1
    return replies


def _case(path: str) -> tuple[bytes, dict]:
    with open(path, "rb") as f:
        data = f.read()
    with open(path[:-5] + ".json") as f:
        return data, json.load(f)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CORPUS, "invalid", "*.resp"))), ids=os.path.basename)
def test_invalid_case_gets_the_reply_redis_gives(redis_socket: str, path: str) -> None:
    data, case = _case(path)
    if "redis_differs" in case:
        pytest.skip(case["redis_differs"])
    answer = talk(redis_socket, data)
    assert answer.endswith(case["response"].encode("latin-1") + b"\r\n"), answer[-200:]
    assert count_replies(answer) == len(case["commands"]) + 1


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CORPUS, "valid", "*.resp"))), ids=os.path.basename)
def test_valid_case_gets_one_redis_reply_per_parsed_command(redis_socket: str, path: str) -> None:
    data, case = _case(path)
    if case["buffered"]:
        pytest.skip("ends with an unfinished command")
    commands = RespCodec().feed(data)
    answer = talk(redis_socket, data + b"*1\r\n$4\r\nQUIT\r\n")
    assert count_replies(answer) == len(commands) + 1
    assert answer.endswith(b"+OK\r\n")


@pytest.mark.parametrize(
    "args",
    [
        [b"foo"],
        [b"foo", b"a", b"b"],
        [b"NOPE", b"x" * 300],
        [b"nope", *[b"arg%d" % i for i in range(60)]],
        [b"bad\r\nname", b"a\nb"],
        [b"y" * 200, b"z"],
    ],
)
def test_unknown_command_reply_is_redis_own(redis_socket: str, args: list[bytes]) -> None:
    wire = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    answer = talk(redis_socket, wire + b"*1\r\n$4\r\nQUIT\r\n")
    assert answer == unknown_command(args) + b"+OK\r\n"
