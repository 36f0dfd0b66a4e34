"""Process.use_queue / push / pop / stat_queue / free_queue (contract §11, §17 item 55) on real
SysV message queues. Every queue a test creates has a fresh key and must be gone afterwards
(the queue_keys fixture checks /proc/sysvipc/msg)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from threadswoole import ContextError, Process, StateError, get_last_error
from threadswoole.process import sysv

pytestmark = pytest.mark.timeout(30)
NOWAIT = Process.IPC_NOWAIT
WORKTREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def queue_process(key: int, mode: int = 2 | NOWAIT, callback=lambda p: None) -> Process:
    proc = Process(callback, pipe_type=0)
    assert proc.use_queue(key, mode) is True
    return proc


def kernel_limit(name: str) -> int:
    with open(f"/proc/sys/kernel/{name}") as limit:
        return int(limit.read())


def test_non_blocking_queue_before_start(queue_keys):
    key = queue_keys.new()
    proc = queue_process(key)
    assert proc.pop() is False and get_last_error() == errno.ENOMSG
    assert proc.push(b"a") is True and proc.push("bc") is True
    assert proc.stat_queue() == {"queue_num": 2, "queue_bytes": 3}
    assert sysv.listed_queues()[key] >= 0  # the kernel lists it under our key
    assert proc.pop() == b"a" and proc.pop() == b"bc"
    assert proc.statQueue() == proc.stat_queue() == {"queue_num": 0, "queue_bytes": 0}
    assert proc.free_queue() is True
    assert key not in sysv.listed_queues()
    with pytest.raises(StateError):
        proc.push(b"after free")


def test_children_compete_for_the_messages(children, queue_keys, reports):
    key = queue_keys.new()

    def consumer(p):
        reports.send([os.getpid(), p.pop().decode()])  # blocking pop

    consumers = [queue_process(key, 2, consumer) for _ in range(2)]
    pids = {children.add(c.start()) for c in consumers}
    producer = queue_process(key, 2)
    assert producer.push(b"job-1") and producer.push(b"job-2")
    got = [reports.receive(), reports.receive()]
    assert {pid for pid, _ in got} == pids
    assert sorted(job for _, job in got) == ["job-1", "job-2"]
    for pid in pids:
        assert children.wait_for(pid)["code"] == 0
    assert producer.stat_queue()["queue_num"] == 0
    assert producer.freeQueue() is True


def test_the_queue_outlives_the_process_that_filled_it(children, queue_keys):
    key = queue_keys.new()
    pid = children.add(Process(lambda p: (p.useQueue(key), p.push(b"left behind")), pipe_type=0).start())
    assert children.wait_for(pid)["code"] == 0
    later = queue_process(key)
    assert later.stat_queue() == {"queue_num": 1, "queue_bytes": len(b"left behind")}
    assert later.pop() == b"left behind"
    assert later.free_queue() is True


def test_full_queue_and_oversized_messages(queue_keys):
    proc = queue_process(queue_keys.new())
    chunk = b"x" * min(8192, kernel_limit("msgmax"))
    pushed = 0
    while proc.push(chunk):
        pushed += 1
        assert pushed <= kernel_limit("msgmnb") // len(chunk)
    assert get_last_error() == errno.EAGAIN and pushed >= 1
    assert proc.pop(len(chunk) - 1) is False and get_last_error() == errno.E2BIG  # it stays queued
    assert proc.stat_queue()["queue_num"] == pushed
    assert proc.pop(len(chunk)) == chunk
    assert proc.push(b"y" * (kernel_limit("msgmax") + 1)) is False and get_last_error() == errno.EINVAL
    assert proc.free_queue() is True


def test_mode_one_addresses_a_process_by_id(queue_keys):
    key = queue_keys.new()
    first, second = queue_process(key, 1 | NOWAIT), queue_process(key, 1 | NOWAIT)
    second.id = 1
    assert first.push(b"for id 0") and second.push(b"for id 1")
    assert second.pop() == b"for id 1"
    assert first.pop() == b"for id 0"
    assert first.pop() is False and get_last_error() == errno.ENOMSG
    assert first.free_queue() is True
    assert second.free_queue() is False  # the same queue, already removed
    assert get_last_error() in (errno.EINVAL, errno.EIDRM)


def test_queue_and_pipe_cannot_be_combined():
    with pytest.raises(ContextError):
        Process(lambda p: None).use_queue(1234)  # the default pipe_type is 2
    with pytest.raises(ContextError):
        Process(lambda p: None, True, 0).use_queue(1234)  # redirect forces a pipe


@pytest.mark.parametrize("key, mode, error", [(1, 3, ValueError), (1, 0, ValueError), (1 << 40, 2, ValueError), ("1", 2, TypeError), (1, True, TypeError)])
def test_use_queue_rejects_bad_arguments(key, mode, error):
    with pytest.raises(error):
        Process(lambda p: None, pipe_type=0).use_queue(key, mode)


def test_queue_calls_need_use_queue_first():
    proc = Process(lambda p: None, pipe_type=0)
    for call in (lambda: proc.push(b"x"), proc.pop, proc.stat_queue, proc.free_queue):
        with pytest.raises(StateError):
            call()
    with pytest.raises(ValueError):
        proc.pop(0)


def test_key_zero_is_ftok_of_the_main_script(tmp_path, queue_keys):
    """A script of its own (so the key is unique to this test): use_queue() with no key."""
    script = tmp_path / "queue_user.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            from threadswoole import Process
            from threadswoole.process import sysv
            info = os.stat(__file__)
            expected = (info.st_ino & 0xFFFF) | ((info.st_dev & 0xFF) << 16) | (1 << 24)
            proc = Process(print, pipe_type=0)
            assert proc.use_queue() is True
            assert expected in sysv.listed_queues(), (hex(expected), sysv.listed_queues())
            assert proc.push(b"keyed") and proc.pop() == b"keyed"
            print(expected)
            sys.stdout.flush()
            assert proc.free_queue() is True
            """
        )
    )
    info = os.stat(script)
    queue_keys.keys.append((info.st_ino & 0xFFFF) | ((info.st_dev & 0xFF) << 16) | (1 << 24))  # leak-checked too
    result = subprocess.run([sys.executable, str(script)], cwd=WORKTREE, env={**os.environ, "PYTHONPATH": WORKTREE}, capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == queue_keys.keys[-1]
