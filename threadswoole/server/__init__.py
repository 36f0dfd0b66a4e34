"""`threadswoole.Server`: Swoole's server API (contract §5) over three run modes.

The class checks arguments and lifecycle phases, then hands every running-only call to the
calling worker's *router* (thread-local, contract R5): the router knows whether the session
lives in this thread, another thread, or another process, and what the mode does about it.
"""

from __future__ import annotations

import os
import threading
import types
from typing import Any, Callable, Mapping

from threadswoole._aliases import alias
from threadswoole._context import ROLE_MANAGER, ROLE_NONE, current, server_created, server_started
from threadswoole._context import _sender
from threadswoole.constants import SWOOLE_BASE, SWOOLE_SOCK_TCP, Mode
from threadswoole.errors import ContextError, StateError
from threadswoole.server import settings as schema
from threadswoole._arguments import as_bytes, check_session
from threadswoole.server.connection_iterator import ConnectionIterator
from threadswoole.server.events import CallbackTable
from threadswoole.server.port import Port
from threadswoole.state.shared import STAMP_RESOLUTION
from threadswoole.timer import alarm_armed
from threadswoole.workers.commands import CommandTable

INIT, RUNNING, SHUTDOWN = "init", "running", "shutdown"


class Server:
    """An event-driven TCP/UDP/Unix server; see the README for the per-mode examples."""

    def __init__(self, host: str = "0.0.0.0", port: int = 0, mode: int = SWOOLE_BASE, sock_type: int = SWOOLE_SOCK_TCP) -> None:
        if isinstance(mode, bool) or not isinstance(mode, int):
            raise TypeError(f"mode must be an int, not {type(mode).__name__}")
        try:
            self.mode = Mode(mode)
        except ValueError:
            raise ValueError(f"unknown mode {mode}: use SWOOLE_BASE, SWOOLE_PROCESS or SWOOLE_THREAD") from None
        self.host = host
        self.sock_type = sock_type
        self._phase = INIT
        self._phase_lock = threading.Lock()
        self._settings: dict[str, Any] = {}
        self._callbacks = CallbackTable()
        self._processes: list[Any] = []  # add_process
        self._commands = CommandTable()  # add_command
        self.ports: list[Port] = []
        self.ports.append(self._new_port(host, port, sock_type))
        self.port = self.ports[0].port
        self._driver: Any = None
        self.master_pid = 0
        self.manager_pid = 0
        server_created(self)  # until start(): no Client may be made in this process (§12)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.mode.name} {self.host}:{self.port} {self._phase}>"

    # -- phases ---------------------------------------------------------------------------
    def _require_init(self, what: str) -> None:
        if self._phase != INIT:
            raise StateError(f"{what}() is only allowed before start()")

    def _require_running(self, what: str) -> None:
        if self._phase != RUNNING:
            raise StateError(f"{what}() is only allowed while the server runs (inside callbacks)")

    def _router(self, what: str) -> Any:
        if self._phase != RUNNING:
            raise StateError(f"{what}() is only allowed while the server runs (inside callbacks)")
        router = current().router
        if router is None:
            return self._master_router()
        return router

    def _master_router(self) -> Any:
        if self._driver is None:
            raise StateError("the server is not running")
        return self._driver.outside_router()

    # -- configuration (before start) -----------------------------------------------------
    def set(self, settings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Merge settings (contract R8); init-only."""
        self._require_init("set")
        values = schema.validate(settings, kwargs)
        if "dispatch_func" in values and self.mode == SWOOLE_BASE:
            from threadswoole.errors import ConfigError

            raise ConfigError("dispatch_func only applies in SWOOLE_PROCESS and SWOOLE_THREAD modes")
        self._settings.update(values)

    @property
    def setting(self) -> Mapping[str, Any]:
        return types.MappingProxyType(self._settings)

    def on(self, event: str, callback: Callable[..., Any] | None = None) -> Any:
        """Register a callback (replacing any earlier one); without `callback`, a decorator."""
        self._require_init("on")
        if callback is None:

            def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
                self._on(event, fn)
                return fn

            return decorator
        self._on(event, callback)
        return True

    def _on(self, event: str, callback: Callable[..., Any]) -> None:
        self._callbacks.register(event, callback)

    def get_callback(self, event: str) -> Callable[..., Any] | None:
        return self._callbacks.get(event)

    def add_listener(self, host: str, port: int, sock_type: int = SWOOLE_SOCK_TCP) -> Port | bool:
        """Listen on one more address; returns the Port, or False with the errno as last error."""
        self._require_init("add_listener")
        from threadswoole._context import set_error
        from threadswoole.errors import ServerError

        try:
            listener = self._new_port(host, port, sock_type)
        except ServerError as exc:
            return set_error(exc.errno)
        self.ports.append(listener)
        return listener

    def add_process(self, process: Any) -> int:
        """Add a user process (contract §11): started by the manager, restarted when its callback
        returns; returns its index (0, 1, ...), also set as `process.id`."""
        self._require_init("add_process")
        from threadswoole.process import Process

        if not isinstance(process, Process):
            raise TypeError(f"add_process() takes a threadswoole.Process, not {type(process).__name__}")
        if any(p is process for p in self._processes):
            raise ValueError("this Process was already added")
        if process.pid is not None:
            raise ValueError("add_process(): the Process was started already; the server starts it")
        process.id = len(self._processes)
        self._processes.append(process)
        return process.id

    def add_command(self, name: str, accepted_process_types: int, callback: Callable[..., Any]) -> bool:
        """Register `callback(server, data)` for `command()` (seed 002); False if `name` exists."""
        self._require_init("add_command")
        return self._commands.add(name, accepted_process_types, callback)

    def inherited_port_settings(self) -> dict[str, Any]:
        """The per-listener settings an added port starts with (contract §5.8): none for a
        plain Server; the protocol servers pass their protocol and its settings on."""
        return {}

    def _new_port(self, host: str, port: int, sock_type: int) -> Port:
        return Port(self, host, port, sock_type, len(self.ports), require_init=self._require_init, server_callbacks=self._callbacks)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> bool:
        """Run the server; blocks until it shuts down, then returns True."""
        with self._phase_lock:
            if self._phase != INIT:
                raise StateError("start() was already called: a server starts once")
            from threadswoole.server.startup import make_driver

            driver = make_driver(self, self._settings, self._callbacks, processes=self._processes, commands=self._commands)  # validates; raises before the phase changes
            self._phase = RUNNING
            self._driver = driver
            server_started(self)
        try:
            return driver.run()
        except OSError as exc:
            # A late start failure (no shared memory, fork refused, ...): contract §5.2 says
            # start() returns False with the error recorded. The driver cleaned up already.
            import logging

            from threadswoole._context import set_error

            logging.getLogger("threadswoole").error("the server could not run: %s", exc)
            return set_error(exc.errno or 1)
        finally:
            self._phase = SHUTDOWN

    def reload(self, only_reload_taskworker: bool = False) -> bool:
        return self._router("reload").reload(bool(only_reload_taskworker))

    def stop(self, worker_id: int = -1, wait_event: bool = False) -> bool:
        return self._router("stop").stop(worker_id, bool(wait_event))

    def shutdown(self) -> bool:
        return self._router("shutdown").shutdown()

    # -- timers (the calling worker's loop) ----------------------------------------------
    def _loop(self, what: str) -> Any:
        self._require_running(what)
        ctx = current()
        if ctx.role == ROLE_MANAGER:
            raise ContextError(f"{what}(): timers are not allowed in the manager")
        if ctx.loop is None:
            raise ContextError(f"{what}(): this thread has no event loop")
        return ctx.loop

    def tick(self, ms: int, callback: Callable[..., Any], *args: Any) -> int:
        _check_ms(ms)
        _check_no_alarm("tick")
        return self._loop("tick").user_tick(ms, callback, *args)

    def after(self, ms: int, callback: Callable[..., Any], *args: Any) -> int:
        _check_ms(ms)
        _check_no_alarm("after")
        return self._loop("after").user_after(ms, callback, *args)

    def clear_timer(self, timer_id: int) -> bool:
        return self._loop("clear_timer").user_clear(timer_id)

    def defer(self, callback: Callable[[], Any]) -> None:
        if not callable(callback):
            raise TypeError("defer() needs a callable")
        self._loop("defer").defer(callback)

    # -- connections ----------------------------------------------------------------------
    def send(self, fd: int | str, data: Any, server_socket: int = -1) -> bool:
        # Hot path: a worker's send path exists only while the server runs (the phase check).
        # The common case is written in this frame, as Host.make_send_function's closure
        # writes it (see there); `slow` checks and converts the arguments (send_checked).
        try:
            conns_get, write, count, words, reactor, limit, slow, queue_rest = _sender.send  # (_context.SendPath)
        except AttributeError:
            return self._router("send").send_checked(fd, data, server_socket)
        conn = conns_get(fd)
        if conn is None or conn.out or conn.closing or conn.tls is not None or (size := len(data)) > limit or (conn.session_id is not fd and type(fd) is not int):
            return slow(fd, data, server_socket)  # (TLS writes go through OpenSSL)
        try:
            sent = write(conn.fd, data)  # bytes-like only: a str raises TypeError
        except (OSError, TypeError):
            return slow(fd, data, server_socket)  # blocked, broke, or not bytes: the full path says
        count(sent)  # counted by StatCounters.settle
        clock = reactor.clock
        if clock >= conn.send_due:  # stamped once per STAMP_RESOLUTION (state/shared.py)
            words[conn.send_word] = clock
            conn.send_due = clock + STAMP_RESOLUTION
        if sent < size:
            queue_rest(conn, data, sent)
        return True

    def sendfile(self, fd: int, filename: str | os.PathLike, offset: int = 0, length: int = 0) -> bool:
        return self._router("sendfile").sendfile(check_session(fd), os.fspath(filename), int(offset), int(length))

    def sendto(self, ip: str, port: int, data: Any, server_socket: int = -1) -> bool:
        return self._router("sendto").sendto(ip, port, as_bytes(data), server_socket)

    def send_wait(self, fd: int, data: Any) -> bool:
        if self.mode != SWOOLE_BASE:
            raise ContextError("send_wait() is only available in SWOOLE_BASE mode")
        return self._router("send_wait").send_wait(check_session(fd), as_bytes(data))

    def close(self, fd: int | str, reset: bool = False) -> bool:
        return self._router("close").close(check_session(fd), bool(reset))

    def exist(self, fd: int) -> bool:
        return self._router("exist").exist(check_session(fd))

    def pause(self, fd: int) -> bool:
        return self._router("pause").pause(check_session(fd), True)

    def resume(self, fd: int) -> bool:
        return self._router("resume").pause(check_session(fd), False)

    def protect(self, fd: int, is_protected: bool = True) -> bool:
        return self._router("protect").protect(check_session(fd), bool(is_protected))

    def confirm(self, fd: int) -> bool:
        return self._router("confirm").confirm(check_session(fd))

    def bind(self, fd: int, uid: int) -> bool:
        if isinstance(uid, bool) or not isinstance(uid, int):
            raise TypeError("uid must be an int")
        if uid == 0 or not -(2**31) <= uid <= 2**32 - 1:
            raise ValueError("uid must be non-zero and within [-2**31, 2**32 - 1]")
        return self._router("bind").bind(check_session(fd), uid)

    def get_client_info(self, fd: int, reactor_id: int = -1, ignore_error: bool = False) -> dict[str, Any] | bool:
        return self._router("get_client_info").client_info(check_session(fd), bool(ignore_error))

    def get_client_list(self, start_fd: int = 0, page_size: int = 10) -> list[int] | bool:
        if isinstance(page_size, bool) or not isinstance(page_size, int):
            raise TypeError("page_size must be an int")
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be in 1..100")
        sessions = self._router("get_client_list").client_list(None)
        return [s for s in sessions if s > start_fd][:page_size]

    @property
    def connections(self) -> ConnectionIterator:
        return ConnectionIterator(self)

    def heartbeat(self, if_close_connection: bool = True) -> list[int] | bool:
        return self._router("heartbeat").heartbeat(bool(if_close_connection))

    def stats(self) -> dict[str, int]:
        return self._router("stats").stats()

    def send_message(self, message: Any, worker_id: int) -> bool:
        return self._router("send_message").send_message(message, worker_id)

    # -- tasks ----------------------------------------------------------------------------
    def task(self, data: Any, dst_worker_id: int = -1, finish_callback: Callable[..., Any] | None = None) -> int | bool:
        return self._router("task").task(data, dst_worker_id, finish_callback)

    def task_wait(self, data: Any, timeout: float = 0.5, dst_worker_id: int = -1) -> Any:
        return self._router("task_wait").task_wait(data, timeout, dst_worker_id)

    def task_wait_multi(self, tasks: Any, timeout: float = 0.5) -> Any:
        return self._router("task_wait_multi").task_wait_multi(list(tasks), timeout)

    def task_co(self, tasks: Any, timeout: float = 0.5) -> Any:
        return self._router("task_co").task_co(list(tasks), timeout)

    def finish(self, data: Any) -> bool:
        return self._router("finish").finish(data)

    # -- workers and processes ------------------------------------------------------------
    def get_last_error(self) -> int:
        return current().last_error

    def get_socket(self) -> Any:
        return self.ports[0].get_socket()

    @property
    def worker_id(self) -> int:
        return current().worker_id

    @property
    def worker_pid(self) -> int:
        return current().worker_pid

    @property
    def worker_tid(self) -> int | None:
        return current().worker_tid

    @property
    def task_worker(self) -> bool:
        from threadswoole._context import ROLE_TASK

        return current().role == ROLE_TASK

    def get_worker_id(self) -> int | bool:
        """The calling event or task worker's id; False elsewhere (a user process included, §5.2)."""
        ctx = current()
        from threadswoole._context import ROLE_USER

        return ctx.worker_id if ctx.worker_id >= 0 and ctx.role != ROLE_USER else False

    def get_worker_pid(self, worker_id: int = -1) -> int | bool:
        return self._router("get_worker_pid").worker_pid(worker_id)

    def get_worker_status(self, worker_id: int = -1) -> int | bool:
        return self._router("get_worker_status").worker_status(worker_id)

    def get_manager_pid(self) -> int:
        return self.manager_pid

    def get_master_pid(self) -> int:
        return self.master_pid

    def command(self, name: str, process_id: int, process_type: int, data: Any, json_decode: bool = True) -> Any:
        """Run command `name` in one process (master only) and return its answer (seed 002)."""
        return self._router("command").command(name, process_id, process_type, data, bool(json_decode))

    # -- Swoole spellings (contract §15) --------------------------------------------------
    addListener = alias("add_listener")
    addlistener = alias("add_listener")
    listen = alias("add_listener")
    addProcess = alias("add_process")
    addCommand = alias("add_command")
    getCallback = alias("get_callback")
    clearTimer = alias("clear_timer")
    sendwait = alias("send_wait")
    sendMessage = alias("send_message")
    getClientInfo = alias("get_client_info")
    connection_info = alias("get_client_info")
    getClientList = alias("get_client_list")
    connection_list = alias("get_client_list")
    taskwait = alias("task_wait")
    taskWaitMulti = alias("task_wait_multi")
    taskCo = alias("task_co")
    getLastError = alias("get_last_error")
    getSocket = alias("get_socket")
    getWorkerId = alias("get_worker_id")
    getWorkerPid = alias("get_worker_pid")
    getWorkerStatus = alias("get_worker_status")
    getManagerPid = alias("get_manager_pid")
    getMasterPid = alias("get_master_pid")
    taskworker = alias("task_worker")


def _check_no_alarm(what: str) -> None:
    """Contract §6: Process.alarm() and timers exclude each other."""
    if alarm_armed():
        raise ContextError(f"{what}(): Process.alarm() is armed in this process; timers and alarm cannot be combined")


def _check_ms(ms: Any) -> None:
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"ms must be an int, not {type(ms).__name__}")
    if ms < 1:
        raise ValueError(f"ms must be >= 1, got {ms}")


__all__ = ["Server", "Port", "ROLE_NONE"]
