"""threadswoole.Atomic / Atomic.Long and threadswoole.Lock: semantics, processes, threads, kill -9, servers."""

from __future__ import annotations

import errno
import json
import logging
import pickle
import threading
import time

import pytest

from conftest import connect
from forking import Children, Pipe
from threadswoole import Atomic, Lock, StateError, Table, get_last_error
from threadswoole.state import shm as _shm


@pytest.fixture
def children():
    group = Children()
    yield group
    group.close()


@pytest.fixture
def pipe():
    channel = Pipe()
    yield channel
    channel.close()


# -- Atomic -------------------------------------------------------------------------------
def test_atomic_arithmetic_wraps_like_uint32():
    counter = Atomic()
    assert counter.get() == 0
    assert counter.add() == 1 and counter.add(9) == 10
    assert counter.sub(3) == 7 and counter.sub() == 6
    assert counter.sub(7) == 2**32 - 1  # unsigned 32-bit, as Swoole
    assert counter.add(2) == 1
    assert counter.set(5) is None and counter.get() == 5
    assert counter.cmpset(4, 9) is False and counter.get() == 5
    assert counter.cmpset(5, 9) is True and counter.get() == 9
    assert Atomic(2**32 - 1).add() == 0


def test_atomic_long_is_signed_64_bit():
    counter = Atomic.Long(-5)
    assert counter.add(10) == 5 and counter.sub(20) == -15
    counter.set(2**63 - 1)
    assert counter.add() == -(2**63)
    assert counter.cmpset(-(2**63), 7) and counter.get() == 7
    assert isinstance(counter, Atomic) and type(counter).__qualname__ == "Atomic.Long"


def test_atomic_arguments_are_checked():
    for bad in (-1, 2**32, 1.5, "1", True):
        with pytest.raises((TypeError, ValueError)):
            Atomic(bad)
    counter = Atomic()
    with pytest.raises(ValueError):
        counter.set(-1)
    with pytest.raises(ValueError):
        counter.cmpset(0, 2**32)
    with pytest.raises(TypeError):
        counter.add(1.5)
    with pytest.raises(TypeError):
        counter.sub("1")
    with pytest.raises(ValueError):
        Atomic.Long(2**63)
    with pytest.raises(ValueError):
        counter.wakeup(0)
    with pytest.raises(TypeError):
        counter.wait("1")
    with pytest.raises(TypeError, match="inheritance"):
        pickle.dumps(counter)


def test_wait_and_wakeup_in_one_thread():
    event = Atomic()
    started = time.monotonic()
    assert event.wait(0.2) is False and 0.19 <= time.monotonic() - started < 2
    assert event.wakeup() is True and event.get() == 1  # no waiter: the wake-up is kept
    assert event.wait(5) is True and event.get() == 0  # ... and taken by the next wait
    event.set(5)
    assert event.wait(5) is True and event.get() == 5  # a value other than 1 is left as it is
    event.set(0)
    assert event.wait(0) is False


def _wait_for_waiters(event, count, timeout=10.0):
    """Until `count` callers sleep in event.wait() (read from the atomic's waiters word)."""
    deadline = time.monotonic() + timeout
    while event._words[event._index + 2] < count:
        assert time.monotonic() < deadline, "the waiters did not start waiting"
        time.sleep(0.005)


def test_wakeup_n_wakes_n_waiting_threads():
    event = Atomic()
    results = []
    threads = [threading.Thread(target=lambda: results.append((event.wait(10), time.monotonic()))) for _ in range(3)]
    for thread in threads:
        thread.start()
    _wait_for_waiters(event, 3)
    woken_at = time.monotonic()
    event.wakeup(2)
    deadline = time.monotonic() + 5
    while len(results) < 2:
        assert time.monotonic() < deadline, "wakeup(2) did not wake two waiters"
        time.sleep(0.005)
    time.sleep(0.3)  # a window in which a third, wrongly woken waiter would show up
    assert [ok for ok, _ in results] == [True, True]
    assert all(at - woken_at < 0.5 for _, at in results)
    event.wakeup(1)
    for thread in threads:
        thread.join(10)
    assert [ok for ok, _ in results] == [True, True, True]


def test_wakeup_reaches_waiters_in_other_processes(children, pipe):
    event, woken = Atomic(), Atomic()

    def waiter():
        pipe.signal()
        assert event.wait(20) is True
        woken.add()

    for _ in range(2):
        children.fork(waiter)
    pipe.wait(2)
    _wait_for_waiters(event, 2)
    assert woken.get() == 0
    event.wakeup(2)
    children.wait_all_ok(10)
    assert woken.get() == 2


def test_atomic_adds_from_processes_and_threads_are_exact(children):
    counter, long_counter = Atomic(), Atomic.Long(-(10**12))
    rounds = 5000

    def work():
        for _ in range(rounds):
            counter.add()
            long_counter.sub(2)

    for _ in range(3):
        children.fork(work)
    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    children.wait_all_ok(60)
    assert counter.get() == 6 * rounds
    assert long_counter.get() == -(10**12) - 12 * rounds


def test_cmpset_elects_exactly_one_winner_per_round(children):
    ballot, wins = Atomic(), Atomic()
    rounds = 300

    def contend():
        for round_ in range(rounds):
            while ballot.get() < 2 * round_:
                pass
            if ballot.cmpset(2 * round_, 2 * round_ + 1):
                wins.add()
                ballot.set(2 * round_ + 2)

    for _ in range(3):
        children.fork(contend)
    children.wait_all_ok(60)
    assert wins.get() == rounds and ballot.get() == 2 * rounds


# -- Lock ---------------------------------------------------------------------------------
def test_mutex_semantics():
    lock = Lock()
    assert lock.type == Lock.MUTEX == 3
    assert lock.lock() is True
    assert lock.lock() is False and lock.err_code == lock.errCode == errno.EDEADLK == get_last_error()
    assert lock.trylock() is False
    assert lock.unlock() is True
    assert lock.unlock() is False and lock.err_code == errno.EPERM
    assert lock.trylock() is True and lock.unlock()
    assert lock.lockwait(0.1) is True and lock.unlock()
    with lock:
        assert lock.trylock() is False
    assert lock.trylock() and lock.unlock()
    with pytest.raises(StateError):
        with lock:
            with lock:
                pass
    assert lock.lock_read() and lock.trylock_read() is False and lock.unlock()


def test_lock_types_and_bad_arguments():
    assert Lock(Lock.SPINLOCK).lock()
    for unsupported in (Lock.FILELOCK, Lock.SEM):
        with pytest.raises(ValueError, match="no longer supported"):
            Lock(unsupported)
    with pytest.raises(ValueError):
        Lock(9)
    with pytest.raises(TypeError):
        Lock("mutex")
    lock = Lock()
    with pytest.raises(TypeError):
        lock.lock_wait("1")
    lock.destroy()
    with pytest.raises(StateError):
        lock.lock()
    with pytest.raises(TypeError):
        pickle.dumps(Lock())


def test_a_lock_held_by_another_thread():
    lock = Lock()
    results = {}
    holding, release = threading.Event(), threading.Event()

    def holder():
        lock.lock()
        holding.set()
        release.wait(10)
        lock.unlock()

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(10)
    results["try"] = lock.trylock()
    started = time.monotonic()
    results["wait"] = lock.lock_wait(0.3)
    results["waited"] = time.monotonic() - started
    results["unlock"] = lock.unlock()  # not ours
    release.set()
    thread.join(10)
    assert results["try"] is False and results["wait"] is False and 0.29 <= results["waited"] < 3
    assert results["unlock"] is False and lock.err_code == errno.EPERM
    assert lock.lock_wait(1) and lock.unlock()


@pytest.mark.parametrize("kind", [Lock.MUTEX, Lock.RWLOCK])
def test_a_lock_excludes_other_processes_and_threads(children, kind):
    """Read-modify-write of a table row, unsafe on its own, is exact under the lock."""
    lock = Lock(kind)
    table = Table(64)
    table.column("n", Table.TYPE_INT)
    table.create()
    table.set("k", {"n": 0})
    rounds = 1500

    def work():
        for _ in range(rounds):
            with lock:
                table.set("k", {"n": table.get("k", "n") + 1})

    for _ in range(2):
        children.fork(work)
    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    children.wait_all_ok(60)
    assert table.get("k", "n") == 4 * rounds
    table.destroy()


def test_rwlock_readers_share_and_writers_exclude(children, pipe):
    lock = Lock(Lock.RWLOCK)
    assert lock.lock_read() and lock.lock_read()  # a reader may hold it several times

    def reader_in_another_process():
        assert lock.trylock_read() is True  # readers share
        assert lock.trylock() is False  # holding a read: no write, no upgrade (EDEADLK)
        assert lock.unlock()
        assert lock.trylock() is False  # the parent still reads: busy

    children.fork(reader_in_another_process)
    children.wait_all_ok()
    assert lock.unlock() and lock.unlock() and lock.unlock() is False
    assert lock.lock() is True

    def blocked_reader():
        assert lock.trylock_read() is False and lock.err_code == errno.EBUSY
        pipe.signal()
        started = time.monotonic()
        assert lock.lock_read() is True  # waits for the writer
        assert time.monotonic() - started > 0.1
        lock.unlock()

    children.fork(blocked_reader)
    pipe.wait()
    time.sleep(0.3)
    assert lock.unlock() is True
    children.wait_all_ok()
    assert lock.lock_wait(1) and lock.unlock()


def _hold_then_die(lock, how, ready):
    assert getattr(lock, how)()
    ready.signal()
    time.sleep(60)


@pytest.mark.parametrize("kind,how", [(Lock.MUTEX, "lock"), (Lock.RWLOCK, "lock"), (Lock.RWLOCK, "lock_read")])
def test_a_holder_killed_with_kill_9_does_not_block_the_others(children, pipe, caplog, kind, how):
    lock = Lock(kind)
    pid = children.fork(_hold_then_die, lock, how, pipe)
    pipe.wait()
    assert lock.trylock() is False
    children.kill(pid)
    with caplog.at_level(logging.WARNING, logger="threadswoole"):
        started = time.monotonic()
        assert lock.lock_wait(5) is True
        assert time.monotonic() - started < 2
    assert "died" in caplog.text
    assert lock.unlock() and lock.trylock() and lock.unlock()


def test_an_atomic_whose_user_was_killed_mid_operation_still_works(children, pipe):
    counter = Atomic()

    def hold():
        from threadswoole.sharing.native_sync import mutex_lock

        mutex_lock(counter._mutex)  # what a process killed inside add() leaves behind
        pipe.signal()
        time.sleep(60)

    pid = children.fork(hold)
    pipe.wait()
    children.kill(pid)
    assert counter.add(3) == 3 and counter.get() == 3


# -- inside real servers ------------------------------------------------------------------
def _atomic_server(rounds):
    def setup(server, emit):
        counter, long_counter, lock = Atomic(), Atomic.Long(), Lock()
        table = Table(64)
        table.column("n", Table.TYPE_INT)
        table.create()
        table.set("k", {"n": 0})

        def on_worker_start(srv, worker_id):
            for _ in range(rounds):
                counter.add()
                long_counter.sub()
                with lock:  # a read-modify-write made safe by the lock
                    table.set("k", {"n": table.get("k", "n") + 1})
            emit("done", worker_id=worker_id)

        def on_receive(srv, fd, reactor_id, data):
            srv.send(fd, json.dumps([counter.get(), long_counter.get(), table.get("k", "n")]).encode() + b"\n")

        server.on("worker_start", on_worker_start)
        server.on("receive", on_receive)

    return setup


@pytest.mark.timeout(90)
def test_atomics_and_locks_in_workers_of_every_mode(run_server, mode):
    rounds, workers = 1000, 3
    handle = run_server(_atomic_server(rounds), mode=mode, settings={"worker_num": workers})
    handle.wait_n("done", workers, timeout=60)
    with connect(handle.port) as client:
        client.sendall(b"?")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = client.recv(4096)
            assert chunk
            reply += chunk
    assert json.loads(reply) == [workers * rounds, -workers * rounds, workers * rounds]
    assert any("_sync_" in name for name in _shm.segments_of(handle.pid))
    assert handle.stop() == 0
    assert _shm.segments_of(handle.pid) == []
