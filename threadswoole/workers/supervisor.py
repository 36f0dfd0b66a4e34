"""The manager's logic: keep every worker id alive, reload, stop and shut down (gunicorn's arbiter shape).

It runs on the manager's event loop (the manager process in BASE/PROCESS modes, the manager
thread in THREAD mode) and sees workers only through the Worker interface. Signal handlers
and worker notifications only post to that loop; the methods below do the work and tests
can call them directly.

Reload (contract §18.5): with `reload_async` off it is a rolling restart, one worker at a
time: stop it, wait for it to exit, start the replacement, wait for its `worker_start`,
then the next. With `reload_async` on, every worker is asked to stop at once and each
replacement starts as soon as its predecessor says it is stopping. The reload is finished
when every replacement has run `worker_start`; a reload requested before that is dropped.
A worker that does not exit within `max_wait_time` is killed.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from typing import Any, Callable

from threadswoole import _context
from threadswoole.ipc import messages
from threadswoole.loop.reactor import Reactor
from threadswoole.state import shared as layout
from threadswoole.workers.roster import EVENT, TASK, USER, RunConfig
from threadswoole.workers.worker import Worker

log = logging.getLogger("threadswoole")

QUICK_CRASH_SECONDS = 1.0
MAX_RESPAWN_DELAY = 1.0


class _Reload:
    def __init__(self, ids: list[int], async_: bool) -> None:
        self.pending = collections.deque(ids)
        self.awaiting: set[int] = set()  # restarted ids whose replacement has not started yet
        self.async_ = async_


class Supervisor:
    """Owns the Worker objects of every worker id and keeps them running."""

    def __init__(self, config: RunConfig, state: layout.SharedState, reactor: Reactor, make_worker: Callable[[str, int], Worker], *, on_exit: Callable[[Worker], Any] | None = None) -> None:
        self.config = config
        self.server = config.server
        self.state = state
        self.reactor = reactor
        self.make_worker = make_worker  # (role, worker_id) -> a Worker not yet started
        self.roster = config.roster
        # reloaded by reload(): event and task workers (user processes are never reloaded)
        self.event_ids = list(self.roster.ids(EVENT))
        self.task_ids = list(self.roster.ids(TASK))
        self.on_exit = on_exit  # the mode's clean-up for a worker that is gone (BASE: its sessions)
        self.workers: dict[int, Worker] = {}
        self.retired: list[Worker] = []  # stopping predecessors still draining
        self.shutting_down = False
        self._on_all_exited: Callable[[], Any] | None = None
        self._reload: _Reload | None = None
        self._started_at: dict[int, float] = {}
        self._crashes: dict[int, int] = collections.defaultdict(int)
        settings = config.settings
        self.max_wait_time: float = settings["max_wait_time"]
        self.reload_async: bool = settings.get("reload_async", False)

    # -- spawning -------------------------------------------------------------------------
    def start_all(self) -> None:
        # User processes first: workers forked after them inherit their Process objects with
        # `pid` set (it is set again in this process whenever one is respawned).
        for role in (USER, EVENT, TASK):
            for worker_id in self.roster.ids(role):
                self.spawn(worker_id)

    def spawn(self, worker_id: int) -> Worker | None:
        if self.shutting_down:
            return None
        existing = self.workers.get(worker_id)
        if existing is not None and existing.is_alive():
            return existing  # a delayed respawn raced with a reload that already started one
        worker = self.make_worker(self.roster.role_of(worker_id), worker_id)
        try:
            worker.start()
        except OSError as exc:
            log.error("cannot start worker %d: %s; retrying", worker_id, exc)
            self.reactor.after(200, self.spawn, worker_id)
            return None
        self.workers[worker_id] = worker
        self.state.set_worker_field(worker_id, layout.W_PID, worker.pid)
        self._started_at[worker_id] = time.monotonic()
        return worker

    # -- notifications (posted to the manager loop) ----------------------------------------
    def worker_started(self, worker_id: int) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None:
            worker.started = True
        reload = self._reload
        if reload is not None and worker_id in reload.awaiting:
            reload.awaiting.discard(worker_id)
            self._reload_step()

    def worker_stopping(self, worker_id: int, wait_event: bool, pid: int = 0) -> None:
        """A worker announced it is leaving; with wait_event its replacement starts now."""
        worker = self.workers.get(worker_id)
        if worker is None or self.shutting_down or (pid and worker.pid != pid):
            return  # an instance we already replaced
        worker.stopping = True
        if wait_event:
            self._retire(worker)
            self.state.set_worker_field(worker_id, layout.W_DEATH, layout.DEATH_PLANNED)
            self.spawn(worker_id)

    def worker_exited(self, worker: Worker) -> None:
        if self.on_exit is not None:
            try:
                self.on_exit(worker)
            except Exception:
                log.exception("clean-up after worker %d failed", worker.worker_id)
        if worker in self.retired:
            self.retired.remove(worker)
            self._maybe_finished()
            return
        if self.workers.get(worker.worker_id) is not worker:
            return
        abnormal = bool(worker.exit_signal) or (bool(worker.exit_code) and not worker.stopping)
        user = worker.role == USER
        if abnormal and not self.shutting_down:
            if user:  # worker_error is for event and task workers (contract §5.4)
                log.warning("user process %d (pid %d) exited abnormally: code %s, signal %d; restarting it", worker.worker_id, worker.pid, worker.exit_code, worker.exit_signal)
            else:
                self._report_error(worker)
        # Tell the replacement how this instance ended (what it redelivers depends on it).
        death = layout.DEATH_STUCK if worker.force_killed else layout.DEATH_CRASHED if abnormal else layout.DEATH_PLANNED
        self.state.set_worker_field(worker.worker_id, layout.W_DEATH, death)
        del self.workers[worker.worker_id]
        if self.shutting_down:
            self._maybe_finished()
            return
        delay = 0.0
        # A user process whose callback returns at once is restarted at once (seed: "it keeps
        # exiting and being restarted"): it backs off like a crashing worker instead of forking
        # in a tight loop.
        if (abnormal or user) and time.monotonic() - self._started_at.get(worker.worker_id, 0) < QUICK_CRASH_SECONDS:
            self._crashes[worker.worker_id] += 1
            delay = min(MAX_RESPAWN_DELAY, 0.05 * 2 ** self._crashes[worker.worker_id])
        else:
            self._crashes[worker.worker_id] = 0
        if delay:
            self.reactor.after(max(1, int(delay * 1000)), self.spawn, worker.worker_id)
        else:
            self.spawn(worker.worker_id)

    def _report_error(self, worker: Worker) -> None:
        log.warning("worker %d (pid %d) exited abnormally: code %s, signal %d", worker.worker_id, worker.pid, worker.exit_code, worker.exit_signal)
        callback = self.config.callback("worker_error")
        if callback is not None:
            try:
                callback(self.server, worker.worker_id, worker.pid, worker.exit_code or 0, worker.exit_signal)
            except Exception:
                log.exception("uncaught exception in the 'worker_error' callback")

    def _retire(self, worker: Worker) -> None:
        """Keep a stopping worker aside (it drains) while its id gets a new instance."""
        if self.workers.get(worker.worker_id) is worker:
            del self.workers[worker.worker_id]
        self.retired.append(worker)
        self.reactor.after(int(self.max_wait_time * 1000) + 1000, self._force, worker)

    def _force(self, worker: Worker) -> None:
        if worker.is_alive():
            log.warning("worker %d (pid %d) did not stop within max_wait_time; killing it", worker.worker_id, worker.pid)
            worker.force_killed = True  # its current event is the suspect (see ipc/redelivery.py)
            worker.kill()  # the exit is reported as for any other end (reaper, thread report)

    # -- reload / stop --------------------------------------------------------------------
    def reload(self, only_task: bool = False) -> bool:
        if self._reload is not None or self.shutting_down:
            return False
        ids = list(self.task_ids) if only_task else list(self.event_ids + self.task_ids)
        self.state.q[layout.H_RELOADING] = 1
        self._reload = _Reload(ids, self.reload_async)
        log.info("reloading %d workers (%s)", len(ids), "async" if self.reload_async else "rolling")
        callback = self.config.callback("before_reload")
        if callback is not None:
            _call(callback, self.server, "before_reload")
        if self._reload.async_:
            while self._reload.pending:
                self._restart(self._reload.pending.popleft())
        self._reload_step()
        return True

    def _restart(self, worker_id: int) -> None:
        assert self._reload is not None
        worker = self.workers.get(worker_id)
        self._reload.awaiting.add(worker_id)
        if worker is None:
            self.spawn(worker_id)
            return
        if self._reload.async_:
            # The worker answers "stopping" and drains (worker_exit); its replacement is
            # started on that answer. One that never answers is killed after max_wait_time.
            worker.stop(wait_event=True)
            self.reactor.after(int(self.max_wait_time * 1000), self._force, worker)
        else:
            worker.stop(wait_event=False)
            self.reactor.after(int(self.max_wait_time * 1000), self._force, worker)

    def _reload_step(self) -> None:
        reload = self._reload
        if reload is None:
            return
        if not reload.async_ and not reload.awaiting and reload.pending:
            self._restart(reload.pending.popleft())
            return
        if not reload.pending and not reload.awaiting:
            self._reload = None
            self.state.q[layout.H_RELOADING] = 0
            log.info("reload finished")
            callback = self.config.callback("after_reload")
            if callback is not None:
                _call(callback, self.server, "after_reload")

    def stop_worker(self, worker_id: int, wait_event: bool) -> bool:
        worker = self.workers.get(worker_id)
        if worker is None:
            return False
        worker.stop(wait_event=wait_event)
        if not wait_event:
            self.reactor.after(int(self.max_wait_time * 1000), self._force, worker)
        return True

    # -- the manager's mailbox -----------------------------------------------------------
    def handle_message(self, type_: int, src: int, session: int, payload: bytes) -> None:
        """A notification from a worker (or a request from the master) to the manager."""
        if type_ == messages.T_WORKER_STARTED:
            self.worker_started(src)
        elif type_ == messages.T_WORKER_STOPPING:
            self.worker_stopping(src, payload[:1] == b"\x01", int.from_bytes(payload[1:], "big"))
        elif type_ == messages.T_RELOAD:
            if not self.reload(payload == b"\x01"):
                log.info("reload request dropped: a reload is already in progress")
        elif type_ == messages.T_STOP_WORKER:
            self.stop_worker(session, payload == b"\x01")

    # -- shutdown -------------------------------------------------------------------------
    def shutdown(self, on_all_exited: Callable[[], Any]) -> None:
        if self.shutting_down:
            return
        self.shutting_down = True
        self._on_all_exited = on_all_exited
        for worker in list(self.workers.values()) + self.retired:
            if worker.is_alive():
                worker.stop(wait_event=False)
        self.reactor.after(int(self.max_wait_time * 1000) + 1000, self._kill_remaining)
        self._maybe_finished()

    def _kill_remaining(self) -> None:
        for worker in list(self.workers.values()) + list(self.retired):
            if worker.is_alive():
                log.warning("worker %d (pid %d) ignored the stop request; killing it", worker.worker_id, worker.pid)
                worker.kill()

    def _maybe_finished(self) -> None:
        if not self.shutting_down:
            return
        if any(w.is_alive() for w in self.workers.values()) or any(w.is_alive() for w in self.retired):
            return
        callback, self._on_all_exited = self._on_all_exited, None
        if callback is not None:
            callback()


def _call(callback: Callable[..., Any], server: Any, name: str) -> None:
    try:
        callback(server)
    except Exception:
        log.exception("uncaught exception in the %r callback", name)


def bind_manager_context(server: Any, reactor: Reactor | None) -> None:
    ctx = _context.current()
    ctx.server = server
    ctx.role = _context.ROLE_MANAGER
    ctx.worker_id = -1
    ctx.worker_pid = os.getpid()
    ctx.loop = reactor
