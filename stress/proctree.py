"""Start a server subprocess, watch its whole process tree, stop it without leftovers.

Why: a SWOOLE_PROCESS server is a master plus a manager plus workers, and
pre-forking peers look the same; the benchmark must charge the *whole tree*
for memory and CPU, and must never leave a stray worker behind (other
engineers run servers on the same machine, so stragglers are killed by PID,
never by name).

- ``ServerProcess.start`` runs ``python -m <module> --host H --port 0 ...`` and
  waits (bounded) for its ``READY <port>`` line (a ``SKIP <reason>`` line instead
  raises ``ServerSkipped``: the server cannot run here, e.g. an API not written yet).
  With ``cmd=`` it runs any command (a peer server from the benchmark virtualenv,
  ``redis-server``...) on a port chosen by the caller, and ``start(port=, probe=)``
  waits until ``probe(host, port)`` succeeds instead (a real request, not just a connect).
- ``ProcTree`` remembers every descendant it has ever seen; ``rss()`` sums
  RSS over the live tree, ``cpu()`` sums user+system (``cpu_split()`` apart) over the live tree plus
  the ``children_*`` times of children the tree already reaped (so a worker
  that exits mid-window is still counted).
- ``ServerProcess.stop`` sends SIGTERM, SIGKILLs after a timeout, reaps, then
  kills any descendant still alive.
"""
from __future__ import annotations

import collections
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Optional

import psutil


def _connects(host: str, port: int) -> Optional[str]:
    with socket.create_connection((host, port), timeout=1.0):
        return None


class ProcTree:
    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.seen: dict[int, psutil.Process] = {pid: self.root}
        self.lock = threading.Lock()

    def live(self) -> list[psutil.Process]:
        """Root plus its current descendants (listed recursively now); remembers them."""
        procs = []
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            pass
        with self.lock:
            for p in procs:
                self.seen.setdefault(p.pid, p)
        return procs

    def rss(self) -> int:
        total = 0
        for p in self.live():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def cpu(self) -> float:
        """CPU seconds (user+system) used so far by the tree, reaped children included."""
        user, system = self.cpu_split()
        return user + system

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds used so far by the tree, reaped children included: which
        side a server's cost is on (interpreter work against kernel work for the same syscalls)."""
        user = system = 0.0
        for p in self.live():
            try:
                t = p.cpu_times()
                user += t.user + t.children_user
                system += t.system + t.children_system
            except psutil.Error:
                pass
        return user, system

    def survivors(self) -> list[psutil.Process]:
        self.live()
        with self.lock:
            procs = list(self.seen.values())
        out = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.Error:
                pass
        return out


class Sampler(threading.Thread):
    """Samples tree RSS every ``interval`` s, and tree CPU at the window boundaries."""

    def __init__(self, tree: ProcTree, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.tree, self.interval = tree, interval
        self.peak_rss = 0
        self.window: Optional[tuple[float, float]] = None
        self.cpu_start: Optional[float] = None
        self.cpu_end: Optional[float] = None
        self.stop_event = threading.Event()

    def set_window(self, start: float, end: float) -> None:
        self.window = (start, end)

    def run(self) -> None:
        next_rss = time.monotonic()
        while not self.stop_event.is_set():
            now = time.monotonic()
            if self.window is not None:
                ws, we = self.window
                if self.cpu_start is None and now >= ws:
                    self.cpu_start = self.tree.cpu()
                elif self.cpu_start is not None and self.cpu_end is None and now >= we:
                    self.cpu_end = self.tree.cpu()
            if now >= next_rss:
                self.peak_rss = max(self.peak_rss, self.tree.rss())
                next_rss = now + self.interval
            wake = next_rss
            if self.window is not None:
                if self.cpu_start is None:
                    wake = min(wake, self.window[0])
                elif self.cpu_end is None:
                    wake = min(wake, self.window[1])
            self.stop_event.wait(max(0.0, min(wake - time.monotonic(), self.interval)))

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)
        if self.cpu_start is not None and self.cpu_end is None:
            # The load ended exactly at the window's end and stopped us before we took the
            # end sample (a sampler thread is easily late on a busy machine): take it now.
            self.cpu_end = self.tree.cpu()


class ServerError(RuntimeError):
    pass


class ServerSkipped(ServerError):
    """The server said ``SKIP <reason>`` instead of ``READY``: it cannot run here (not a failure)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bound to port 0, then released)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, module: str, args: list[str], host: str = "127.0.0.1", *,
                 python: Optional[str] = None, cmd: Optional[list[str]] = None,
                 env: Optional[dict[str, str]] = None) -> None:
        self.cmd = cmd or [python or sys.executable, "-m", module, "--host", host, "--port", "0", *args]
        self.host = host
        self.extra_env = env or {}
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.tree: Optional[ProcTree] = None
        self.stdout_tail: collections.deque = collections.deque(maxlen=50)
        self._stderr = tempfile.TemporaryFile()
        self.stop_status = ""
        self.stderr_final = ""
        self._drainer: Optional[threading.Thread] = None
        self._new_line = threading.Condition()
        self._stdout_eof = False

    def start(self, timeout: float = 20.0, port: Optional[int] = None,
              probe: Optional[Callable[[str, int], Optional[str]]] = None) -> int:
        """Start; wait for ``READY <port>``, or with ``port`` for ``probe`` to return None."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.update(self.extra_env)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL, cwd=root, env=env)
        self.tree = ProcTree(self.proc.pid)
        if port is not None:
            return self._wait_probe(port, probe or _connects, timeout)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    continue
                line = self.proc.stdout.readline()
                if not line:
                    raise ServerError(f"exited with {self.proc.wait(5)} before READY: {self.stderr_summary()}")
                text = line.decode(errors="replace").strip()
                self.stdout_tail.append(text)
                if text.startswith("SKIP"):
                    raise ServerSkipped(text[4:].strip() or "skipped")
                if text.startswith("READY "):
                    self.port = int(text.split()[1])
                    break
            else:
                raise ServerError(f"no READY within {timeout}s: {self.stderr_summary()}")
        except BaseException:
            sel.close()
            self.stop()
            raise
        sel.close()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        return self.port

    def _wait_probe(self, port: int, probe: Callable[[str, int], Optional[str]], timeout: float) -> int:
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        deadline = time.monotonic() + timeout
        why = "not probed"
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise ServerError(f"exited with {self.proc.returncode} before answering: "
                                      f"{self.stderr_summary()}")
                try:
                    why = probe(self.host, port)
                except OSError as exc:
                    why = f"{type(exc).__name__}: {exc}"
                if why is None:
                    self.port = port
                    return port
                time.sleep(0.1)      # polling a port that is not open yet: nothing to wait on
            raise ServerError(f"no answer on port {port} within {timeout}s ({why}): {self.stderr_summary()}")
        except BaseException:
            self.stop()
            raise

    def _drain(self) -> None:
        try:
            for line in self.proc.stdout:
                with self._new_line:
                    self.stdout_tail.append(line.decode(errors="replace").rstrip())
                    self._new_line.notify_all()
        except (OSError, ValueError):
            pass
        with self._new_line:
            self._stdout_eof = True
            self._new_line.notify_all()      # EOF: wake waiters (their line will not come)

    def wait_line(self, prefix: str, timeout: float) -> Optional[str]:
        """The newest stdout line starting with ``prefix`` (after READY), waiting up to ``timeout``."""
        def found() -> Optional[str]:
            return next((x for x in reversed(self.stdout_tail) if x.startswith(prefix)), None)
        with self._new_line:
            self._new_line.wait_for(lambda: found() is not None or self._stdout_eof, timeout)
            return found()

    def stderr_tail(self, n: int = 600) -> str:
        # pread: the server shares this file's offset, so never move it
        fd = self._stderr.fileno()
        size = os.fstat(fd).st_size
        data = os.pread(fd, n, max(0, size - n))
        return data.decode(errors="replace").strip().replace("\n", " | ")

    def stderr_summary(self) -> str:
        """The last non-empty stderr line (a traceback's exception line), or '(no stderr)'."""
        lines = [x.strip() for x in self.stderr_tail(4000).split(" | ") if x.strip()]
        return lines[-1][:300] if lines else "(no stderr)"

    def stop(self, timeout: float = 5.0) -> str:
        """SIGTERM, then SIGKILL after ``timeout``; reap; kill every surviving descendant."""
        if self.proc is None or self.stop_status:
            return self.stop_status
        survivors = self.tree.survivors() if self.tree else []
        status = "term"
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                status = "killed"
                self.proc.kill()
                self.proc.wait(5)
        else:
            status = f"exited({self.proc.returncode})"
        if self.proc.returncode not in (0, -signal.SIGTERM) and status == "term":
            status = f"term(rc={self.proc.returncode})"
        left = [p for p in (self.tree.survivors() if self.tree else survivors) if p.pid != self.proc.pid]
        if left:
            _gone, alive = psutil.wait_procs(left, timeout=2)
            for p in alive:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(alive, timeout=3)
            if alive:
                status += f"+killed{len(alive)}orphans"
        if self._drainer is not None:
            self._drainer.join(timeout=2)   # EOF once every holder of the pipe is gone
        if self.proc.stdout and (self._drainer is None or not self._drainer.is_alive()):
            self.proc.stdout.close()
        self.stderr_final = self.stderr_tail()
        self._stderr.close()
        self.stop_status = status
        return status
