"""Test harness: real servers in forked child processes, events reported back over a socket.

`run_server(setup, mode=..., settings=...)` forks a child that builds a Server on
127.0.0.1:0, lets `setup(server, emit)` register callbacks (closures from the test), and
starts it. Callbacks call `emit("name", key=value)` to report what happened; the test waits
for those events (`handle.wait("name", ...)`) instead of sleeping. Every handle is stopped
by PID at the end of the test, its whole process tree is killed if it does not stop, and
its shared-memory segments must be gone.
"""

from __future__ import annotations

import faulthandler
import gc
import json
import os
import signal
import socket
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

import psutil
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

pytest_plugins = ["process_helpers"]  # fixtures of the Process tests: children, reports, queue_keys

MODES = ["base", "process", "thread"]  # grows as PROCESS and THREAD land: the core suite runs over every mode


def available_modes() -> list[str]:
    return list(MODES)


class ServerHandle:
    """A server running in a forked child process."""

    def __init__(self, pid: int, events: socket.socket, tmpdir: str) -> None:
        self.pid = pid
        self._events = events
        self._backlog: list[dict[str, Any]] = []
        self.tmpdir = tmpdir
        self.port = 0
        self.exit_code: int | None = None
        self.ports: list[int] = []
        self.unraisable: list[str] = []

    # -- events -------------------------------------------------------------------------
    def _read(self, timeout: float) -> dict[str, Any] | None:
        self._events.settimeout(max(0.001, timeout))
        try:
            data = self._events.recv(1 << 20)
        except (socket.timeout, BlockingIOError):
            return None
        event = json.loads(data)
        if event["event"] == "__error__":
            raise AssertionError(f"server child failed:\n{event['traceback']}")
        if event["event"] == "__unraisable__":
            self.unraisable.append(event["message"])
        return event

    def wait(self, name: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first not-yet-consumed event called `name` whose fields match."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._backlog):
                if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                    return self._backlog.pop(index)
                if event["event"] == "__error__":  # absorbed while the server stopped
                    raise AssertionError(f"server child failed:\n{event['traceback']}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [e["event"] for e in self._backlog]
                raise AssertionError(f"no {name!r} event {match or ''} within {timeout}s; unconsumed: {seen}")
            event = self._read(remaining)
            if event is not None:
                self._backlog.append(event)

    def wait_n(self, name: str, count: int, timeout: float = 10.0, **match: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [self.wait(name, max(0.01, deadline - time.monotonic()), **match) for _ in range(count)]

    def pump(self) -> None:
        """Read the events already sent into the backlog (consuming none): a client waiting
        on its socket calls this, so a server blocked in emit() (a Unix datagram queue holds
        only net.unix.max_dgram_qlen = 10 unread events) is never waiting on the test."""
        while (event := self._read(0.0)) is not None:
            self._backlog.append(event)

    def drain(self, settle: float = 0.0) -> list[dict[str, Any]]:
        """Every event received so far (optionally waiting `settle` seconds for more)."""
        deadline = time.monotonic() + settle
        while True:
            event = self._read(max(0.001, deadline - time.monotonic()) if settle else 0.001)
            if event is None:
                break
            self._backlog.append(event)
        events, self._backlog = self._backlog, []
        return events

    def events_named(self, name: str) -> list[dict[str, Any]]:
        found = [e for e in self._backlog if e["event"] == name]
        self._backlog = [e for e in self._backlog if e["event"] != name]
        return found

    # -- process control ------------------------------------------------------------------
    def process(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def signal(self, signo: int) -> None:
        os.kill(self.pid, signo)

    def wait_exit(self, timeout: float = 15.0) -> int:
        if self.exit_code is not None:
            return self.exit_code
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._absorb()  # a server emitting while it stops must never wait on a full queue
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                self._absorb()
                return self.exit_code
            time.sleep(0.01)
        seen = [e["event"] for e in self._backlog]
        # Where it is stuck: SIGABRT makes the child's faulthandler print every thread's stack
        # to its stderr (the test's captured output), then it dies.
        os.kill(self.pid, signal.SIGABRT)
        for _ in range(200):
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                self.exit_code = -signal.SIGABRT
                break
            time.sleep(0.01)
        raise AssertionError(f"server pid {self.pid} did not exit within {timeout}s (its stacks: captured stderr); unconsumed events: {seen}; unraisable: {self.unraisable}")

    def _absorb(self) -> None:
        """Move the events already sent into the backlog, acting on none (an `__error__` stays
        there for `wait` to raise). A Unix datagram queue holds max_dgram_qlen (10) unread
        events; past that the server's emit() blocks, so a test that stops reading while the
        server still reports (a shutdown, errors Python can only print) would hang its stop."""
        self._events.setblocking(False)  # (`_read` sets its own timeout again)
        while True:
            try:
                data = self._events.recv(1 << 20)
            except OSError:
                return
            event = json.loads(data)
            if event["event"] == "__unraisable__":
                self.unraisable.append(event["message"])
            self._backlog.append(event)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM the master and wait; start() must have returned True (exit code 0)."""
        if self.exit_code is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        return self.wait_exit(timeout)

    def kill_tree(self) -> None:
        """kill -9 the whole tree. Everything is stopped (SIGSTOP) first, until the tree stops
        growing, so no process can fork a child we would miss between listing and killing."""
        procs: list[psutil.Process] = []
        for _ in range(20):
            current = self.tree()
            for proc in current:
                try:
                    proc.suspend()
                except psutil.NoSuchProcess:
                    pass
            if {p.pid for p in current} == {p.pid for p in procs}:
                break
            procs = current
        # SIGSTOP lands asynchronously: a process listed but not yet stopped can finish a fork()
        # whose child no listing saw. A SIGKILL to the process group cannot miss it (the kernel
        # restarts a fork that races a group signal), so the group goes first, then the tree
        # (a descendant that left the group, a daemon).
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        if self.exit_code is None:
            try:
                _pid, status = os.waitpid(self.pid, 0)
                self.exit_code = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.exit_code = -9

    def close(self) -> None:
        self._events.close()


def _child_main(events_path: str, setup: Callable[..., Any], host: str, port: int, mode: str, sock_type: int, settings: dict[str, Any], server_class: Any) -> None:
    """Runs in the forked child: build, set up and start the server; report how it ended."""
    # The child inherits the test process's heap, garbage included: a socket of an earlier test
    # that only a full collection would free. Collected here, mid-test, it would close its fd and
    # move the server's fd count off any baseline a leak test took. Frozen, it is never collected.
    gc.freeze()
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(event: str, **data: Any) -> None:
        data.setdefault("pid", os.getpid())
        payload = json.dumps({"event": event, **data}, default=repr).encode()
        for _ in range(200):
            try:
                sender.sendto(payload, events_path)
                return
            except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
                return
            except OSError:
                time.sleep(0.005)

    code = 4
    try:
        os.setpgid(0, 0)  # a process group of its own: cleanup finds every descendant, orphans too
        faulthandler.enable(all_threads=True)  # a stop that hangs is answered with SIGABRT: stacks
        import threadswoole

        modes = {"base": threadswoole.SWOOLE_BASE, "process": threadswoole.SWOOLE_PROCESS, "thread": threadswoole.SWOOLE_THREAD}
        server = server_class(host, port, modes[mode], sock_type)
        if settings:
            server.set(settings)
        # Errors Python can only print ("Exception ignored in ..."), e.g. a shared-memory view
        # that outlives its segment, become events that fail the test.
        sys.unraisablehook = lambda unraisable: emit("__unraisable__", message=f"{unraisable.exc_type.__name__}: {unraisable.exc_value} in {unraisable.object!r}")
        setup(server, emit)
        emit("__bound__", ports=[p.port for p in server.ports])
        result = server.start()
        emit("__returned__", result=result)
        server._driver = None  # let the finished server go, so finalizers run now
        gc.collect()
        code = 0 if result is True else 3
    except BaseException:
        emit("__error__", traceback=traceback.format_exc())
    finally:
        os._exit(code)


class ServerFactory:
    def __init__(self, tmp_path: Any) -> None:
        self.tmp_path = str(tmp_path)
        self.handles: list[ServerHandle] = []

    def __call__(self, setup: Callable[..., Any], *, mode: str = "base", settings: dict[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0, sock_type: int | None = None, server_class: Any = None, wait_for: str | None = "__ready__", timeout: float = 15.0) -> ServerHandle:
        import threadswoole

        events_path = tempfile.mktemp(prefix="ev", suffix=".sock", dir=self.tmp_path)
        events = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        events.bind(events_path)
        sock_type = threadswoole.SWOOLE_SOCK_TCP if sock_type is None else sock_type
        server_class = server_class or threadswoole.Server

        def wrapped_setup(server: Any, emit: Callable[..., Any]) -> None:
            setup(server, emit)
            # Readiness: the first worker_start (wrapping any user callback), reported once.
            user_worker_start = server.get_callback("worker_start")

            def on_worker_start(srv: Any, worker_id: int) -> None:
                emit("__ready__", worker_id=worker_id)
                if user_worker_start is not None:
                    user_worker_start(srv, worker_id)

            server.on("worker_start", on_worker_start)

        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child_main(events_path, wrapped_setup, host, port, mode, sock_type, settings or {}, server_class)
        handle = ServerHandle(pid, events, self.tmp_path)
        self.handles.append(handle)
        bound = handle.wait("__bound__", timeout)
        handle.ports = bound["ports"]
        handle.port = handle.ports[0]
        if wait_for:
            handle.wait(wait_for, timeout)
        return handle

    def cleanup(self) -> None:
        from threadswoole.state import shm
        leaked: list[str] = []
        unraisable: list[str] = []
        for handle in self.handles:
            if handle.exit_code is None:
                try:
                    handle.stop(timeout=10)
                except AssertionError:
                    handle.kill_tree()
            leaked += _kill_group(handle.pid)
            try:
                handle.drain()
            except AssertionError:
                pass
            unraisable += handle.unraisable
            leftovers = shm.segments_of(handle.pid)
            for name in leftovers:
                try:
                    os.unlink(os.path.join(shm.SHM_DIR, name))
                except OSError:
                    pass
            handle.close()
        assert not leaked, f"processes outlived their server: {leaked}"
        assert not unraisable, f"errors Python could only print: {unraisable}"


def _kill_group(pgid: int) -> list[str]:
    """Kill whatever is left in a server's process group; describe it (a leak)."""
    deadline = time.monotonic() + 3
    while True:
        left = []
        for proc in psutil.process_iter(["pid", "status"]):
            try:
                if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    left.append(proc)
            except (ProcessLookupError, psutil.NoSuchProcess):
                pass
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # a worker that saw its parent go stops by itself within a second
    described = []
    for proc in left:
        try:
            described.append(f"pid {proc.pid} (ppid {proc.ppid()}): {' '.join(proc.cmdline())[:80]}")
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return described


@pytest.fixture
def run_server(tmp_path: Any) -> Any:
    factory = ServerFactory(tmp_path)
    yield factory
    factory.cleanup()


@pytest.fixture(params=MODES)
def mode(request: Any) -> str:
    return request.param


# -- client helpers -------------------------------------------------------------------------
def connect(port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def recv_exact(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise AssertionError(f"connection closed with {remaining} of {size} bytes missing")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def settled_stats(handle: ServerHandle, client: socket.socket, predicate: Callable[[dict], bool], *, request: bytes = b"stats", reply: bytes | int = b"stats", recv: Callable[[socket.socket, int], bytes] = recv_exact, timeout: float = 5.0) -> dict:
    """Ask for stats() until `predicate` holds: counters of other threads (PROCESS reactor
    threads, other workers) reach shared memory a few milliseconds late. The test's server
    answers `request` by emitting a "stats" event and replying `reply` (bytes: checked;
    an int: that many bytes, whatever they are); `recv` reads the reply (TLS tests pass theirs)."""
    deadline = time.monotonic() + timeout
    while True:
        client.sendall(request)
        answer = recv(client, reply if isinstance(reply, int) else len(reply))
        assert isinstance(reply, int) or answer == reply
        stats = handle.wait("stats")["stats"]
        if predicate(stats) or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def recv_closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True when the server closed the connection (EOF or reset) within the timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def echo(server: Any, emit: Callable[..., Any]) -> None:
    """The simplest setup: echo every packet back."""
    server.on("receive", lambda srv, fd, reactor_id, data: srv.send(fd, data))


def tree_resources(handle: ServerHandle) -> dict[str, int]:
    """Open fds, threads and processes of the server's whole tree."""
    fds = threads = 0
    procs = handle.tree()
    for proc in procs:
        try:
            fds += proc.num_fds()
            threads += proc.num_threads()
        except psutil.NoSuchProcess:
            pass
    return {"fds": fds, "threads": threads, "processes": len(procs)}
