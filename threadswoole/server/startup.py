"""What `start()` checks and prepares before any mode runs: required callbacks, consistent
settings, the effective setting values (contract R8), and the mode's driver."""

from __future__ import annotations

import os
import types
from typing import Any

from threadswoole.constants import SWOOLE_BASE, SWOOLE_PROCESS, SWOOLE_THREAD
from threadswoole.errors import ConfigError, StateError
from threadswoole.server import protocols
from threadswoole.server import settings as schema
from threadswoole.workers.roster import Roster, RunConfig


def check_callbacks(ports: list[Any], settings: dict[str, Any], callbacks: Any) -> None:
    """Contract §5.4: a stream listener needs `receive`, a datagram listener `packet`."""
    for port in ports:
        if port.is_stream:
            needed = protocols.REQUIRED_CALLBACK[protocols.name_for(port.effective_settings())]
            if needed is not None and port.callback(needed) is None:
                raise StateError(f"listener {port.host}:{port.port} needs a {needed!r} callback: server.on({needed!r}, fn)")
        elif port.callback("packet") is None:
            raise StateError(f"datagram listener {port.host}:{port.port} needs a 'packet' callback: server.on('packet', fn)")
    if settings.get("task_worker_num", 0) > 0:
        for name in ("task", "finish"):
            if callbacks.lookup(name) is None:
                raise StateError(f"task_worker_num > 0 needs both 'task' and 'finish' callbacks (missing {name!r})")


def check_settings(ports: list[Any], settings: dict[str, Any]) -> None:
    for port in ports:
        effective = port.effective_settings()
        for key in schema.UNSUPPORTED_PROTOCOLS:
            if effective.get(key):
                raise NotImplementedError(f"{key}: the WebSocket server is not wired in yet")
        if port.ssl:
            for key in ("ssl_cert_file", "ssl_key_file"):
                path = effective.get(key)
                if not path:
                    raise ConfigError(f"listener {port.host}:{port.port} uses SWOOLE_SSL: set {key!r}")
                if not os.path.isfile(path):
                    raise ConfigError(f"{key} {path!r} does not exist")
    tmpdir = settings.get("task_tmpdir")
    if settings.get("task_worker_num", 0) > 0 and tmpdir is not None and not os.path.isdir(tmpdir):
        raise ConfigError(f"task_tmpdir {tmpdir!r} is not a directory")
    low, high = settings.get("buffer_low_watermark", 0), settings.get("buffer_high_watermark", 0)
    if high and low > high:
        raise ConfigError("buffer_low_watermark must not exceed buffer_high_watermark")


def complete_settings(settings: dict[str, Any], mode: int) -> None:
    """Fill in the effective values that callbacks read from `server.setting`."""
    for key in ("worker_num", "task_worker_num", "reactor_num", "dispatch_mode", "task_ipc_mode", "buffer_output_size", "package_max_length", "max_wait_time", "socket_buffer_size", "max_request"):
        settings.setdefault(key, schema.default(key))
    settings.setdefault("max_connection", schema.default_max_connection())
    if mode == SWOOLE_THREAD:
        settings["reactor_num"] = settings["worker_num"]


def make_driver(server: Any, settings: dict[str, Any], callbacks: Any, *, processes: list[Any] | None = None, commands: Any = None) -> Any:
    """Validate everything, complete the settings (the Server's own dict, so `server.setting`
    shows the effective values) and build the mode's driver; nothing runs on failure."""
    ports = server.ports
    check_callbacks(ports, settings, callbacks)
    check_settings(ports, settings)
    complete_settings(settings, server.mode)
    for port in ports:
        port.prepare()
    processes = list(processes or [])
    roster = Roster(settings["worker_num"], settings["task_worker_num"], len(processes), reactor_num=settings["reactor_num"] if server.mode == SWOOLE_PROCESS else 0, shared_task_queue=settings["task_ipc_mode"] == 3)
    config = RunConfig(server=server, settings=types.MappingProxyType(settings), callbacks=callbacks, ports=ports, roster=roster, processes=processes, commands=commands)
    if server.mode == SWOOLE_BASE:
        from threadswoole.modes.base import BaseDriver

        return BaseDriver(config)
    if server.mode == SWOOLE_PROCESS:
        from threadswoole.modes.process import ProcessDriver

        return ProcessDriver(config)
    if server.mode == SWOOLE_THREAD:
        from threadswoole.modes.thread import ThreadDriver

        return ThreadDriver(config)
    raise ValueError(f"unknown mode {server.mode}")
