"""Test harness for `threadswoole serve`: the real command in a child process, real clients.

`ServeProcess(args)` runs ``python -m threadswoole serve ARGS`` (with ``--bind 127.0.0.1:0``
unless the args bind themselves) in its own process group, collects its output lines, and
waits for the "listening at" line to learn the addresses the OS gave it. `stop()` sends
SIGTERM and waits for the exit; `close()` kills whatever is left of the group and checks that
the server's shared-memory segments are gone. HTTP helpers use `http.client`.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(ROOT, "tests", "serve_apps")
_LISTENING = re.compile(r"listening at (\S+(?:, \S+)*) \(pid (\d+)\)(?:; metrics at (\S+)/metrics)?")


class ServeProcess:
    """One `threadswoole serve` process (see the module docstring)."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, bind: bool = True,
                 wait: bool = True, timeout: float = 20.0, pass_fds: tuple[int, ...] = (), cwd: str = ROOT,
                 wrap: list[str] | None = None, app_dir: str = APPS) -> None:
        """`wrap` is put before the command (a launcher that ends by exec'ing it)."""
        command = [sys.executable, "-m", "threadswoole", "serve", "--app-dir", app_dir, *args]
        if bind and not any(a in ("--bind", "-b", "--fd") or a.startswith("--bind=") for a in args):
            command += ["--bind", "127.0.0.1:0"]
        if not any(a.startswith("--graceful-timeout") for a in args):
            # a request some test left in flight must not hold the stop past close()'s 10 s
            # (the default is gunicorn's 30 s)
            command += ["--graceful-timeout", "5"]
        command = [*(wrap or ()), *command]
        environment = dict(os.environ if env is None else env)
        environment["PYTHONPATH"] = ROOT + os.pathsep + environment.get("PYTHONPATH", "")
        environment.setdefault("PYTHONUNBUFFERED", "1")
        self.command = command
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace",
                                     start_new_session=True, pass_fds=pass_fds)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.addresses: list[str] = []
        self.metrics_url = ""
        self.master_pid = self.pid
        if wait:
            self.wait_listening(timeout)

    # -- output ---------------------------------------------------------------------------------
    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match:
        """The first output line (from index `start`) matching the regex `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    found = regex.search(line)
                    if found:
                        return found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n" + "\n".join(self.lines[-60:]))
                self._changed.wait(min(remaining, 0.2))

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line))

    def wait_listening(self, timeout: float) -> None:
        """The "listening at" line, then one answered request: a worker runs (and the master's
        signal handlers are installed, which in BASE mode happens after the start callback)."""
        found = self.wait_for(_LISTENING.pattern, timeout)
        self.addresses = found.group(1).split(", ")
        self.master_pid = int(found.group(2))
        self.metrics_url = found.group(3) or ""
        if not self.addresses[0].startswith("http://"):
            return  # TLS or a Unix socket: the caller probes it
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.request("GET", "/")
                return
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("the server never answered; output:\n" + self.output[-3000:]) from None
                time.sleep(0.05)

    # -- addresses --------------------------------------------------------------------------------
    @property
    def host_port(self) -> tuple[str, int]:
        return split_url(self.addresses[0])

    def connection(self, index: int = 0, timeout: float = 10.0) -> http.client.HTTPConnection:
        host, port = split_url(self.addresses[index])
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                index: int = 0) -> tuple[http.client.HTTPResponse, bytes]:
        """One request on a fresh connection; (response, body)."""
        connection = self.connection(index)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response, response.read()
        finally:
            connection.close()

    # -- the processes ------------------------------------------------------------------------------
    def tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.master_pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def send_signal(self, signo: int) -> None:
        os.kill(self.master_pid, signo)

    def stop(self, signo: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.send_signal(signo)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not exit within {timeout}s after signal {signo}; output:\n{self.output[-3000:]}") from None

    def close(self) -> None:
        """Kill what is left (by this process group) and check the shared memory is gone."""
        stop_failure = ""
        if self.proc.poll() is None:
            started = time.monotonic()
            try:
                self.stop(timeout=10)
            except AssertionError as exc:  # killed below; said if that leaves segments behind
                stop_failure = f"; SIGTERM did not stop it within {time.monotonic() - started:.1f} s: {exc}"
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(10)
        self._reader.join(5)
        from threadswoole.state import shm

        leftovers = shm.segments_of(self.master_pid)
        for name in leftovers:
            try:
                os.unlink(os.path.join(shm.SHM_DIR, name))
            except OSError:
                pass
        assert not leftovers, f"shared-memory segments left behind: {leftovers}{stop_failure}"

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def pipeline_and_read_late(process, request: bytes, body: bytes, count: int = 5000) -> int:
    """Send `count` copies of `request` at once on a socket with a small receive buffer, read
    late, and count the answers whose body is `body` (all of them, or the server lost some)."""
    from http_server_helpers import RawConnection  # (it imports the conftest: only under pytest)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(process.host_port)
    sender = threading.Thread(target=sock.sendall, args=(request * count,))
    sender.start()
    time.sleep(0.5)  # the client is slow to read (not a synchronisation): answers pile up meanwhile
    got = 0
    with RawConnection(sock=sock, timeout=3) as conn:
        try:
            while got < count and conn.read_response().body == body:
                got += 1
        except (socket.timeout, EOFError):
            pass
    sender.join(5)
    return got


def split_url(url: str) -> tuple[str, int]:
    """``http://127.0.0.1:8000`` -> ("127.0.0.1", 8000); ``http://[::1]:8000`` -> ("::1", 8000)."""
    rest = url.split("://", 1)[1]
    if rest.startswith("["):
        host, _, port = rest[1:].partition("]:")
        return host, int(port)
    host, _, port = rest.rpartition(":")
    return host, int(port)
