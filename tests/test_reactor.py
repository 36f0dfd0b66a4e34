"""The event loop's cross-thread door: `Reactor.post` from many threads at once, each post run
exactly once and soon, never left waiting in the queue while the loop sleeps in epoll."""

from __future__ import annotations

import logging
import socket
import sys
import threading

import pytest

from threadswoole.loop.reactor import EPOLLIN, Reactor

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def running_reactor():
    reactor = Reactor("test-post")
    thread = threading.Thread(target=reactor.run, name="test-post-loop", daemon=True)
    thread.start()
    yield reactor
    reactor.stop()
    thread.join(10)
    assert not thread.is_alive()
    reactor.close()


def test_every_post_from_racing_threads_runs_while_the_loop_would_otherwise_sleep(running_reactor):
    """Each poster waits for its own call before posting the next, so the loop is often asleep
    in epoll when a post arrives, and often just finishing another thread's call: the window in
    which a stale wake-up flag once left a post in the queue with the loop blocked for good."""
    posters, rounds = 4, 3000
    ran = [0] * posters
    stuck: list[str] = []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # with the GIL: switch threads as often as it allows

    def poster(index: int) -> None:
        done = threading.Event()

        def callback() -> None:
            ran[index] += 1
            done.set()

        for round_ in range(rounds):
            done.clear()
            running_reactor.post(callback)
            if not done.wait(5):
                stuck.append(f"poster {index}, round {round_}: the post did not run within 5 s")
                return

    try:
        threads = [threading.Thread(target=poster, args=(index,)) for index in range(posters)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(100)
    finally:
        sys.setswitchinterval(old_interval)
    assert stuck == []
    assert ran == [rounds] * posters


def test_a_post_during_a_call_the_loop_is_running_is_run_in_the_next_iteration(running_reactor):
    order: list[str] = []
    finished = threading.Event()

    def second() -> None:
        order.append("second")
        finished.set()

    def first() -> None:
        order.append("first")
        threading.Thread(target=running_reactor.post, args=(second,)).start()

    running_reactor.post(first)
    assert finished.wait(5)
    assert order == ["first", "second"]


def test_a_handler_that_raises_key_error_is_logged_and_the_loop_goes_on(caplog):
    """The loop looks handlers up with `handlers[fd]`: a KeyError from inside a handler is a
    failure to log like any other, not taken for an fd unregistered during the batch."""
    reactor = Reactor("test-keyerror")
    ours, peer = socket.socketpair()
    calls: list[int] = []

    def failing(_mask: int) -> None:
        calls.append(1)
        ours.recv(16)
        raise KeyError("inside the handler")

    try:
        reactor.add(ours.fileno(), EPOLLIN, failing)
        peer.send(b"x")
        reactor.after(0, reactor.stop)
        with caplog.at_level(logging.ERROR, logger="threadswoole"):
            reactor.run()
        assert calls == [1]
        assert any(f"handler for fd {ours.fileno()} failed" in r.getMessage() for r in caplog.records)
    finally:
        reactor.close()
        ours.close()
        peer.close()


def test_an_fd_unregistered_by_an_earlier_handler_of_the_same_batch_is_skipped_quietly(caplog):
    reactor = Reactor("test-unregistered")
    pairs = [socket.socketpair() for _ in range(2)]
    ran: list[int] = []

    def handler_for(index: int):
        def handler(_mask: int) -> None:
            ran.append(index)
            pairs[index][0].recv(16)
            other = pairs[1 - index][0].fileno()
            reactor.remove(other)  # whichever runs first unregisters the other, ready as well
        return handler

    try:
        for index, (ours, peer) in enumerate(pairs):
            reactor.add(ours.fileno(), EPOLLIN, handler_for(index))
            peer.send(b"x")
        reactor.after(0, reactor.stop)
        with caplog.at_level(logging.ERROR, logger="threadswoole"):
            reactor.run()
        assert len(ran) == 1
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        reactor.close()
        for ours, peer in pairs:
            ours.close()
            peer.close()


def test_a_loop_dropped_after_fork_never_closes_an_fd_that_reused_its_number():
    """close_after_fork closes the child's copy of the epoll fd; the epoll object, collected
    later, must not close that number again once a new file has taken it."""
    import gc
    import os

    from forking import Children

    holder = [Reactor("parent")]

    def child() -> None:
        reactor = holder.pop()
        reactor.close_after_fork()
        pipes = [os.pipe() for _ in range(4)]  # the lowest free numbers: the epoll's among them
        del reactor
        gc.collect()  # the epoll object goes here
        for read_end, write_end in pipes:
            os.write(write_end, b"x")
            assert os.read(read_end, 1) == b"x"

    children = Children()
    try:
        children.fork(child)
        children.wait_all_ok()
    finally:
        children.close()
        holder[0].close()


@pytest.mark.parametrize("queue", ["post", "defer"])
def test_a_call_that_runs_the_loop_once_itself_leaves_the_outer_loop_working(queue, caplog):
    """A shutdown drain runs `run_once` from inside a posted or deferred call (a reactor thread's
    close_everything, a worker's drain): that inner iteration runs the calls queued behind it,
    and the outer loop, which had counted them, must not then fail on an empty queue."""
    reactor = Reactor("test-nested")
    ran: list[str] = []
    finished = threading.Event()
    schedule = reactor.post if queue == "post" else (lambda call, *args: reactor.defer(lambda: call(*args)))

    def drain() -> None:
        ran.append("drain")
        reactor.run_once(0.0)  # runs "behind" below

    def behind() -> None:
        ran.append("behind")

    def last() -> None:
        ran.append("last")
        finished.set()
        reactor.stop()

    schedule(drain)
    schedule(behind)
    thread = threading.Thread(target=reactor.run, name="test-nested-loop", daemon=True)
    thread.start()
    try:
        reactor.post(last)
        assert finished.wait(10), f"the loop stopped working after a nested run_once: {ran}"
    finally:
        reactor.stop()
        thread.join(10)
        reactor.close()
    assert not thread.is_alive()
    assert sorted(ran) == ["behind", "drain", "last"] and ran.index("drain") < ran.index("behind"), ran  # each once
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
