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
