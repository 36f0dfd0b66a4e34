"""threadswoole: Swoole's event-driven server model (BASE, PROCESS and THREAD modes) in pure Python.

    from threadswoole import Server, SWOOLE_BASE

    server = Server("127.0.0.1", 9501, SWOOLE_BASE)
    server.on("receive", lambda srv, fd, reactor_id, data: srv.send(fd, data))
    server.start()
"""

from __future__ import annotations

import os as _os

from threadswoole.constants import *  # noqa: F401,F403 - Swoole's constants, by their Swoole names
from threadswoole.constants import __all__ as _constant_names
from threadswoole.errors import (
    ConfigError,
    ContextError,
    ErrorCode,
    ServerError,
    StateError,
    SwooleError,
    SwooleWarning,
    UnknownSettingWarning,
    get_last_error,
    strerror,
)
from threadswoole.errors import __all__ as _error_names
from threadswoole import errors as _errors

globals().update({name: getattr(_errors, name) for name in _error_names if name.startswith("SWOOLE_ERROR_")})
from threadswoole.server import Port, Server
from threadswoole.timer import Event, Timer
from threadswoole.process import Process, set_process_name
from threadswoole.client import Client
from threadswoole.sharing import Atomic, Lock, Table

__version__ = "0.1.0"


def cpu_num() -> int:
    """Number of CPUs (swoole_cpu_num)."""
    return _os.cpu_count() or 1


__all__ = [
    "Server",
    "Port",
    "Client",
    "Timer",
    "Event",
    "Process",
    "Table",
    "Atomic",
    "Lock",
    "cpu_num",
    "set_process_name",
    *_constant_names,
    *_error_names,
]
