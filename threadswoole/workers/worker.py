"""The Worker interface (ARCHITECTURE "Worker"): one API over forked processes and threads.

The supervisor starts, stops and kills workers only through this interface and learns that one
has ended from the mode (a `ProcessReaper` on SIGCHLD for processes, the thread's own exit
report for threads), so dispatch, reload, max_request and worker_error are written once for
every mode and the supervisor never asks which kind of worker it holds.
"""

from __future__ import annotations

import abc
import logging
import os
import signal
import threading
import traceback
from typing import Any, Callable

from threadswoole.workers.child import MASTER_SIGNALS, forked_from

log = logging.getLogger("threadswoole")


class Worker(abc.ABC):
    """A supervised worker: event worker, task worker or user process."""

    def __init__(self, worker_id: int, role: str) -> None:
        self.worker_id = worker_id
        self.role = role
        self.exit_code: int | None = None
        self.exit_signal = 0
        self.stopping = False  # asked to stop by the supervisor (reload, stop, shutdown)
        self.started = False  # worker_start ran (reported by the worker itself)
        self.force_killed = False  # killed for not stopping in time: its current event is the suspect

    @property
    @abc.abstractmethod
    def pid(self) -> int: ...

    @property
    def native_id(self) -> int | None:
        return None

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self, wait_event: bool = False) -> None:
        """Ask for a graceful stop (the worker finishes its current event first)."""

    @abc.abstractmethod
    def kill(self) -> None:
        """Force the worker to end now (after max_wait_time); its exit is reported as usual."""

    @abc.abstractmethod
    def is_alive(self) -> bool: ...

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.role} #{self.worker_id} pid={self.pid}>"


class ProcessReaper:
    """The children of one (single-threaded) manager: SIGCHLD -> which workers ended, and how."""

    def __init__(self) -> None:
        self._by_pid: dict[int, ProcessWorker] = {}

    def track(self, worker: "ProcessWorker") -> None:
        self._by_pid[worker.pid] = worker

    def reap(self) -> list["ProcessWorker"]:
        """The tracked workers that have exited (several may exit per SIGCHLD).

        Only the pids tracked here are waited for: `waitpid(-1)` would also collect a child the
        user started in on_manager_start (a subprocess.Popen) and steal its exit status, which
        Popen then reports as 0. One WNOHANG call per tracked pid (about 1 us each, timeit)."""
        ended = []
        for pid, worker in list(self._by_pid.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # already collected elsewhere (Process.wait): status unknown
                done, status = pid, 0
            if done == 0:
                continue
            del self._by_pid[pid]
            worker.reaped(status)
            ended.append(worker)
        return ended


class ProcessWorker(Worker):
    """A worker in a forked child; the caller (the single-threaded manager) owns the fork."""

    def __init__(self, worker_id: int, role: str, body: Callable[[], int], reaper: ProcessReaper, *, stop_message: Callable[[bool], Any] | None = None, before_fork: Callable[[], Any] | None = None, forked: Callable[[int], Any] | None = None) -> None:
        super().__init__(worker_id, role)
        self._body = body
        self._pid = 0
        self._reaper = reaper
        self._stop_message = stop_message
        self._before_fork = before_fork  # in the parent, right before the fork (user processes: flush stdio)
        self._forked = forked  # in the parent, with the child's pid (user processes: Process.enter_parent)

    @property
    def pid(self) -> int:
        return self._pid

    def start(self) -> None:
        # Signals are blocked across fork so that nothing runs the parent's handlers in the
        # child before the child has installed its own.
        if self._before_fork is not None:
            self._before_fork()
        parent = os.getpid()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, MASTER_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            raise
        if pid == 0:
            forked_from(parent)
            code = 255
            try:
                code = self._body()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
                log.exception("worker %d crashed", self.worker_id)
            finally:
                try:
                    logging.shutdown()
                finally:
                    os._exit(code & 0xFF if isinstance(code, int) else 1)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        self._pid = pid
        self.exit_code = None
        self.exit_signal = 0
        self._reaper.track(self)
        if self._forked is not None:
            self._forked(pid)

    def stop(self, wait_event: bool = False) -> None:
        self.stopping = True
        if self._stop_message is not None:
            # A message in the worker's mailbox arrives after the events already queued there
            # (at shutdown: the close events), unlike a signal. A worker too stuck to read
            # it is killed by the supervisor after max_wait_time.
            self._stop_message(wait_event)
            return
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: the worker stops after what it is doing (task workers' quick stop)."""
        self._signal(signal.SIGTERM)

    def _signal(self, signo: int) -> None:
        if self._pid and self.exit_code is None:
            try:
                os.kill(self._pid, signo)
            except ProcessLookupError:
                pass

    def is_alive(self) -> bool:
        return bool(self._pid) and self.exit_code is None

    def reaped(self, status: int) -> None:
        """Record a waitpid() status."""
        if os.WIFSIGNALED(status):
            self.exit_signal = os.WTERMSIG(status)
            self.exit_code = 0
        else:
            self.exit_code = os.WEXITSTATUS(status)
            self.exit_signal = 0


class ThreadWorker(Worker):
    """A worker in a thread of the master (THREAD mode); its exit code is emulated."""

    def __init__(self, worker_id: int, role: str, body: Callable[["ThreadWorker"], int], on_exit: Callable[["ThreadWorker"], Any], *, stop: Callable[[bool], Any], name: str) -> None:
        super().__init__(worker_id, role)
        self._body = body
        self._on_exit = on_exit
        self._stop = stop
        self._name = name
        self.thread: threading.Thread | None = None
        self.abandoned = False  # stuck past max_wait_time: Python cannot kill a thread
        self._exit_lock = threading.Lock()
        self._exit_reported = False

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def native_id(self) -> int | None:
        return self.thread.native_id if self.thread is not None else None

    def start(self) -> None:
        self.exit_code = None
        self._exit_reported = False
        self.thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        code = 255
        try:
            code = self._body(self)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            log.exception("worker thread %d crashed", self.worker_id)
        finally:
            if self.exit_code is None:
                self.exit_code = code
            self._report_exit()

    def _report_exit(self) -> None:
        """Tell the supervisor once: the thread ended, or it was given up on (kill)."""
        with self._exit_lock:
            if self._exit_reported:
                return
            self._exit_reported = True
        self._on_exit(self)

    def stop(self, wait_event: bool = False) -> None:
        self.stopping = True
        self._stop(wait_event)

    def kill(self) -> None:
        # A thread cannot be killed from outside. The supervisor gives up on it (it keeps
        # its id out of the pool) and starts a replacement; it is reported as exited now,
        # and not again if the thread ever returns.
        self.abandoned = True
        if self.exit_code is None:
            self.exit_code = 0
        self._report_exit()

    def is_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive() and not self.abandoned

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
