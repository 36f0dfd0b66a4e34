"""Process inside a running server (contract §11 fork rules, §16, §17 item 56): forking from
process workers, refusing where threads run, posix_spawn'd programs everywhere but the master,
signals dispatched through the worker's reactor, and the Process.alarm / Timer exclusion."""

from __future__ import annotations

import json
import os
import signal
import traceback

import pytest

from threadswoole import Process, Timer
from threadswoole._context import current

pytestmark = pytest.mark.timeout(60)


def _error(call) -> str | None:
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return None


def _read_line(proc: Process) -> str:
    received = b""
    while not received.endswith(b"\n"):
        chunk = proc.read()
        if not chunk:
            break
        received += chunk
    return received.decode()


@pytest.mark.parametrize("mode, workers", [("base", 1), ("base", 2), ("process", 1)])
def test_a_process_worker_forks_a_child(run_server, mode, workers):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            def child(p):
                ctx = current()
                after = Timer.after(1, lambda: None)  # the child has a private loop of its own
                term = Process.signal(signal.SIGTERM, lambda signo: None)  # no longer inside a server
                dispositions = [signal.getsignal(signo) for signo in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)]
                defaults = dispositions == [signal.SIG_DFL, signal.SIG_DFL, signal.default_int_handler]
                p.write(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "role": ctx.role, "server": ctx.server is None, "timer": isinstance(after, int), "sigterm": term, "defaults": defaults}).encode())

            proc = Process(child)
            pid = proc.start()
            report = json.loads(proc.read())
            status = Process.wait()
            spawned = Process(Process.exec_callback("/bin/echo", ["spawned", worker_id]), True)
            spawned_pid = spawned.start()
            line = _read_line(spawned)
            spawned_status = Process.wait()
            status_lines = Process(Process.exec_callback("/bin/sh", ["-c", "exec grep SigIgn /proc/self/status"]), True)
            status_lines.start()
            ignored = int(_read_line(status_lines).split()[1], 16)
            Process.wait()
            emit("child", pid=pid, report=report, status=status, worker_pid=os.getpid(), line=line, spawned=spawned_status == {"pid": spawned_pid, "code": 0, "signal": 0}, ignored=ignored)

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": workers})
    for event in handle.wait_n("child", workers):
        assert event["report"] == {"pid": event["pid"], "ppid": event["worker_pid"], "role": "none", "server": True, "timer": True, "sigterm": True, "defaults": True}
        for signo in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE):  # a worker ignores some; its programs do not
            assert not event["ignored"] & (1 << (signo - 1)), (signal.Signals(signo).name, hex(event["ignored"]))
        assert event["status"] == {"pid": event["pid"], "code": 0, "signal": 0}
        assert event["line"].startswith("spawned ") and event["spawned"] is True
    assert handle.stop() == 0


@pytest.mark.parametrize("mode, workers", [("base", 1), ("base", 2), ("process", 1)])
def test_signals_in_a_worker(run_server, mode, workers):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            refused = {name: _error(lambda signo=signo: Process.signal(signo, print)) for name, signo in (("SIGTERM", signal.SIGTERM), ("SIGALRM", signal.SIGALRM))}

            def on_usr1(signo):
                via_loop = any(frame.name == "_run_posted" for frame in traceback.extract_stack())
                emit("usr1", signo=signo, worker_id=srv.worker_id, via_loop=via_loop)

            emit("installed", refused=refused, installed=Process.signal(signal.SIGUSR1, on_usr1), worker_pid=os.getpid())

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": workers})
    for event in handle.wait_n("installed", workers):
        assert event["refused"] == {"SIGTERM": "ValueError", "SIGALRM": "ValueError"}
        assert event["installed"] is True
        os.kill(event["worker_pid"], signal.SIGUSR1)
        got = handle.wait("usr1", pid=event["worker_pid"])
        assert got["signo"] == signal.SIGUSR1 and got["via_loop"] is True and got["worker_id"] >= 0
    assert handle.stop() == 0


def test_alarm_and_server_timers_exclude_each_other(run_server):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            virtual = signal.ITIMER_VIRTUAL
            tick = srv.tick(1000, lambda timer_id: None)
            with_timer = _error(lambda: Process.alarm(100_000, virtual))
            srv.clear_timer(tick)
            alone = Process.alarm(10_000_000, virtual)  # the worker's own watchdog timers do not count
            timer_refused = _error(lambda: Timer.tick(10, print))
            cleared = Process.alarm(-1, virtual)
            later = Timer.after(10, lambda: None)
            emit("alarm", with_timer=with_timer, alone=alone, timer_refused=timer_refused, cleared=cleared, timer_after=Timer.clear(later))

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup, mode="base", settings={"worker_num": 2})
    for event in handle.wait_n("alarm", 2):
        assert {k: event[k] for k in ("with_timer", "alone", "timer_refused", "cleared", "timer_after")} == {"with_timer": "ContextError", "alone": True, "timer_refused": "ContextError", "cleared": True, "timer_after": True}
    assert handle.stop() == 0


def test_thread_mode_refuses_forks_but_spawns_programs(run_server):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            out = {
                "start": _error(lambda: Process(lambda p: None).start()),
                "signal": _error(lambda: Process.signal(signal.SIGUSR1, print)),
                "daemon": _error(Process.daemon),
                "exec": _error(lambda: Process(print).exec("/bin/echo", [])),
                "exit": _error(lambda: Process(print).exit(0)),
                "kill_self": _error(lambda: Process.kill(os.getpid(), 0)),
            }
            proc = Process(Process.exec_callback("/bin/echo", ["from", "thread", worker_id]), redirect_stdin_stdout=True)
            pid = proc.start()
            out["line"] = _read_line(proc)
            out["kill_child"] = Process.kill(pid, 0)
            out["wait"] = Process.wait() == {"pid": pid, "code": 0, "signal": 0}
            emit("thread", **out)

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup, mode="thread", settings={"worker_num": 1})
    event = handle.wait("thread")
    assert {k: event[k] for k in ("start", "signal", "daemon", "exec", "exit", "kill_self")} == {"start": "ContextError", "signal": "ContextError", "daemon": "ContextError", "exec": "ContextError", "exit": "ContextError", "kill_self": "ContextError"}
    assert event["line"] == "from thread 0\n" and event["kill_child"] is True and event["wait"] is True
    assert handle.stop() == 0


@pytest.mark.parametrize("mode, workers", [("process", 1), ("base", 2), ("thread", 1)])
def test_the_master_does_not_fork(run_server, mode, workers):
    def setup(server, emit):
        def on_start(srv):
            emit(
                "master",
                start=_error(lambda: Process(lambda p: None).start()),
                spawn=_error(lambda: Process(Process.exec_callback("/bin/true")).start()),
                wait=_error(Process.wait),
                daemon=_error(Process.daemon),
            )

        server.on("start", on_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup, mode=mode, settings={"worker_num": workers})
    event = handle.wait("master")
    assert {k: event[k] for k in ("start", "spawn", "wait", "daemon")} == dict.fromkeys(("start", "spawn", "wait", "daemon"), "ContextError")
    assert handle.stop() == 0
