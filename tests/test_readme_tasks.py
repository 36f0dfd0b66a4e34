"""The README's task-worker, user-process and command examples run as written (ports swapped
for free ones) and do what the text says."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import connect, recv_exact

pytestmark = pytest.mark.timeout(60)
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def _example(title: str) -> str:
    text = open(README).read()
    found = re.search(rf"## {title}\n.*?```python\n(.*?)```", text, re.S)
    assert found, f"no example under '## {title}'"
    return found.group(1)


def _run(code: str, before: list[str] | None = None) -> tuple[subprocess.Popen, int]:
    code = re.sub(r'Server\("127\.0\.0\.1", \d+', 'Server("127.0.0.1", 0', code)
    # every example has a manager (tasks, a user process, two workers): it reports the port
    # one write (prints of threads running meanwhile cannot split it)
    code = code.replace("server.start()", 'import sys\nserver.on("manager_start", lambda s: (sys.stdout.write(f"PORT {s.ports[0].port}\\n"), sys.stdout.flush()))\nserver.start()')
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, "PYTHONPATH": os.path.dirname(README)})
    for line in proc.stdout:  # type: ignore[union-attr]
        found = re.search(r"PORT (\d+)$", line)
        if found:
            return proc, int(found.group(1))
        if before is not None:
            before.append(line)  # printed by on_start, which may run before manager_start
    raise AssertionError(f"example did not start: rc={proc.wait()}")


def _stop(proc: subprocess.Popen) -> str:
    os.kill(proc.pid, signal.SIGTERM)
    out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0
    return out


def test_task_example_upper_cases_through_a_task_worker():
    proc, port = _run(_example("Task workers"))
    try:
        client = connect(port)
        client.sendall(b"hello tasks")
        assert recv_exact(client, 11) == b"HELLO TASKS"
        client.close()
    finally:
        _stop(proc)


def test_user_process_example_broadcasts_to_every_client():
    proc, port = _run(_example("User processes"))
    try:
        clients = [connect(port) for _ in range(3)]
        time.sleep(0.3)  # all three accepted before the broadcast
        clients[1].sendall(b"to all")
        assert [recv_exact(c, 6) for c in clients] == [b"to all"] * 3
        for client in clients:
            client.close()
    finally:
        _stop(proc)


def test_command_example_prints_the_pid_of_worker_1():
    early: list[str] = []
    proc, _port = _run(_example("Commands"), early)
    try:
        time.sleep(0.5)
    finally:
        out = "".join(early) + _stop(proc)
    pid = int(re.search(r"worker 1 is pid (\d+)", out).group(1))
    assert pid not in (proc.pid, 0)
