"""Timers and deferred calls on a worker's loop (contract §6, §17 item 42), plus the Reactor itself."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import connect, recv_closed
from threadswoole.loop.reactor import Reactor
from threadswoole.loop.timers import TimerHeap

pytestmark = pytest.mark.timeout(30)


def test_tick_after_clear_and_defer_in_a_worker(run_server, mode):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            from threadswoole import Timer

            ticks = []

            def on_tick(timer_id, label):
                ticks.append(timer_id)
                if len(ticks) == 3:
                    emit("ticks", ids=ticks, cleared=srv.clear_timer(timer_id), cleared_again=srv.clear_timer(timer_id))

            tick_id = srv.tick(20, on_tick, "label")
            after_id = srv.after(30, lambda *args: emit("after", args=list(args)), 1, 2)
            never = srv.after(50, lambda: emit("never"))
            emit("ids", tick=tick_id, after=after_id, cleared=Timer.clear(never), listed=Timer.list(), exists=Timer.exists(tick_id), unknown=srv.clear_timer(987654))

        def on_receive(srv, fd, rid, data):
            srv.defer(lambda: emit("deferred", fd=fd))
            emit("received")

        server.on("worker_start", on_worker_start)
        server.on("receive", on_receive)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1})
    ids = handle.wait("ids")
    assert ids["tick"] >= 1 and ids["after"] >= 1 and ids["cleared"] is True and ids["unknown"] is False
    assert ids["exists"] is True and ids["tick"] in ids["listed"]
    ticks = handle.wait("ticks")
    assert ticks["ids"] == [ids["tick"]] * 3  # tick passes its own id first
    assert ticks["cleared"] is True and ticks["cleared_again"] is False
    assert handle.wait("after")["args"] == [1, 2]
    client = connect(handle.port)
    client.sendall(b"x")
    events = [handle.wait("received")["event"], handle.wait("deferred")["event"]]
    assert events == ["received", "deferred"]
    time.sleep(0.1)
    assert not [e for e in handle.drain() if e["event"] in ("never", "ticks")]
    assert handle.stop() == 0


def test_timer_list_shows_only_the_users_timers_and_clear_all_spares_the_framework(run_server, mode):
    """The framework's own timers (heartbeat, parent watch, drains) are invisible to
    Timer.list/exists/clear: a fresh worker lists none, and Timer.clear_all() does not stop
    the heartbeat."""

    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            from threadswoole import Timer

            fresh = Timer.list()
            mine = Timer.after(60_000, lambda: None)
            listed = Timer.list()
            guesses = [i for i in range(1, mine) if Timer.exists(i) or Timer.clear(i)]  # not the user's
            Timer.clear_all()
            emit("timers", fresh=fresh, listed=listed, mine=mine, guesses=guesses, after_clear=Timer.list())

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda srv, fd, rid, data: srv.send(fd, data))

    handle = run_server(setup, mode=mode, settings={"worker_num": 1, "heartbeat_check_interval": 1, "heartbeat_idle_time": 1})
    event = handle.wait("timers")
    assert event["fresh"] == [] and event["listed"] == [event["mine"]]
    assert event["guesses"] == [] and event["after_clear"] == []
    idle = connect(handle.port)
    assert recv_closed(idle, timeout=6)  # the heartbeat still closes the silent connection
    assert handle.stop() == 0


def test_timer_arguments_are_checked(run_server):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            errors = {}
            for name, call in {"zero": lambda: srv.tick(0, print), "float": lambda: srv.after(1.5, print), "defer": lambda: srv.defer(42)}.items():
                try:
                    call()
                except (TypeError, ValueError) as exc:
                    errors[name] = type(exc).__name__
            emit("errors", **errors)

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup)
    assert {k: v for k, v in handle.wait("errors").items() if k in ("zero", "float", "defer")} == {"zero": "ValueError", "float": "TypeError", "defer": "TypeError"}
    assert handle.stop() == 0


def test_a_raising_timer_is_logged_and_the_loop_goes_on(run_server):
    def setup(server, emit):
        def on_worker_start(srv, worker_id):
            def boom():
                raise RuntimeError("timer failure")

            srv.after(10, boom)
            srv.after(40, lambda: emit("still_running"))

        server.on("worker_start", on_worker_start)
        server.on("receive", lambda *a: None)

    handle = run_server(setup)
    handle.wait("still_running")
    assert handle.stop() == 0


def test_timer_heap_orders_and_clears():
    heap = TimerHeap()
    fired = []
    a = heap.add(0, lambda: fired.append("a"), (), periodic=False)
    b = heap.add(0, lambda: fired.append("b"), (), periodic=False)
    c = heap.add(0, lambda: fired.append("c"), (), periodic=False)
    assert a < b < c
    assert heap.clear(b) is True and heap.clear(b) is False
    for timer in heap.pop_due(time.monotonic() + 1):
        TimerHeap.fire(timer)
    assert fired == ["a", "c"] and len(heap) == 0


def test_reactor_post_from_other_threads_runs_on_the_loop_thread():
    reactor = Reactor("test")
    seen: list[int] = []
    total = 2000

    def add(value: int) -> None:
        seen.append(threading.get_ident())
        if len(seen) == total:
            reactor.stop()

    def producer() -> None:
        for i in range(total // 4):
            reactor.post(add, i)

    producers = [threading.Thread(target=producer) for _ in range(4)]
    loop = threading.Thread(target=reactor.run)
    loop.start()
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join()
    loop.join(10)
    assert not loop.is_alive()
    reactor.close()
    assert len(seen) == total and set(seen) == {loop.ident}


def test_reactor_timers_fire_in_order_and_tick_repeats():
    reactor = Reactor("test")
    fired: list[str] = []
    reactor.after(30, lambda: fired.append("late"))
    reactor.after(5, lambda: fired.append("early"))

    def on_tick(timer_id: int) -> None:
        fired.append("tick")
        if fired.count("tick") == 3:
            reactor.clear_timer(timer_id)

    reactor.tick(2, on_tick)
    reactor.after(60, reactor.stop)
    reactor.run()
    reactor.close()
    assert fired.count("tick") == 3
    assert fired.index("early") < fired.index("late")
