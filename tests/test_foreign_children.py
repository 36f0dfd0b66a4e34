"""Children the user starts in the manager are the user's: the manager's SIGCHLD handling waits
only for the workers it forked, so a `subprocess.Popen` keeps its real exit status (with
`waitpid(-1)` the manager collected it first and Popen reported 0)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.timeout(60)


def _ended(pid: int) -> bool:
    """The child has exited: a zombie waiting for its parent, or already collected."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("mode", ["base", "process"])
def test_a_popen_started_in_on_manager_start_keeps_its_exit_status(run_server, mode):
    children = []

    def setup(server, emit):
        def on_manager_start(srv):
            child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(7)"])
            children.append(child)  # this list lives in the manager (a forked copy in BASE)
            emit("child_started", pid=child.pid)

        def on_manager_stop(srv):
            emit("child_exited", code=children[0].wait(timeout=10))

        server.on("manager_start", on_manager_start)
        server.on("manager_stop", on_manager_stop)
        server.on("receive", lambda srv, fd, reactor_id, data: srv.send(fd, data))

    # two workers: BASE runs a manager process only with more than one
    handle = run_server(setup, mode=mode, settings={"worker_num": 2})
    pid = handle.wait("child_started")["pid"]
    deadline = time.monotonic() + 10
    while not _ended(pid):  # its SIGCHLD has reached the manager by the time it is a zombie
        assert time.monotonic() < deadline, "the user's child did not exit"
        time.sleep(0.01)
    assert handle.stop() == 0
    assert handle.wait("child_exited")["code"] == 7
