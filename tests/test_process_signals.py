"""Process.signal and Process.alarm (contract §11, §6, §18.8) with real signals. They run in
Process children: pytest-timeout owns SIGALRM in the test process itself."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
import traceback

import pytest

from threadswoole import ContextError, Event, Process, Timer

pytestmark = pytest.mark.timeout(30)


def _dispatched_by_the_loop() -> bool:
    """True when the running callback was handed to a loop (posted), not called by the handler."""
    return any(frame.name == "_run_posted" for frame in traceback.extract_stack())


def test_signal_without_a_loop_calls_back_from_the_handler(children):
    def child(p):
        done_r, done_w = os.pipe()

        def on_usr1(signo):
            p.write(json.dumps({"signo": signo, "via_loop": _dispatched_by_the_loop()}).encode())
            os.write(done_w, b"x")

        assert Process.signal(signal.SIGUSR1, on_usr1) is True
        p.write(b"ready")
        select.select([done_r], [], [], 10)

    proc = Process(child)
    pid = children.add(proc.start())
    assert proc.read() == b"ready"
    assert Process.kill(pid, signal.SIGUSR1) is True
    assert json.loads(proc.read()) == {"signo": signal.SIGUSR1, "via_loop": False}
    assert children.wait_for(pid)["code"] == 0


def test_signal_is_dispatched_through_the_private_loop(children):
    """A child whose loop runs (a timer is pending): the signal callback runs in that loop and
    stops the timer, so Event.wait() returns and the child exits."""

    def child(p):
        tick = Timer.tick(1000, lambda timer_id: None)

        def on_usr2(signo):
            Timer.clear(tick)
            p.write(json.dumps({"signo": signo, "via_loop": _dispatched_by_the_loop()}).encode())

        Process.signal(signal.SIGUSR2, on_usr2)
        Event.defer(lambda: p.write(b"ready"))  # written from inside the running loop

    proc = Process(child)
    pid = children.add(proc.start())
    assert proc.read() == b"ready"
    began = time.monotonic()
    Process.kill(pid, signal.SIGUSR2)
    assert json.loads(proc.read()) == {"signo": signal.SIGUSR2, "via_loop": True}
    assert time.monotonic() - began < 0.9  # woken by the signal, not by the 1 s tick
    assert children.wait_for(pid)["code"] == 0


def test_replacing_and_removing_a_signal_callback(children, reports):
    def child(p):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a disposition from before Process.signal
        Process.signal(signal.SIGHUP, lambda s: reports.send("first"))
        Process.signal(signal.SIGHUP, lambda s: reports.send("second"))  # replaces
        os.kill(os.getpid(), signal.SIGHUP)
        Process.signal(signal.SIGHUP, None)
        reports.send({"restored": signal.getsignal(signal.SIGHUP) == signal.SIG_IGN})

    pid = children.add(Process(child, pipe_type=0).start())
    assert reports.receive() == "second"
    assert reports.receive() == {"restored": True}
    assert children.wait_for(pid)["code"] == 0


def test_signal_argument_checks_and_main_thread_only():
    for signo, error in ((signal.SIGKILL, ValueError), (signal.SIGSTOP, ValueError), (99999, ValueError), ("1", TypeError)):
        with pytest.raises(error):
            Process.signal(signo, print)
    with pytest.raises(TypeError):
        Process.signal(signal.SIGUSR1, 42)
    raised = []
    thread = threading.Thread(target=lambda: _capture(raised, lambda: Process.signal(signal.SIGUSR1, print)))
    thread.start()
    thread.join()
    assert raised == [ContextError]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # nothing was installed


def _capture(into: list, call) -> None:
    try:
        call()
    except Exception as exc:
        into.append(type(exc))


def test_the_child_drops_inherited_signal_handlers(children, reports):
    previous = signal.signal(signal.SIGUSR2, lambda s, f: None)  # a plain handler of the parent
    try:
        assert Process.signal(signal.SIGUSR1, print) is True  # and one through Process.signal

        def child(p):
            names = {signo: signal.getsignal(signo) for signo in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT)}
            reports.send({str(int(k)): (v is signal.default_int_handler) if k == signal.SIGINT else int(v) for k, v in names.items()})

        pid = children.add(Process(child, pipe_type=0).start())
        assert reports.receive() == {str(int(signal.SIGUSR1)): int(signal.SIG_DFL), str(int(signal.SIGUSR2)): int(signal.SIG_DFL), str(int(signal.SIGINT)): True}
        assert children.wait_for(pid)["code"] == 0
    finally:
        Process.signal(signal.SIGUSR1, None)
        signal.signal(signal.SIGUSR2, previous)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_alarm_is_periodic(children, reports):
    """20 ms interval: five SIGALRMs, then alarm(-1) clears it; the count and the time they took."""

    def child(p):
        done_r, done_w = os.pipe()
        beats = []

        def on_alarm(signo):
            beats.append(time.monotonic())
            if len(beats) == 5:
                Process.alarm(-1)
                os.write(done_w, b"x")

        Process.signal(signal.SIGALRM, on_alarm)
        began = time.monotonic()
        assert Process.alarm(20_000) is True
        select.select([done_r], [], [], 10)
        later = select.select([done_r], [], [], 0.1)  # nothing may come after the clear
        reports.send({"beats": len(beats), "elapsed": beats[-1] - began, "itimer": signal.getitimer(signal.ITIMER_REAL), "extra": bool(later[0]) and len(beats)})

    pid = children.add(Process(child, pipe_type=0).start())
    report = reports.receive()
    assert report["beats"] == 5 and report["itimer"] == [0.0, 0.0]
    assert 0.09 <= report["elapsed"] < 2.0  # five periods of 20 ms, not one
    assert children.wait_for(pid)["code"] == 0


@pytest.mark.parametrize("which, signo", [(signal.ITIMER_VIRTUAL, signal.SIGVTALRM), (signal.ITIMER_PROF, signal.SIGPROF)])
def test_alarm_on_cpu_time(children, reports, which, signo):
    def child(p):
        beats = []
        Process.signal(signo, beats.append)
        Process.alarm(5_000, which)
        deadline = time.monotonic() + 10
        while len(beats) < 3 and time.monotonic() < deadline:
            sum(range(1000))  # burn CPU: these timers count CPU time
        Process.alarm(-1, which)
        reports.send({"beats": len(beats), "signals": sorted(set(beats))})

    pid = children.add(Process(child, pipe_type=0).start())
    assert reports.receive() == {"beats": 3, "signals": [int(signo)]}
    assert children.wait_for(pid)["code"] == 0


def test_alarm_and_timer_exclude_each_other(children, reports):
    def child(p):
        outcome = {}
        tick = Timer.tick(1000, lambda timer_id: None)
        outcome["alarm_with_timer"] = _error_name(lambda: Process.alarm(100_000))
        Timer.clear(tick)
        outcome["alarm_alone"] = Process.alarm(10_000_000)
        outcome["timer_with_alarm"] = [_error_name(lambda: Timer.tick(10, print)), _error_name(lambda: Timer.after(10, print))]
        outcome["cleared"] = Process.alarm(-1)
        later = Timer.after(10, print)
        outcome["timer_after_clear"] = isinstance(later, int) and Timer.clear(later)
        reports.send(outcome)

    pid = children.add(Process(child, pipe_type=0).start())
    assert reports.receive() == {"alarm_with_timer": "ContextError", "alarm_alone": True, "timer_with_alarm": ["ContextError", "ContextError"], "cleared": True, "timer_after_clear": True}
    assert children.wait_for(pid)["code"] == 0


def _error_name(call) -> str | None:
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return None


def test_alarm_argument_checks():
    with pytest.raises(TypeError):
        Process.alarm("1000")
    with pytest.raises(TypeError):
        Process.alarm(True)
    with pytest.raises(ValueError):
        Process.alarm(1000, 3)


def test_sigchld_handler_reaps_every_child(children, reports):
    """The seed's supervisor pattern: on SIGCHLD, loop wait(False) until it returns False."""

    def supervisor(p):
        done_r, done_w = os.pipe()
        reaped = []

        def on_child(signo):
            while (status := Process.wait(False)) is not False:
                reaped.append(status)
            if len(reaped) == 3:
                os.write(done_w, b"x")

        Process.signal(signal.SIGCHLD, on_child)
        pids = [Process(lambda q, code=code: q.exit(code), pipe_type=0).start() for code in (1, 2, 3)]
        select.select([done_r], [], [], 10)
        reports.send({"pids": pids, "reaped": sorted(reaped, key=lambda s: s["code"])})

    pid = children.add(Process(supervisor, pipe_type=0).start())
    report = reports.receive()
    assert report["reaped"] == [{"pid": p, "code": c, "signal": 0} for p, c in zip(report["pids"], (1, 2, 3))]
    assert children.wait_for(pid)["code"] == 0
