"""Error codes (seed numbering), `strerror`, and the exception classes of contract §4.

Runtime outcomes (a send to a closed session, a full buffer) return ``False`` and record a code
that `get_last_error()` returns; programming errors raise one of the exceptions below.
"""

from __future__ import annotations

import os
from enum import IntEnum


class SwooleError(Exception):
    """Base class of every threadswoole exception; `code` is a Swoole error code or errno."""

    code: int = 0


class ServerError(SwooleError, OSError):
    """A listener could not be created in the constructor; `errno` is the OS errno."""

    def __init__(self, errno_: int, message: str) -> None:
        OSError.__init__(self, errno_, message)
        self.code = errno_


class StateError(SwooleError, RuntimeError):
    """A method was called in the wrong lifecycle phase (before/after `start()`)."""


class ContextError(StateError):
    """A method was called from the wrong kind of process or thread (master, manager, task...)."""


class ConfigError(SwooleError, ValueError):
    """An invalid `set()` value, or an inconsistent configuration found at `start()`."""


class SwooleWarning(UserWarning):
    """Warnings the seeds mention (oversized task package, expired task result...)."""


class UnknownSettingWarning(SwooleWarning):
    """`set()` got a key Swoole does not define; it is stored anyway (Swoole ignores it)."""


class ErrorCode(IntEnum):
    """Swoole error codes; the numbering follows the seeds (1008 buffer full, 1202 too large)."""

    CALLBACK_ERROR = 503  # Swoole's SW_ERROR_PHP_FATAL_ERROR: the user's callback failed
    INVALID_PARAMS = 505
    OPERATION_NOT_SUPPORT = 507
    SESSION_CLOSED_BY_SERVER = 1001
    SESSION_CLOSED_BY_CLIENT = 1002
    SESSION_CLOSING = 1003
    SESSION_CLOSED = 1004
    SESSION_NOT_EXIST = 1005
    SESSION_INVALID_ID = 1006
    SESSION_DISCARD_TIMEOUT_DATA = 1007
    OUTPUT_BUFFER_OVERFLOW = 1008
    PACKAGE_LENGTH_TOO_LARGE = 1201
    DATA_LENGTH_TOO_LARGE = 1202
    TASK_PACKAGE_TOO_BIG = 2001
    TASK_DISPATCH_FAIL = 2002
    TASK_TIMEOUT = 2003
    HTTP_CONFLICT_HEADER = 7105
    HTTP_CONTEXT_UNAVAILABLE = 7106
    WEBSOCKET_BAD_CLIENT = 8501
    WEBSOCKET_BAD_OPCODE = 8502
    WEBSOCKET_UNCONNECTED = 8503
    WEBSOCKET_HANDSHAKE_FAILED = 8504
    SERVER_INVALID_LISTEN_PORT = 9004
    SERVER_NO_IDLE_WORKER = 9007
    SERVER_ONLY_START_ONE = 9008
    SERVER_INVALID_COMMAND = 9012


_MESSAGES = {
    ErrorCode.CALLBACK_ERROR: "The callback raised an exception",
    ErrorCode.INVALID_PARAMS: "Invalid parameters",
    ErrorCode.OPERATION_NOT_SUPPORT: "Operation not supported",
    ErrorCode.SESSION_CLOSED_BY_SERVER: "Session closed by server",
    ErrorCode.SESSION_CLOSED_BY_CLIENT: "Session closed by client",
    ErrorCode.SESSION_CLOSING: "Session is closing",
    ErrorCode.SESSION_CLOSED: "Session closed",
    ErrorCode.SESSION_NOT_EXIST: "Session does not exist",
    ErrorCode.SESSION_INVALID_ID: "Invalid session id",
    ErrorCode.SESSION_DISCARD_TIMEOUT_DATA: "Discarded data of a closed session",
    ErrorCode.OUTPUT_BUFFER_OVERFLOW: "Output buffer overflow (the peer reads too slowly)",
    ErrorCode.PACKAGE_LENGTH_TOO_LARGE: "Package length exceeds package_max_length",
    ErrorCode.DATA_LENGTH_TOO_LARGE: "Data length exceeds buffer_output_size",
    ErrorCode.TASK_PACKAGE_TOO_BIG: "Task package is too big",
    ErrorCode.TASK_DISPATCH_FAIL: "Task dispatch failed",
    ErrorCode.TASK_TIMEOUT: "Task timed out",
    ErrorCode.HTTP_CONFLICT_HEADER: "Conflicting HTTP response headers",
    ErrorCode.HTTP_CONTEXT_UNAVAILABLE: "HTTP response is unavailable (already ended or detached)",
    ErrorCode.WEBSOCKET_BAD_CLIENT: "Not a WebSocket client",
    ErrorCode.WEBSOCKET_BAD_OPCODE: "Bad WebSocket opcode",
    ErrorCode.WEBSOCKET_UNCONNECTED: "WebSocket not connected",
    ErrorCode.WEBSOCKET_HANDSHAKE_FAILED: "WebSocket handshake failed",
    ErrorCode.SERVER_INVALID_LISTEN_PORT: "Invalid listen port",
    ErrorCode.SERVER_NO_IDLE_WORKER: "No idle worker is available",
    ErrorCode.SERVER_ONLY_START_ONE: "The server can only be started once",
    ErrorCode.SERVER_INVALID_COMMAND: "Unknown server command",
}

for _member in ErrorCode:
    globals()[f"SWOOLE_ERROR_{_member.name}"] = int(_member)


def strerror(code: int) -> str:
    """Describe an error code: Swoole codes (>= 500) by name, smaller ones as an OS errno."""
    if code < 500:
        return os.strerror(code)
    try:
        return _MESSAGES[ErrorCode(code)]
    except (ValueError, KeyError):
        return f"Unknown error {code}"


def get_last_error() -> int:
    """Last error code recorded by a failed call in the current worker (thread in THREAD mode)."""
    from threadswoole._context import current

    return current().last_error


__all__ = [
    "SwooleError",
    "ServerError",
    "StateError",
    "ContextError",
    "ConfigError",
    "SwooleWarning",
    "UnknownSettingWarning",
    "ErrorCode",
    "strerror",
    "get_last_error",
] + [f"SWOOLE_ERROR_{m.name}" for m in ErrorCode]
