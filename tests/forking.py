"""Forked helper processes for the shared-memory tests: run a function in a child, wait for it by PID.

The child inherits every Table/Atomic/Lock the test made before the fork (that is the feature
under test), reports failures by exit code (1: an assertion or error, traceback on stderr), and
never runs the parent's cleanup (os._exit). A child still running at the end is killed by PID.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Any, Callable


class Children:
    """The children one test forked; `close()` kills any that is left."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def fork(self, function: Callable[..., Any], *args: Any) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                function(*args)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)
        self.pids.append(pid)
        return pid

    def wait(self, pid: int, timeout: float = 30.0) -> int:
        """The child's exit code (negative: killed by that signal)."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids.remove(pid)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                raise AssertionError(f"child {pid} still running after {timeout}s")
            time.sleep(0.005)

    def wait_all_ok(self, timeout: float = 30.0) -> None:
        for pid in list(self.pids):
            assert self.wait(pid, timeout) == 0, f"child {pid} failed (see its traceback above)"

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        assert self.wait(pid) == -signal.SIGKILL

    def close(self) -> None:
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pids.clear()


class Pipe:
    """A one-way byte pipe from children to the test: `signal()` in the child, `wait()` here."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()

    def signal(self, byte: bytes = b".") -> None:
        os.write(self.write_fd, byte)

    def wait(self, count: int = 1, timeout: float = 10.0) -> bytes:
        import select

        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.read_fd], [], [], remaining)[0]:
                raise AssertionError(f"only {len(got)} of {count} signals from the children within {timeout}s")
            got += os.read(self.read_fd, count - len(got))
        return got

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)
