"""Signals that land while a server is between states: each must still take effect.

Every test makes a callback act at the earliest moment it can (the signal sent from the
callback itself), so the window is hit on every run rather than once in a thousand.
"""

from __future__ import annotations

import os
import signal

import pytest

from conftest import echo

pytestmark = pytest.mark.timeout(60)


def test_sigterm_while_a_one_process_server_reloads_stops_it(run_server):
    """BASE with one worker restarts its worker in place on reload. A SIGTERM that arrives
    while the old instance stops (its loop about to end, the next not made yet) was posted to
    the old instance's loop and lost: the new instance ran on, and the server never stopped."""

    def setup(server, emit):
        def on_worker_stop(srv, worker_id):
            emit("worker_stop")
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in the old instance's stop

        server.on("worker_stop", on_worker_stop)
        echo(server, emit)

    handle = run_server(setup, mode="base", settings={"worker_num": 1})
    handle.signal(signal.SIGUSR1)  # reload: the worker restarts in place
    handle.wait("worker_stop")
    assert handle.wait_exit(timeout=10) == 0
    assert not [e for e in handle.drain() if e["event"] == "__ready__"]  # no second instance was started


def test_a_child_whose_parent_died_before_it_watched_still_notices():
    """A worker watches its parent (workers/child.py watch_parent) to stop when the manager
    is gone. One whose manager died between the fork and that call read getppid() as init's
    pid already, took it for its parent, and never stopped: an orphan holding the listening
    socket (the CI flake "processes outlived their server", ppid 1). Here the parent has
    surely died (it is reaped) before the child starts watching."""
    from threadswoole.loop.reactor import Reactor
    from threadswoole.workers.child import watch_parent
    from threadswoole.workers.worker import ProcessReaper, ProcessWorker

    go_read, go_write = os.pipe()
    report_read, report_write = os.pipe()

    def body() -> int:
        os.close(go_write)
        os.read(go_read, 1)  # the middle process has exited and been reaped
        reactor = Reactor("orphan")
        verdict = []

        def end(what: str) -> None:
            if not verdict:
                verdict.append(what)
                reactor.stop()

        watch_parent(reactor, lambda: end("noticed"))
        reactor.after(5000, end, "missed")
        reactor.run()
        os.write(report_write, verdict[0].encode())
        return 0

    middle = os.fork()
    if middle == 0:  # forks the child as a manager does, then dies at once
        try:
            ProcessWorker(0, "worker", body, ProcessReaper()).start()
        finally:
            os._exit(0)
    os.close(report_write)
    os.close(go_read)
    assert os.waitpid(middle, 0)[1] == 0
    os.write(go_write, b"!")
    os.close(go_write)
    verdict = b""
    while chunk := os.read(report_read, 16):  # EOF once the child has exited
        verdict += chunk
    os.close(report_read)
    assert verdict == b"noticed"
