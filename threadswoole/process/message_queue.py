"""The SysV message-queue half of `Process` (contract §11): use_queue, push, pop, stat_queue,
free_queue, on process/sysv.py."""

from __future__ import annotations

import errno
import sys
from typing import Any, Literal

from threadswoole.process import sysv
from threadswoole._arguments import as_bytes
from threadswoole._context import set_error
from threadswoole.errors import ContextError, StateError

IPC_NOWAIT = 256  # Swoole's flag (Process.IPC_NOWAIT), mapped onto the kernel's
READ_LIMIT = 65536


def check_size(size: Any, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"{what} must be an int, not {type(size).__name__}")
    if not 1 <= size <= READ_LIMIT:
        raise ValueError(f"{what} must be between 1 and {READ_LIMIT}, got {size}")
    return size


class QueueMethods:
    """Mixed into Process: a queue instead of the pipe (pipe_type must be 0)."""

    pipe_type: int
    id: int | None

    def init_queue(self) -> None:
        self._queue: sysv.MessageQueue | None = None
        self._queue_mode = 2
        self._queue_nowait = False

    # -- SysV message queue ---------------------------------------------------------------
    def use_queue(self, key: int = 0, mode: int = 2) -> bool:
        """Talk through a SysV message queue instead of the pipe; key 0 = ftok(main script, 1).
        Mode 2 = competing consumers, 1 = addressed to this Process's id; `| IPC_NOWAIT` = non-blocking."""
        if self.pipe_type:
            raise ContextError("use_queue(): a message queue cannot be combined with the pipe; create the Process with pipe_type=0")
        for name, value in (("key", key), ("mode", mode)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if mode & ~IPC_NOWAIT not in (1, 2):
            raise ValueError(f"mode must be 1 or 2, optionally | Process.IPC_NOWAIT, got {mode}")
        if not -(1 << 31) <= key < 1 << 31:
            raise ValueError(f"key must fit in 32 bits, got {key}")
        try:
            if key == 0:
                main_file = getattr(sys.modules.get("__main__"), "__file__", None)
                if not main_file:
                    return set_error(errno.ENOENT)
                key = sysv.ftok(main_file, 1)
            queue = sysv.MessageQueue(key)
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)
        self._queue = queue
        self._queue_mode = mode & ~IPC_NOWAIT
        self._queue_nowait = bool(mode & IPC_NOWAIT)
        return True

    def _queue_or_raise(self, what: str) -> sysv.MessageQueue:
        if self._queue is None:
            raise StateError(f"{what}(): call use_queue() first")
        return self._queue

    def push(self, data: Any) -> bool:
        """Queue one message; False when the queue is full in non-blocking mode (EAGAIN) or
        the message is larger than the kernel's msgmax (EINVAL)."""
        queue = self._queue_or_raise("push")
        try:
            queue.send(as_bytes(data), (self.id or 0) + 1, nowait=self._queue_nowait)
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)
        return True

    def pop(self, size: int = 8192) -> bytes | Literal[False]:
        """Take one message of at most `size` bytes; False when empty in non-blocking mode (ENOMSG)."""
        check_size(size, "size")
        queue = self._queue_or_raise("pop")
        message_type = 0 if self._queue_mode == 2 else (self.id or 0) + 1
        try:
            return queue.receive(size, message_type, nowait=self._queue_nowait)
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)

    def stat_queue(self) -> dict[str, int] | Literal[False]:
        """{'queue_num': messages queued, 'queue_bytes': their total size}."""
        queue = self._queue_or_raise("stat_queue")
        try:
            count, size = queue.stat()
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)
        return {"queue_num": count, "queue_bytes": size}

    def free_queue(self) -> bool:
        """Remove the queue and its messages (otherwise it outlives every process)."""
        queue = self._queue_or_raise("free_queue")
        self._queue = None
        try:
            queue.remove()
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)
        return True

