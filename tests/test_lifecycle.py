"""Process-level lifecycle: pid file, log file and level, daemonize, shared memory cleanup."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from conftest import echo
from threadswoole.state import shm
pytestmark = pytest.mark.timeout(60)


def test_pid_file_is_written_at_start_and_removed_at_shutdown(run_server, tmp_path):
    pid_file = tmp_path / "server.pid"
    handle = run_server(echo, settings={"worker_num": 2, "pid_file": str(pid_file)})
    assert int(pid_file.read_text()) == handle.pid
    assert handle.stop() == 0
    assert not pid_file.exists()


def test_log_level_filters_messages(run_server, tmp_path):
    quiet, chatty = tmp_path / "quiet.log", tmp_path / "chatty.log"
    for path, level in ((quiet, 5), (chatty, 0)):
        handle = run_server(echo, settings={"worker_num": 2, "log_file": str(path), "log_level": level})
        assert handle.stop() == 0
    assert "reload" not in quiet.read_text() and quiet.read_text().count("INFO") == 0
    assert "INFO" in chatty.read_text() or "DEBUG" in chatty.read_text()


def test_daemonize_detaches_and_stops_on_sigterm(run_server, tmp_path):
    pid_file = tmp_path / "daemon.pid"
    log_file = tmp_path / "daemon.log"

    def setup(server, emit):
        server.on("start", lambda srv: emit("daemon_start", pid=os.getpid(), cwd=os.getcwd(), sid=os.getsid(0)))
        echo(server, emit)

    handle = run_server(setup, settings={"daemonize": True, "pid_file": str(pid_file), "log_file": str(log_file), "worker_num": 1}, wait_for=None)
    started = handle.wait("daemon_start")
    daemon_pid = started["pid"]
    try:
        assert handle.wait_exit() == 0  # the process we forked exits at once: the daemon lives on
        # double fork: a new session (not ours), and the daemon is not its leader (no terminal)
        assert daemon_pid != handle.pid and started["cwd"] == "/"
        assert started["sid"] != os.getsid(0) and started["sid"] != daemon_pid
        deadline = time.monotonic() + 5
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert int(pid_file.read_text()) == daemon_pid
        os.kill(daemon_pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while psutil.pid_exists(daemon_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not psutil.pid_exists(daemon_pid)
        assert not pid_file.exists()
        assert not shm.segments_of(daemon_pid)
        assert "server stopped" in log_file.read_text()
    finally:
        if psutil.pid_exists(daemon_pid):
            os.kill(daemon_pid, signal.SIGKILL)


def test_shared_memory_is_unlinked_at_shutdown(run_server, mode):
    handle = run_server(echo, mode=mode, settings={"worker_num": 2})
    assert shm.segments_of(handle.pid), "the server should have a shared-memory segment while it runs"
    assert handle.stop() == 0
    assert shm.segments_of(handle.pid) == []


def test_kill_9_of_the_whole_tree_leaves_nothing_after_the_next_start(run_server, mode):
    crashed = run_server(echo, mode=mode, settings={"worker_num": 2})
    assert shm.segments_of(crashed.pid)
    crashed.kill_tree()  # kill -9 cannot clean up: its segment stays until some server starts
    survivor = run_server(echo, mode=mode, settings={"worker_num": 1})
    assert shm.segments_of(crashed.pid) == []  # swept by the next start
    assert survivor.stop() == 0
    assert not [name for name in os.listdir(shm.SHM_DIR) if name.startswith(f"{shm.PREFIX}{survivor.pid}_")]


def test_a_late_start_failure_returns_false_with_the_error(run_server):
    """start() returns False (contract §5.2) when the server cannot be set up, here because
    the process runs out of file descriptors for the worker mailboxes; nothing is left."""
    import errno
    import resource

    def setup(server, emit):
        def on_start(srv):
            emit("started")

        server.on("start", on_start)
        server.on("receive", lambda *a: None)
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 3, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        original = server.start

        def start_and_report():
            result = original()
            emit("start_result", result=result, error=server.get_last_error())
            return result

        server.start = start_and_report

    handle = run_server(setup, settings={"worker_num": 4}, wait_for=None)
    event = handle.wait("start_result")
    assert event["result"] is False and event["error"] == errno.EMFILE
    assert handle.wait_exit() == 3  # the harness exits 3 when start() returned something else than True
    assert not [e for e in handle.drain() if e["event"] == "started"]
    assert shm.segments_of(handle.pid) == []


@pytest.mark.parametrize("mode", ["base", "thread"])
def test_sigterm_taken_by_another_thread_still_stops_an_idle_server(run_server, mode):
    """The kernel may hand a process's SIGTERM to any of its threads that does not block it; one
    taken by another thread interrupts no epoll_wait in the main thread's loop. The loop's
    wake-up fd (signal.set_wakeup_fd) must wake it, so an idle server stops (it hung before)."""

    def setup(server, emit):
        def on_start(srv):
            # A thread that takes signals (it starts with this thread's mask: nothing blocked),
            # then this thread, the one running the loop, blocks SIGTERM: the kernel gives it to
            # the other thread, and CPython runs the handler here once the loop wakes.
            threading.Thread(target=threading.Event().wait, daemon=True).start()
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
            emit("masked")

        server.on("start", on_start)
        server.on("receive", lambda *args: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    handle.wait("masked")
    assert handle.stop(timeout=10) == 0

