"""What every mode driver does the same way: start-up and clean-up around the mode's own topology."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, Callable

from threadswoole import _context, _segments
from threadswoole.errors import ContextError
from threadswoole.server import _shm, _startup
from threadswoole.server._router import Router
from threadswoole.server._state import SharedState

log = logging.getLogger("threadswoole")

MANAGER = -1  # mailbox id of the manager


class OutsideRouter(Router):
    """Calls made from the master thread (on_start, on_shutdown) or the manager."""

    @property
    def role_name(self) -> str:  # type: ignore[override]
        return f"the {_context.current().role}"


class DriverBase:
    """Start-up (stale segments, daemonize, logging, pid file) and clean-up shared by all modes."""

    def __init__(self, server: Any) -> None:
        self.server = server
        setting = server.setting
        self.worker_num: int = setting["worker_num"]
        self.task_num: int = setting.get("task_worker_num", 0)
        self.state: SharedState | None = None
        self._outside: OutsideRouter | None = None
        self._saved_signals: dict[int, Any] = {}

    # -- start and finish -----------------------------------------------------------------
    def begin(self) -> None:
        settings = self.server._settings
        if settings.get("daemonize"):
            _startup.daemonize(settings.get("log_file"))
        _startup.configure_logging(settings)
        removed = _shm.sweep_stale()
        if removed:
            log.info("removed %d shared-memory segments left by a server that died: %s", len(removed), ", ".join(removed))
        self.server.master_pid = os.getpid()
        _startup.write_pid_file(settings.get("pid_file"))
        listening = ", ".join(f"{p.host}:{p.port}" if p.port else p.host for p in self.server.ports)
        log.info("%s server starting on %s: %d worker(s), master pid %d", self.server.mode.name, listening, self.worker_num, os.getpid())

    def create_state(self, *, stat_slots: int, worker_slots: int, acceptors: int, capacity: int) -> SharedState:
        self.state = SharedState(stat_slots=stat_slots, worker_slots=worker_slots, acceptors=acceptors, capacity=capacity)
        self.state.q[2] = os.getpid()  # H_MASTER_PID
        return self.state

    def finish(self) -> None:
        """Last steps, in Swoole's order: listeners closed, then on_shutdown, then the rest."""
        for port in self.server.ports:
            port.close()
        self.bind_master_context(None)
        self.fire("shutdown")
        log.info("server stopped (master pid %d)", os.getpid())
        self.restore_signals()
        _startup.remove_pid_file(self.server._settings.get("pid_file"))
        _segments.release_segments()  # the Table/Atomic/Lock segments made before start()
        if self.state is not None:
            self.state.destroy()
        _startup.remove_logging()
        _context.current().reset()

    # -- contexts and callbacks -----------------------------------------------------------
    def bind_master_context(self, loop: Any) -> None:
        ctx = _context.current()
        ctx.server = self.server
        ctx.role = _context.ROLE_MASTER
        ctx.worker_id = -1
        ctx.worker_pid = os.getpid()
        ctx.loop = loop
        ctx.router = None

    def outside_router(self) -> Router:
        if self._outside is None:
            if self.state is None:
                raise ContextError("the server is not running yet")
            self._outside = OutsideRouter(self.server, self.state, self)
        return self._outside

    def fire(self, name: str, *args: Any) -> None:
        callback = self.server._callbacks.lookup(name)
        if callback is None:
            return
        try:
            callback(self.server, *args)
        except Exception:
            log.exception("uncaught exception in the %r callback", name)

    # -- signals (main thread only; handlers only post to a loop) -------------------------
    def install_signals(self, handlers: dict[int, Callable[[], Any]], post: Callable[..., Any]) -> None:
        for signo, method in handlers.items():
            previous = signal.signal(signo, lambda _signo, _frame, method=method: post(method))
            self._saved_signals.setdefault(signo, previous)

    def restore_signals(self) -> None:
        for signo, previous in self._saved_signals.items():
            try:
                signal.signal(signo, previous if previous is not None else signal.SIG_DFL)
            except (ValueError, TypeError):
                pass
        self._saved_signals.clear()

    # -- settings read by workers ---------------------------------------------------------
    def default_idle_time(self) -> float:
        settings = self.server._settings
        return float(settings.get("heartbeat_idle_time") or settings.get("heartbeat_check_interval") or 0)

    def capacity(self) -> int:
        return int(self.server.setting["max_connection"])


def child_signals(on_term: Callable[[], Any]) -> None:
    """In a forked worker: SIGTERM stops it gracefully, the master's signals are ignored."""
    signal.signal(signal.SIGTERM, lambda _s, _f: on_term())
    for signo in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signo, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD})


WATCH_PARENT_MS = 1000


def watch_parent(reactor: Any, on_orphaned: Callable[[], Any]) -> None:
    """In a forked child: stop when the parent (manager or master) is gone.

    A child outliving its parent would keep a listening socket or a mailbox open forever.
    The kernel's parent-death signal (prctl PR_SET_PDEATHSIG, through ctypes) sends us
    SIGTERM at once; a one-second getppid() check covers platforms without it and the
    parent dying before the prctl call.
    """
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    fired = []

    def check(_timer_id: int) -> None:
        if os.getppid() != parent and not fired:
            fired.append(True)
            log.warning("pid %d: the parent process %d is gone; stopping", os.getpid(), parent)
            on_orphaned()

    reactor.internal_tick(WATCH_PARENT_MS, check)


def drop_privileges(settings: dict[str, Any]) -> None:
    """user / group / chroot for worker processes; effective only when started as root."""
    if os.geteuid() != 0:
        return
    chroot = settings.get("chroot")
    group = settings.get("group")
    user = settings.get("user")
    if chroot:
        os.chroot(chroot)
        os.chdir("/")
    if group:
        import grp

        os.setgid(grp.getgrnam(group).gr_gid)
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        if not group:
            os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
