"""The child processes of a harness run: an echo server and the wstest fuzzing client.

Each is started in its own session (process group), so everything it forks (a PROCESS-mode
master's manager and workers, say) can be found and stopped by that group id and nothing
else; on this shared machine nothing is ever killed by name. A server prints `READY <port>`
on stdout when it accepts connections; its stdout and stderr go to a log file for humans.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from typing import Callable

ANNOUNCED = re.compile(r"will run (\d+) test cases")
RUNNING = re.compile(r"Running test case ID (\S+) for agent")
HEARTBEAT = 60.0  # seconds between progress lines inside one case group


class ServerStartError(RuntimeError):
    """The server exited or stayed silent before printing READY."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def group_members(group_id: int) -> list[int]:
    """PIDs whose process group is `group_id` (from /proc: the project is Linux-only)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stream:
                fields = stream.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group_id and fields[0] != b"Z":
            members.append(int(entry))
    return members


def stop_group(process: subprocess.Popen, timeout: float) -> str:
    """SIGTERM the leader, wait; SIGKILL it after `timeout`; then kill what is left of its group."""
    status = ""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            status = f"did not stop within {timeout:.0f} s of SIGTERM; killed"
    deadline = time.monotonic() + 5
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # a stopping master may still be reaping its workers
    left = group_members(process.pid)
    if left:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        status = (status + "; " if status else "") + f"left {len(left)} processes behind ({left}); killed"
    return status


class ServerProcess:
    """An echo server child: start() -> port, stop() -> '' or what went wrong."""

    def __init__(self, command: list[str], log_path: str, cwd: str, env: dict[str, str]) -> None:
        self.command, self.log_path, self.cwd, self.env = command, log_path, cwd, env
        self.process: subprocess.Popen | None = None
        self.port = 0
        self._ready = threading.Event()
        self._copier: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> int:
        self._log = open(self.log_path, "w", encoding="utf-8", errors="replace", buffering=1)
        self._log.write(f"$ {' '.join(self.command)}\n")
        self._log.flush()
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._log,
                                        stdin=subprocess.DEVNULL, cwd=self.cwd, env=self.env,
                                        start_new_session=True, text=True, errors="replace")
        self._copier = threading.Thread(target=self._copy_stdout, daemon=True)
        self._copier.start()
        if not self._ready.wait(timeout) or not self.port:
            try:  # stdout at EOF: the exit status follows within moments
                status = self.process.wait(5 if self._ready.is_set() else 0.1)
            except subprocess.TimeoutExpired:
                status = None
            self.stop()
            detail = f"exited with status {status}" if status is not None else f"no READY within {timeout:.0f} s"
            raise ServerStartError(f"{detail}: {self.log_tail()}", status)
        return self.port

    def _copy_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if not self.port and line.startswith("READY "):
                self.port = int(line.split()[1])
                self._ready.set()
            self._log.write(line)
            self._log.flush()
        self._ready.set()  # EOF: the server is gone (start() then reports it)

    def exited_early(self) -> int | None:
        """The exit status if the server is no longer running, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 20.0) -> str:
        if self.process is None:
            return ""
        status = stop_group(self.process, timeout)
        if self._copier is not None:
            self._copier.join(5)
        if self.process.returncode not in (0, -signal.SIGTERM) and not status:
            status = f"exited with status {self.process.returncode}"
        self._log.close()
        return status

    def log_tail(self, lines: int = 12) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as stream:
                text = stream.readlines()[1:]
        except OSError:
            return "(no log)"
        return "".join(text[-lines:]).strip() or "(nothing on stdout/stderr)"


class WstestRun:
    """One `wstest -m fuzzingclient -s spec.json`, bounded in time, output to a log."""

    def __init__(self, command: list[str], log_path: str, cwd: str,
                 progress: Callable[[str], None]) -> None:
        self.command, self.log_path, self.cwd, self.progress = command, log_path, cwd, progress
        self.announced: int | None = None  # "will run N test cases"
        self.cases_started = 0
        self.status: int | None = None
        self.timed_out = False
        self.seconds = 0.0

    def run(self, timeout: float, register: Callable[[subprocess.Popen], None]) -> None:
        start = time.monotonic()
        with open(self.log_path, "w", encoding="utf-8", errors="replace", buffering=1) as log:
            # Python 2 block-buffers a pipe: unbuffered, the progress lines arrive as they happen.
            process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=self.cwd, start_new_session=True,
                                       env=dict(os.environ, PYTHONUNBUFFERED="1"), text=True, errors="replace")
            register(process)
            timer = threading.Timer(timeout, self._expire, args=(process,))
            timer.daemon = True
            timer.start()
            group, said = None, start
            try:
                for line in process.stdout:  # type: ignore[union-attr]
                    log.write(line)
                    announced = ANNOUNCED.search(line)
                    if announced:
                        self.announced = int(announced.group(1))
                    running = RUNNING.search(line)
                    if running:
                        self.cases_started += 1
                        case_id = running.group(1)
                        now = time.monotonic()
                        # a line per case group, and one a minute within the long ones (12.*, 13.*)
                        if case_id.split(".")[0] != group or now - said >= HEARTBEAT:
                            group, said = case_id.split(".")[0], now
                            self.progress(f"case {case_id} ({self.cases_started}/{self.announced or '?'}), "
                                          f"{now - start:.0f} s in")
                self.status = process.wait()
            finally:
                timer.cancel()
                stop_group(process, 10)
        self.seconds = time.monotonic() - start

    def _expire(self, process: subprocess.Popen) -> None:
        self.timed_out = True
        stop_group(process, 10)
