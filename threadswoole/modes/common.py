"""What every mode driver does the same way: start-up and clean-up around the mode's own topology."""

from __future__ import annotations

import logging
import os
import signal
from typing import Any, Callable

from threadswoole import _context
from threadswoole.state import user_segments
from threadswoole.ipc import messages
from threadswoole.modes import process_setup
from threadswoole.modes.task_wiring import TaskWiring
from threadswoole.state import shm
from threadswoole.state import shared as layout
from threadswoole.state.shared import SharedState
from threadswoole.workers.roster import MANAGER, RunConfig
from threadswoole.workers.task_payload import sweep_spilled

log = logging.getLogger("threadswoole")
STOP_RETRY_MS = 20  # how often a stop that found its worker's mailbox full is tried again


class DriverBase(TaskWiring):
    """Start-up (stale segments, daemonize, logging, pid file) and clean-up shared by all modes."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.server = config.server
        self.settings = config.settings
        self.roster = config.roster
        self.worker_num: int = config.roster.event_num
        self.task_num: int = config.roster.task_num
        self.state: SharedState | None = None
        self._saved_signals: dict[int, Any] = {}
        self.init_task_wiring()

    # -- start and finish -----------------------------------------------------------------
    def begin(self) -> None:
        settings = self.settings
        if settings.get("daemonize"):
            process_setup.daemonize(settings.get("log_file"))
        process_setup.configure_logging(settings)
        removed = shm.sweep_stale()
        if removed:
            log.info("removed %d shared-memory segments left by a server that died: %s", len(removed), ", ".join(removed))
        self.server.master_pid = os.getpid()
        process_setup.write_pid_file(settings.get("pid_file"))
        listening = ", ".join(f"{p.host}:{p.port}" if p.port else p.host for p in self.config.ports)
        log.info("%s server starting on %s: %d worker(s), master pid %d", self.server.mode.name, listening, self.worker_num, os.getpid())

    def create_state(self, *, acceptors: int, capacity: int) -> SharedState:
        """The shared segment, sized from the roster (worker and stats slots) and the mode."""
        roster = self.roster
        self.state = SharedState(stat_slots=roster.stat_slots, worker_slots=roster.total, acceptors=acceptors, capacity=capacity)
        self.state.q[layout.H_MASTER_PID] = os.getpid()
        return self.state

    def finish(self) -> None:
        """Last steps, in Swoole's order: listeners closed, then on_shutdown, then the rest."""
        for port in self.config.ports:
            port.close()
        self.bind_master_context(None)
        self.fire("shutdown")
        log.info("server stopped (master pid %d)", os.getpid())
        self.restore_signals()
        process_setup.remove_pid_file(self.settings.get("pid_file"))
        user_segments.release_segments()  # the Table/Atomic/Lock segments made before start()
        if self.task_num:
            removed = sweep_spilled(self.settings.get("task_tmpdir") or "/tmp", os.getpid())
            if removed:
                log.info("removed %d task temp files nobody read (their task worker was killed)", removed)
        if self.state is not None:
            self.state.destroy()
        process_setup.remove_logging()
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

    def fire(self, name: str, *args: Any) -> None:
        callback = self.config.callback(name)
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

    # -- stopping a worker process ---------------------------------------------------------
    def deliver_stop(self, reactor: Any, box: Any, worker: Any) -> None:
        """Flush `box` (an ipc Outbox holding a stop for `worker`) now, or again from the
        manager's `reactor` every STOP_RETRY_MS until it fits. A worker busy in a callback
        may have a full mailbox; its stop must wait for room there, not be dropped (it was
        then killed after max_wait_time, without its worker_stop). Given up once it has exited."""
        if box.flush() or not worker.is_alive():
            return
        reactor.after(STOP_RETRY_MS, self.deliver_stop, reactor, box, worker)

    def post_stop(self, worker: Any, session: int, wait_event: bool) -> None:
        """In the manager: put a T_STOP_WORKER (payload b"\\x01" with wait_event) in `worker`'s
        mailbox behind what is queued there, and deliver it with `deliver_stop`: it waits for
        room in a full mailbox without blocking the manager's loop, and is never dropped.
        Only BASE with a manager and PROCESS stop workers this way; both set `manager_reactor`
        before their supervisor starts any worker (a BASE server with task workers always has
        a manager), so there is no other loop to fall back to."""
        box = messages.Outbox(self.posts[worker.worker_id], MANAGER)
        box.put(messages.T_STOP_WORKER, session, b"\x01" if wait_event else b"")
        reactor = self.manager_reactor  # type: ignore[attr-defined]
        assert reactor is not None, "a worker process is stopped from the manager's loop"
        self.deliver_stop(reactor, box, worker)

    # -- settings read by workers ---------------------------------------------------------
    def default_idle_time(self) -> float:
        settings = self.settings
        return float(settings.get("heartbeat_idle_time") or settings.get("heartbeat_check_interval") or 0)

    def capacity(self) -> int:
        return int(self.settings["max_connection"])
