"""threadswoole.Process on its own (contract §11, §17 items 52-54, 56): real forked children,
real pipes, real exec. Children report back through their pipe or a report channel; nothing
here sleeps to synchronise."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time

import psutil
import pytest

import threadswoole
from threadswoole import Event, Process, StateError, Timer, get_last_error
from threadswoole.process import ExecCallback

pytestmark = pytest.mark.timeout(30)


def read_line(proc: Process) -> bytes:
    """A stream pipe has no message boundaries: read until a newline (or end of file)."""
    received = b""
    while not received.endswith(b"\n"):
        chunk = proc.read()
        assert chunk is not False, get_last_error()
        if not chunk:
            break
        received += chunk
    return received


# -- construction and attributes --------------------------------------------------------------
def test_constants_and_attributes_before_start():
    assert Process.IPC_NOWAIT == 256
    assert (Process.PIPE_BOTH, Process.PIPE_WRITE, Process.PIPE_READ) == (0, 1, 2)
    proc = Process(lambda p: None)
    assert proc.pid is None and proc.id is None and isinstance(proc.pipe, int)
    assert Process(lambda p: None, pipe_type=0).pipe is None
    assert Process(lambda p: None, True, 2).pipe_type == 1  # redirect forces a stream pipe
    assert Process(lambda p: None, False, 2, 1).enable_coroutine is True  # seed 000's 4-argument form
    assert threadswoole.Process is Process


@pytest.mark.parametrize(
    "kwargs, error",
    [({"callback": 42}, TypeError), ({"callback": print, "pipe_type": 3}, ValueError), ({"callback": print, "pipe_type": "1"}, TypeError)],
)
def test_constructor_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        Process(**kwargs)


def test_callback_is_reassignable_and_gets_the_process(children):
    proc = Process(lambda p: p.write(b"first"))
    proc.callback = lambda p: p.write(f"second {p.pid} {os.getpid()} {p.pipe is not None}".encode())
    pid = children.add(proc.start())
    assert proc.pid == pid
    assert proc.read() == f"second {pid} {pid} True".encode()
    assert children.wait_for(pid)["code"] == 0
    with pytest.raises(StateError):
        proc.start()


# -- the pipe (§17 item 52) ------------------------------------------------------------------
def test_datagram_pipe_keeps_each_write_a_message(children):
    def child(p):
        p.write(b"one")
        p.write(b"two")

    proc = Process(child, pipe_type=2)
    pid = children.add(proc.start())
    assert children.wait_for(pid)["code"] == 0
    assert proc.read() == b"one"
    assert proc.read() == b"two"
    assert proc.read() == b""  # the child is gone: end of file, not a hang


def test_stream_pipe_may_merge_writes(children):
    def child(p):
        p.write(b"one")
        p.write(b"two")

    proc = Process(child, pipe_type=1)
    pid = children.add(proc.start())
    assert children.wait_for(pid)["code"] == 0
    assert proc.read() == b"onetwo"
    assert proc.read() == b""


def test_parent_writes_before_start_and_the_child_answers(children):
    proc = Process(lambda p: p.write(b"pong:" + p.read()))
    assert proc.write("ping") == 4  # str is UTF-8 encoded
    pid = children.add(proc.start())
    assert proc.read() == b"pong:ping"
    assert children.wait_for(pid)["code"] == 0


def test_write_and_read_limits():
    proc = Process(lambda p: None, pipe_type=2)
    with pytest.raises(ValueError):
        proc.write(b"x" * 8193)
    with pytest.raises(ValueError):
        proc.write(b"")
    with pytest.raises(TypeError):
        proc.write(123)
    for bad in (0, 65537):
        with pytest.raises(ValueError):
            proc.read(bad)
    with pytest.raises(TypeError):
        proc.read(True)
    assert proc.write(bytearray(b"y" * 8192)) == 8192  # the limit itself is fine


def test_read_timeout_and_non_blocking_mode():
    proc = Process(lambda p: None)
    assert proc.set_timeout(0.2) is True
    began = time.monotonic()
    assert proc.read() is False and get_last_error() == errno.ETIMEDOUT
    assert time.monotonic() - began >= 0.15
    assert proc.setTimeout(0.05) is True and proc.read() is False and get_last_error() == errno.ETIMEDOUT
    assert proc.set_blocking(False) is True
    assert proc.read() is False and get_last_error() == errno.EAGAIN
    assert proc.setBlocking(False) is True and proc.read() is False and get_last_error() == errno.EAGAIN
    assert proc.set_timeout(-1) is True and proc.export_socket().gettimeout() is None  # no timeout
    with pytest.raises(ValueError):
        proc.set_timeout(0)
    with pytest.raises(TypeError):
        proc.set_timeout("1")


def test_close_selectors():
    proc = Process(lambda p: None)
    with pytest.raises(ValueError):
        proc.close(3)
    assert proc.close(Process.PIPE_READ) is True
    assert proc.read() == b""  # our reading is shut down
    assert proc.close() is True and proc.pipe is None
    assert proc.read() is False and get_last_error() == errno.EBADF
    assert proc.close() is False and get_last_error() == errno.EBADF


def test_closing_the_write_side_gives_the_child_end_of_file(children):
    def child(p):
        received = b""
        while chunk := p.read():
            received += chunk
        p.write(b"saw eof after " + received)

    proc = Process(child, pipe_type=1)
    pid = children.add(proc.start())
    proc.write(b"data")
    assert proc.close(Process.PIPE_WRITE) is True
    assert proc.read() == b"saw eof after data"
    assert children.wait_for(pid)["code"] == 0


def test_export_socket_is_the_pipe_on_each_side(children):
    def child(p):
        sock = p.export_socket()
        sock.send(b"child got " + sock.recv(100))

    proc = Process(child, False, 2, 1)
    pid = children.add(proc.start())
    sock = proc.exportSocket()
    assert isinstance(sock, socket.socket) and sock is proc.export_socket() and sock.fileno() == proc.pipe
    sock.send(b"broadcast")
    assert sock.recv(100) == b"child got broadcast"
    assert children.wait_for(pid)["code"] == 0


def test_a_process_without_pipe_has_no_pipe_methods():
    proc = Process(lambda p: None, pipe_type=0)
    for call in (lambda: proc.write(b"x"), proc.read, proc.export_socket, lambda: proc.set_timeout(1)):
        with pytest.raises(StateError):
            call()


# -- redirect_stdin_stdout and exec (§17 items 53, 56) ----------------------------------------
def test_print_in_the_child_reaches_the_parent(children):
    proc = Process(lambda p: print("x"), True)
    pid = children.add(proc.start())
    assert read_line(proc) == b"x\n"
    assert children.wait_for(pid)["code"] == 0


def test_the_child_reads_its_stdin_from_the_pipe(children):
    proc = Process(lambda p: print(input().upper()), redirect_stdin_stdout=True)
    pid = children.add(proc.start())
    proc.write(b"abc\n")
    assert read_line(proc) == b"ABC\n"
    assert children.wait_for(pid)["code"] == 0


def test_exec_echo_talks_through_the_pipe(children):
    proc = Process(lambda p: p.exec("/bin/echo", ["hello", 123]), True)  # the seed's example
    pid = children.add(proc.start())
    assert read_line(proc) == b"hello 123\n"
    assert Process.wait() == {"pid": pid, "code": 0, "signal": 0}


def test_exec_a_python_program_with_arguments(children):
    code = "import sys; print(sys.argv[1:], flush=True); sys.exit(int(sys.stdin.readline()))"
    proc = Process(lambda p: p.exec(sys.executable, ["-c", code, "a b", 7]), True)
    pid = children.add(proc.start())
    assert read_line(proc) == b"['a b', '7']\n"
    proc.write(b"7\n")
    assert Process.wait() == {"pid": pid, "code": 7, "signal": 0}


def test_exec_needs_an_absolute_path(children, reports):
    proc = Process(lambda p: None)
    assert proc.exec("relative/path", []) is False and get_last_error() == errno.ENOENT
    with pytest.raises(TypeError):
        proc.exec("/bin/echo", "not a list")

    def child(p):
        reports.send([p.exec("bin/echo", []), get_last_error(), p.exec("/nonexistent/program", ["x"]), get_last_error()])

    pid = children.add(Process(child, pipe_type=0).start())
    assert reports.receive() == [False, errno.ENOENT, False, errno.ENOENT]
    assert children.wait_for(pid)["code"] == 0  # a failed exec returns to the callback


def test_exec_callback_spawns_the_program(children):
    proc = Process(Process.exec_callback("/bin/echo", ["spawned", 1]), redirect_stdin_stdout=True)
    assert isinstance(proc.callback, ExecCallback)
    pid = children.add(proc.start())
    assert read_line(proc) == b"spawned 1\n"
    assert Process.wait() == {"pid": pid, "code": 0, "signal": 0}
    assert Process(Process.exec_callback("bin/echo")).start() is False and get_last_error() == errno.ENOENT
    assert Process(Process.exec_callback("/nonexistent/program")).start() is False and get_last_error() == errno.ENOENT
    with pytest.raises(TypeError):
        Process.exec_callback("/bin/echo", [None])


# -- exit, wait, kill (§17 item 54) -----------------------------------------------------------
def test_wait_reports_the_exit_status_and_kill_zero_tests_existence(children):
    proc = Process(lambda p: (p.read(), p.exit(3)))
    pid = children.add(proc.start())
    assert Process.kill(pid, 0) is True
    assert Process.wait(False) is False  # still running
    proc.write(b"go")
    assert Process.wait() == {"pid": pid, "code": 3, "signal": 0}
    assert Process.kill(pid, 0) is False and get_last_error() == errno.ESRCH
    assert Process.wait() is False and get_last_error() == errno.ECHILD
    assert Process.wait(False) is False and get_last_error() == errno.ECHILD


def test_wait_reports_the_signal_that_killed_the_child(children):
    proc = Process(lambda p: p.read())
    pid = children.add(proc.start())
    assert Process.kill(pid) is True  # SIGTERM by default
    assert Process.wait() == {"pid": pid, "code": 0, "signal": 15}


@pytest.mark.parametrize("pid, signo, error", [(0, 0, ValueError), (-1, 15, ValueError), ("1", 0, TypeError), (1, 9999, ValueError)])
def test_kill_rejects_bad_arguments(pid, signo, error):
    with pytest.raises(error):
        Process.kill(pid, signo)


@pytest.mark.parametrize("status, pieces", [(0, [b"[atexit]", b"partial"]), (1, [])])
def test_exit_zero_cleans_up_and_nonzero_does_not(children, status, pieces):
    def child(p):
        import atexit

        atexit.register(lambda: os.write(1, b"[atexit]"))
        sys.stdout.write("partial")  # no newline: still in the line buffer
        p.exit(status)

    proc = Process(child, True)
    pid = children.add(proc.start())
    assert children.wait_for(pid)["code"] == status
    received = b""
    while chunk := proc.read():
        received += chunk
    assert len(received) == sum(map(len, pieces)) and all(piece in received for piece in pieces)


def test_exit_checks_its_status():
    with pytest.raises(ValueError):
        Process(print).exit(256)
    with pytest.raises(TypeError):
        Process(print).exit("0")


@pytest.mark.parametrize("body, code", [("return", 0), ("raise", 255), ("system_exit", 4)])
def test_exit_status_of_the_callback(children, body, code):
    def child(p):
        if body == "raise":
            raise RuntimeError("deliberate failure in a Process child")
        if body == "system_exit":
            raise SystemExit(4)

    pid = children.add(Process(child, pipe_type=0).start())
    assert children.wait_for(pid) == {"pid": pid, "code": code, "signal": 0}


# -- what the child inherits, and what it drops ----------------------------------------------
def test_the_child_has_a_private_loop_and_drops_inherited_timers(children, reports):
    def grandchild(q):
        reports.send({"timers": Timer.list()})

    def child(p):
        fired = []

        def on_tick(timer_id):
            fired.append(timer_id)
            if fired.count(timer_id) == 3:
                Timer.clear(timer_id)

        tick = Timer.tick(5, on_tick)
        Event.defer(lambda: fired.append("deferred"))
        inner = Process(grandchild, pipe_type=0)
        inner.start()
        reports.send({"own": Timer.list(), "tick": tick, "inner": Process.wait()["code"]})
        Event.wait()
        reports.send({"fired": fired})

    assert Event.wait() is None  # no private loop in a plain script: nothing to run
    with pytest.raises(StateError):
        Timer.tick(10, print)  # a plain script still has no loop (see threadswoole.timer)
    pid = children.add(Process(child, pipe_type=0).start())
    first, second = reports.receive(), reports.receive()
    grand, own = (first, second) if "timers" in first else (second, first)
    assert grand == {"timers": []}
    assert own["own"] == [own["tick"]] and own["inner"] == 0
    fired = reports.receive()["fired"]
    assert sorted(fired, key=str) == sorted(["deferred", *[own["tick"]] * 3], key=str)
    assert children.wait_for(pid)["code"] == 0


def test_the_child_runs_its_pending_timers_before_exiting(children, reports):
    def child(p):
        Timer.after(20, lambda: reports.send("timer fired after the callback returned"))

    pid = children.add(Process(child, pipe_type=0).start())
    assert reports.receive() == "timer fired after the callback returned"
    assert children.wait_for(pid)["code"] == 0


# -- name, set_affinity, daemon -----------------------------------------------------------------
def test_name_renames_the_child(children):
    def child(p):
        p.write(json.dumps(p.name("ts-process-name-too-long")).encode())
        p.read()  # stay alive until the parent has looked

    proc = Process(child)
    pid = children.add(proc.start())
    assert proc.read() == b"true"
    assert psutil.Process(pid).name() == "ts-process-name"  # the kernel keeps 15 bytes
    proc.write(b"done")
    assert children.wait_for(pid)["code"] == 0
    assert threadswoole.set_process_name is threadswoole.process.set_process_name
    with pytest.raises(TypeError):
        Process(print).name(42)


def test_set_affinity(children, reports):
    cpus = os.cpu_count()

    def child(p):
        results = {"one": Process.set_affinity([0]), "now": sorted(os.sched_getaffinity(0))}
        results["too_high"] = [Process.setAffinity([cpus]), get_last_error()]
        results["too_many"] = [Process.setaffinity(list(range(cpus)) + [0]), get_last_error()]
        results["empty"] = Process.set_affinity([])
        results["all"] = [Process.set_affinity(range(cpus)), sorted(os.sched_getaffinity(0))]
        reports.send(results)

    pid = children.add(Process(child, pipe_type=0).start())
    assert reports.receive() == {"one": True, "now": [0], "too_high": [False, errno.EINVAL], "too_many": [False, errno.EINVAL], "empty": False, "all": [True, list(range(cpus))]}
    assert children.wait_for(pid)["code"] == 0
    assert Process.setAffinity is Process.set_affinity and Process.setaffinity is Process.set_affinity
    with pytest.raises(TypeError):
        Process.set_affinity(["0"])


def _subreaper(on: bool) -> None:
    import ctypes

    assert ctypes.CDLL(None).prctl(36, int(on), 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER


@pytest.mark.parametrize("nochdir, noclose", [(True, True), (False, False)])
def test_daemon_in_a_grandchild(children, reports, nochdir, noclose):
    """The daemon (re-parented to this test, a subreaper for the occasion) reports its pid,
    session and stdio; the process that called daemon() exits 0 at once."""

    def child(p):
        before = os.getpid()
        Process.daemon(nochdir, noclose)
        deadline = time.monotonic() + 5
        while os.getppid() == before and time.monotonic() < deadline:
            time.sleep(0.01)  # the old process is exiting right now
        reports.send({"before": before, "pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "cwd": os.getcwd(), "stdout": os.readlink("/proc/self/fd/1")})

    _subreaper(True)
    try:
        cwd, stdout = os.getcwd(), os.readlink("/proc/self/fd/1")
        pid = children.add(Process(child, pipe_type=0).start())
        assert children.wait_for(pid) == {"pid": pid, "code": 0, "signal": 0}
        report = reports.receive()
        children.add(report["pid"])
        assert report["before"] == pid and report["pid"] != pid
        assert report["sid"] == report["pid"] and report["ppid"] == os.getpid()
        assert report["cwd"] == (cwd if nochdir else "/")
        assert report["stdout"] == (stdout if noclose else os.devnull)
        assert children.wait_for(report["pid"])["code"] == 0
    finally:
        _subreaper(False)


# -- aliases (contract §15) --------------------------------------------------------------------
def test_aliases_resolve_to_the_primary_names():
    proc = Process(lambda p: None)
    for spelling, primary in [("useQueue", "use_queue"), ("statQueue", "stat_queue"), ("freeQueue", "free_queue"), ("setTimeout", "set_timeout"), ("setBlocking", "set_blocking"), ("exportSocket", "export_socket"), ("setAffinity", "set_affinity"), ("setaffinity", "set_affinity")]:
        assert getattr(proc, spelling) == getattr(proc, primary)
        assert getattr(Process, spelling) is getattr(Process, primary)
    assert proc.exportSocket() is proc.export_socket()


def test_start_outside_a_server_allows_threads(children):
    """Outside a server a script with threads may still fork (Python's own rule applies)."""
    done = threading.Event()
    worker = threading.Thread(target=done.wait)
    worker.start()
    try:
        proc = Process(lambda p: p.write(b"forked"), pipe_type=2)
        with pytest.warns(DeprecationWarning) if sys.version_info >= (3, 12) else _no_warning():
            pid = children.add(proc.start())
        assert proc.read() == b"forked"
        assert children.wait_for(pid)["code"] == 0
    finally:
        done.set()
        worker.join()


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_readme_example_runs():
    import re
    import subprocess

    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")) as file:
        readme = file.read()
    code = re.search(r"## Process\n.*?```python\n(.*?)```", readme, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    status, hello = result.stdout.splitlines()
    pid = int(hello.split()[-1])
    assert hello == f"hello from {pid}" and status == repr({"pid": pid, "code": 0, "signal": 0})


def test_dropping_the_process_object_closes_the_pipe(children, reports):
    def child(p):
        while p.read():
            pass
        reports.send("the parent's end is closed")

    proc = Process(child)
    pid = children.add(proc.start())
    del proc  # Swoole: the pipe closes with the object; the child sees the close
    import gc

    gc.collect()
    assert reports.receive() == "the parent's end is closed"
    assert children.wait_for(pid)["code"] == 0
