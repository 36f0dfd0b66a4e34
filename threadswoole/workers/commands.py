"""`add_command` / `command` (contract §5.2, seed 002, Swoole >= 4.8): named callbacks that the
master runs in another process of the server and whose answer it waits for.

`add_command(name, accepted_process_types, callback)` (before start) registers
`callback(server, data)` for a bitmask of process types; `command(name, process_id,
process_type, data, json_decode=True)` (the master only) runs it in exactly one process: the
master itself, the manager, event worker `process_id`, task worker `process_id` (a task-pool
index, as swoole-src counts it) or, in PROCESS mode, reactor thread `process_id`. `data` and
the answer cross as pickled copies (contract R4); a `str` answer is JSON-decoded when
`json_decode` is true (the seed's callback returns `json_encode(...)`).

The request is a T_COMMAND message (session = request id, port = the command's index) to the
target's mailbox; the answer comes back as T_COMMAND_REPLY to the master's own reply mailbox.
`command()` blocks the calling master thread until the answer or COMMAND_TIMEOUT: a target
that has not started yet (on_start runs while workers start) answers once it runs.
Failures return False with the last error set: an unknown name SERVER_INVALID_COMMAND, a type
the command does not accept OPERATION_NOT_SUPPORT, a process id out of range INVALID_PARAMS, a
callback that raised CALLBACK_ERROR (the traceback is logged where it ran), no answer in time
ETIMEDOUT.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import pickle
import select
import time
from typing import Any, Callable

from threadswoole._context import set_error
from threadswoole.constants import ServerCommand
from threadswoole.errors import ErrorCode
from threadswoole.ipc import messages
from threadswoole.workers.roster import COMMAND_REPLIES, RunConfig

log = logging.getLogger("threadswoole")

COMMAND_TIMEOUT = 5.0
MASTER = int(ServerCommand.SWOOLE_SERVER_COMMAND_MASTER)
REACTOR_THREAD = int(ServerCommand.SWOOLE_SERVER_COMMAND_REACTOR_THREAD)
EVENT_WORKER = int(ServerCommand.SWOOLE_SERVER_COMMAND_EVENT_WORKER)
TASK_WORKER = int(ServerCommand.SWOOLE_SERVER_COMMAND_TASK_WORKER)
MANAGER = int(ServerCommand.SWOOLE_SERVER_COMMAND_MANAGER)
ALL_TYPES = MASTER | REACTOR_THREAD | EVENT_WORKER | TASK_WORKER | MANAGER
REPLY_OK, REPLY_FAILED = 0, 1


class CommandTable:
    """The commands of one server, in the order they were added (the index travels)."""

    def __init__(self) -> None:
        self._entries: list[tuple[str, int, Callable[..., Any]]] = []
        self._index: dict[str, int] = {}

    def add(self, name: Any, accepted_process_types: Any, callback: Any) -> bool:
        if not isinstance(name, str):
            raise TypeError(f"the command name must be a str, not {type(name).__name__}")
        if not name:
            raise ValueError("the command name must not be empty")
        if isinstance(accepted_process_types, bool) or not isinstance(accepted_process_types, int):
            raise TypeError("accepted_process_types must be an int (SWOOLE_SERVER_COMMAND_* constants combined with |)")
        if not accepted_process_types or accepted_process_types & ~ALL_TYPES:
            raise ValueError(f"accepted_process_types must combine SWOOLE_SERVER_COMMAND_* constants, got {accepted_process_types}")
        if not callable(callback):
            raise TypeError("the command callback must be callable")
        if name in self._index:
            return set_error(ErrorCode.INVALID_PARAMS)  # seed 002: a second add_command of a name is false
        self._index[name] = len(self._entries)
        self._entries.append((name, accepted_process_types, callback))
        return True

    def find(self, name: str) -> tuple[int, int, Callable[..., Any]] | None:
        index = self._index.get(name)
        if index is None:
            return None
        return index, self._entries[index][1], self._entries[index][2]

    def callback(self, index: int) -> Callable[..., Any] | None:
        return self._entries[index][2] if 0 <= index < len(self._entries) else None

    def __len__(self) -> int:
        return len(self._entries)


def run_command(config: RunConfig, index: int, payload: bytes, runtime: Any = None) -> tuple[int, bytes]:
    """Run command `index` here with its unpickled data: (status, pickled answer)."""
    table = config.commands
    callback = table.callback(index) if table is not None else None
    try:
        if callback is None:
            raise LookupError(f"no command #{index}")
        answer = callback(config.server, pickle.loads(payload))
        return REPLY_OK, pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
    except Exception:
        if runtime is not None:
            runtime.failed("command")
        else:
            log.exception("uncaught exception in a command callback")
        return REPLY_FAILED, b""


def answer_command(config: RunConfig, transport: Any, runtime: Any, request_id: int, index: int, payload: bytes) -> None:
    """A T_COMMAND that reached this process: run it and send the answer to the master."""
    status, answer = run_command(config, index, payload, runtime)
    if not transport.post(COMMAND_REPLIES, messages.T_COMMAND_REPLY, request_id, answer, port=status):
        log.warning("the answer to command request %d could not be sent to the master", request_id)


class MasterCommands:
    """`command()` in the master: where the request goes, and the wait for its answer."""

    def __init__(self, config: RunConfig, driver: Any, transport: Any, reply_inbox: Any) -> None:
        self.config = config
        self.driver = driver  # command_target(process_type, process_id) -> mailbox id, or None
        self.transport = transport
        self._replies = messages.Inbox(reply_inbox, self._on_reply)
        self._answers: dict[int, tuple[int, bytes]] = {}
        self._waiting: int | None = None
        self._ids = itertools.count(1)

    def call(self, name: Any, process_id: Any, process_type: Any, data: Any, json_decode: bool) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"the command name must be a str, not {type(name).__name__}")
        for label, value in (("process_id", process_id), ("process_type", process_type)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{label} must be an int, not {type(value).__name__}")
        if process_type not in (MASTER, REACTOR_THREAD, EVENT_WORKER, TASK_WORKER, MANAGER):
            raise ValueError(f"process_type must be exactly one SWOOLE_SERVER_COMMAND_* constant, got {process_type}")
        table = self.config.commands
        found = table.find(name) if table is not None else None
        if found is None:
            return set_error(ErrorCode.SERVER_INVALID_COMMAND)
        index, accepted, _callback = found
        if not process_type & accepted:
            return set_error(ErrorCode.OPERATION_NOT_SUPPORT)
        try:
            payload = pickle.dumps(data, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(f"command(): the data must be picklable: {exc}") from exc
        target = self.driver.command_target(process_type, process_id)
        if target is False:
            return False  # the driver recorded why (INVALID_PARAMS, OPERATION_NOT_SUPPORT)
        if target is None:  # runs here, in the master's thread
            status, answer = run_command(self.config, index, payload)
            if status != REPLY_OK:
                set_error(ErrorCode.CALLBACK_ERROR)
        else:
            status, answer = self._remote(target, index, payload)
        if status != REPLY_OK:
            return False
        result = pickle.loads(answer)
        if json_decode and isinstance(result, str):
            return json.loads(result)
        return result

    def _remote(self, target: Any, index: int, payload: bytes) -> tuple[int, bytes]:
        request_id = next(self._ids)
        if callable(target):  # PROCESS reactor threads: the driver runs it there
            target(request_id, index, payload)
        elif not self.transport.post(target, messages.T_COMMAND, request_id, payload, port=index):
            return REPLY_FAILED, b""
        self._waiting = request_id
        deadline = time.monotonic() + COMMAND_TIMEOUT
        try:
            while request_id not in self._answers:
                self._replies.on_readable()
                left = deadline - time.monotonic()
                if request_id in self._answers or left <= 0:
                    break
                try:
                    select.select([self._replies.fd], [], [], left)
                except InterruptedError:
                    pass
        finally:
            self._waiting = None
        answer = self._answers.pop(request_id, None)
        if answer is None:
            set_error(errno.ETIMEDOUT)
            return REPLY_FAILED, b""
        if answer[0] != REPLY_OK:
            set_error(ErrorCode.CALLBACK_ERROR)
        return answer

    def _on_reply(self, type_: int, flags: int, port: int, reactor: int, src: int, session: int, payload: bytes) -> None:
        if type_ == messages.T_COMMAND_REPLY and session == self._waiting:
            self._answers[session] = (port, payload)
        # anything else answers a request that timed out: dropped
