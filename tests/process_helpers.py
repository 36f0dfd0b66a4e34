"""Fixtures of the Process tests (loaded by conftest.py as a plugin): reaping every child a test starts, a report channel from
children back to the test, and SysV queue keys that are removed (and checked gone) afterwards."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
from typing import Any

import pytest

from threadswoole.process import sysv


class Children:
    """The pids a test started; teardown kills and reaps whichever is still there."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def add(self, pid: Any) -> int:
        assert isinstance(pid, int) and pid > 0, f"start() returned {pid!r}"
        self.pids.append(pid)
        return pid

    def wait_for(self, pid: int) -> dict[str, int]:
        """waitpid on one child (the tests of Process.wait use Process.wait itself)."""
        _pid, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            return {"pid": pid, "code": 0, "signal": os.WTERMSIG(status)}
        return {"pid": pid, "code": os.WEXITSTATUS(status), "signal": 0}

    def cleanup(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


@pytest.fixture
def children() -> Any:
    tracker = Children()
    yield tracker
    tracker.cleanup()


class Reports:
    """A message channel created before the fork: children `send(obj)`, the test `receive()`s."""

    def __init__(self) -> None:
        self.test_end, self.child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def send(self, obj: Any) -> None:
        self.child_end.send(json.dumps(obj).encode())

    def receive(self, timeout: float = 10.0) -> Any:
        self.test_end.settimeout(timeout)
        data = self.test_end.recv(65536)
        assert data, "every child closed the report channel without reporting"
        return json.loads(data)

    def close(self) -> None:
        self.test_end.close()
        self.child_end.close()


@pytest.fixture
def reports() -> Any:
    channel = Reports()
    yield channel
    channel.close()


class QueueKeys:
    """Fresh SysV keys; every queue with one of them is removed at teardown, and must be."""

    def __init__(self) -> None:
        self.keys: list[int] = []

    def new(self) -> int:
        existing = sysv.listed_queues()
        while True:
            key = random.randrange(0x10000000, 0x7FFFFFFF)
            if key not in existing and key not in self.keys:
                self.keys.append(key)
                return key

    def leftovers(self) -> list[int]:
        listed = sysv.listed_queues()
        return [key for key in self.keys if key in listed]

    def cleanup(self) -> list[int]:
        left = self.leftovers()
        for key in left:
            try:
                sysv.MessageQueue(key).remove()
            except OSError:
                pass
        return left


@pytest.fixture
def queue_keys() -> Any:
    keys = QueueKeys()
    yield keys
    left = keys.cleanup()
    assert not left, f"the test left SysV queues behind: {[hex(k) for k in left]}"
    assert not keys.leftovers()
