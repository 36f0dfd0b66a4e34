"""`threadswoole.Process` (contract §11): a forked child with a socketpair pipe, SysV queues,
signals, alarm, exec, daemon and CPU affinity.

    proc = Process(lambda p: p.write(b"hello"))
    proc.start()
    assert proc.read() == b"hello"
    Process.wait()

The pipe is created with the object (so `write` and `export_socket` work before `start()`
and a server can fork workers that inherit the parent end). Each side talks on its own end:
the parent (and every process that inherits the object without being the child) on the
parent end, the child on the child end. Where a fork is allowed: see threadswoole._forking.

Hooks for the server's user processes (`server.add_process`, not done here). The manager
calls, for one Process object, on every (re)spawn:

    process.before_fork()                    # flush stdio; the pipe already exists
    pid = os.fork()                          # the caller blocks signals around it
    child:  process.enter_child()            # close the parent end, redirect stdio, reset
                                             # signals, forget the parent's loop and context
                                             # (it closes the fds of the reactor in
                                             # current().loop: do not close that one again)
            (bind the user-process context: role "user", its own reactor, ...)
            code = process.run_callback()    # exit code: 0, SystemExit's, 255 on exception
            os._exit(code)                   # or process.finish_child(code): atexit + flush on 0
    parent: process.enter_parent(pid, keep_child_end=True)   # keep the child end: respawns reuse it

In THREAD mode a user process is a thread: `process.enter_thread()` in that thread makes it
talk on the child end while the workers (other threads) keep the parent end, then
`run_callback()`; set `process.pid = os.getpid()` and `process.id` yourself. At shutdown the
server calls `process.shutdown_thread_pipe()` so a thread blocked reading its end wakes up.
"""

from __future__ import annotations

import atexit
import errno
import os
import signal
import socket
import sys
import threading
import traceback
from typing import Any, Callable, Literal, NoReturn, Sequence

from threadswoole import _forking, timer
from threadswoole.process import signal_handlers
from threadswoole._aliases import alias
from threadswoole._context import current, set_error
from threadswoole._forking import SUPERVISOR, THREADS, ExecCallback, set_process_name
from threadswoole._arguments import as_bytes
from threadswoole.process.message_queue import IPC_NOWAIT, QueueMethods, check_size
from threadswoole.errors import StateError

WRITE_LIMIT = 8192  # seed 003/004: at most 8K per write on Linux

# pipe_type 2 is Swoole's SOCK_DGRAM pair; SOCK_SEQPACKET keeps exactly its message boundaries
# and adds what a datagram pair lacks: read() returns b"" once the other side has closed
# (a datagram socket would block forever), and write() fails with EPIPE instead of hanging.
_PIPE_TYPES = {1: socket.SOCK_STREAM, 2: socket.SOCK_SEQPACKET}
_CHILD = "child"
_SIGTERM = signal.SIGTERM  # defaults of kill/alarm: inside the class body `signal` is the method
_ITIMER_REAL = signal.ITIMER_REAL


class Process(QueueMethods):
    """A child process and its pipe (or SysV queue) to the parent."""

    IPC_NOWAIT = IPC_NOWAIT  # Swoole's flag for use_queue(mode | IPC_NOWAIT)
    PIPE_BOTH, PIPE_WRITE, PIPE_READ = 0, 1, 2  # close() selectors, seed 003 numbering

    def __init__(self, callback: Callable[["Process"], Any], redirect_stdin_stdout: bool = False, pipe_type: int = 2, enable_coroutine: bool = False) -> None:
        if not callable(callback):
            raise TypeError("the Process callback must be callable")
        if not isinstance(pipe_type, int):
            raise TypeError(f"pipe_type must be an int, not {type(pipe_type).__name__}")
        if pipe_type not in (0, 1, 2):
            raise ValueError(f"pipe_type must be 0 (none), 1 (stream) or 2 (datagram), got {pipe_type}")
        self.callback = callback
        self.redirect_stdin_stdout = bool(redirect_stdin_stdout)
        self.pipe_type = 1 if self.redirect_stdin_stdout else int(pipe_type)  # seed: forced to stream
        self.enable_coroutine = bool(enable_coroutine)  # accepted for Swoole's signature; no coroutines here
        self.pid: int | None = None
        self.id: int | None = None
        self._ends: dict[str, socket.socket | None] = {"parent": None, _CHILD: None}
        if self.pipe_type:
            self._ends["parent"], self._ends[_CHILD] = socket.socketpair(socket.AF_UNIX, _PIPE_TYPES[self.pipe_type])
        self._local = threading.local()  # .side = "child" in a THREAD-mode user process
        self._is_child = False
        self._started = False
        self.init_queue()

    def __repr__(self) -> str:
        return f"<Process pid={self.pid} pipe_type={self.pipe_type} pipe={self.pipe}>"

    def __del__(self) -> None:
        for sock in getattr(self, "_ends", {}).values():
            if sock is not None:
                sock.close()

    # -- the pipe -----------------------------------------------------------------------
    def _side(self) -> str:
        return _CHILD if self._is_child or getattr(self._local, "side", None) == _CHILD else "parent"

    @property
    def pipe(self) -> int | None:
        """This side's pipe fd (the parent end, or the child end inside the child); None if none."""
        sock = self._ends[self._side()]
        return None if sock is None else sock.fileno()

    def _socket(self, what: str) -> socket.socket | None:
        if not self.pipe_type:
            raise StateError(f"{what}(): this Process has no pipe (pipe_type=0)")
        sock = self._ends[self._side()]
        if sock is None:
            set_error(errno.EBADF)
        return sock

    def write(self, data: Any) -> int | Literal[False]:
        """Send `data` (at most 8192 bytes; one message in datagram mode) to the other side."""
        payload = as_bytes(data)
        if not payload:
            raise ValueError("write(): nothing to write")
        if len(payload) > WRITE_LIMIT:
            raise ValueError(f"write(): at most {WRITE_LIMIT} bytes per call, got {len(payload)}")
        sock = self._socket("write")
        if sock is None:
            return False
        try:
            if sock.gettimeout() is None:
                sock.sendall(payload)
                return len(payload)
            return sock.send(payload)
        except TimeoutError:
            return set_error(errno.ETIMEDOUT)
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)

    def read(self, size: int = 8192) -> bytes | Literal[False]:
        """Receive up to `size` bytes (one whole message in datagram mode); b"" once the other
        side closed; False on timeout or error."""
        check_size(size, "size")
        sock = self._socket("read")
        if sock is None:
            return False
        try:
            return sock.recv(size)
        except TimeoutError:
            return set_error(errno.ETIMEDOUT)
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)

    def set_timeout(self, seconds: float) -> bool:
        """Timeout of this side's reads and writes; a negative value removes it (block forever)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        if seconds == 0:
            raise ValueError("set_timeout(0): use set_blocking(False) for a non-blocking pipe")
        sock = self._socket("set_timeout")
        if sock is None:
            return False
        sock.settimeout(None if seconds < 0 else float(seconds))
        return True

    def set_blocking(self, blocking: bool = True) -> bool:
        """Blocking (default) or non-blocking pipe: a non-blocking read with no data is False + EAGAIN."""
        sock = self._socket("set_blocking")
        if sock is None:
            return False
        sock.setblocking(bool(blocking))
        return True

    def close(self, which: int = 0) -> bool:
        """Close this side of the pipe: 0 entirely, 1 its writing, 2 its reading (seed 003)."""
        if isinstance(which, bool) or which not in (self.PIPE_BOTH, self.PIPE_WRITE, self.PIPE_READ):
            raise ValueError(f"which must be 0 (both), 1 (write) or 2 (read), got {which!r}")
        sock = self._socket("close")
        if sock is None:
            return False
        try:
            if which == self.PIPE_BOTH:
                self._ends[self._side()] = None
                sock.close()
            else:
                sock.shutdown(socket.SHUT_WR if which == self.PIPE_WRITE else socket.SHUT_RD)
        except OSError as exc:
            return set_error(exc.errno or errno.EIO)
        return True

    def export_socket(self) -> socket.socket:
        """This side's end of the pipe as a blocking socket.socket (the pipe itself, not a copy)."""
        sock = self._socket("export_socket")
        if sock is None:
            raise StateError("export_socket(): the pipe is closed")
        sock.setblocking(True)
        return sock

    # -- starting the child -----------------------------------------------------------------
    @staticmethod
    def exec_callback(execfile: str, args: Sequence[str | int] = ()) -> ExecCallback:
        """A callback that only runs `execfile` in the child: such a Process starts through
        posix_spawn (no Python in the child), so it may be started in a THREAD-mode server too."""
        return ExecCallback(execfile, args)

    def start(self) -> int | Literal[False]:
        """Fork the child, which runs `callback(self)` and exits (0; 255 on an exception).
        Returns the child's pid, or False with the errno recorded."""
        if self._started:
            raise StateError("start(): this Process was already started; create a new one")
        if not callable(self.callback):
            raise TypeError("the Process callback must be callable")
        if isinstance(self.callback, ExecCallback):
            return self._spawn(self.callback)
        _forking.refuse_in("Process.start()", THREADS, SUPERVISOR)
        self.before_fork()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            return set_error(exc.errno or errno.EAGAIN)
        if pid == 0:
            code = 255
            try:
                self.enter_child()  # with every signal still blocked: no parent handler runs here
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                code = self.run_callback()
            except BaseException:
                traceback.print_exc()
            finally:
                self.finish_child(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self.enter_parent(pid)
        return pid

    def _spawn(self, program: ExecCallback) -> int | Literal[False]:
        _forking.refuse_in("Process.start()", SUPERVISOR)
        if not os.path.isabs(program.execfile):
            return set_error(errno.ENOENT)
        child_end = self._ends[_CHILD]
        stdio = child_end.fileno() if self.redirect_stdin_stdout and child_end is not None else None
        try:
            pid = _forking.spawn_program(program.execfile, [program.execfile, *program.args], stdio, current().server is not None)
        except OSError as exc:
            return set_error(exc.errno or errno.ENOEXEC)
        self.enter_parent(pid)
        return pid

    # hooks (also the server's, see the module docstring) -------------------------------
    def before_fork(self) -> None:
        """In the parent, right before os.fork(): flush stdio so no buffer is written twice."""
        _forking.flush_stdio()

    def enter_parent(self, pid: int, keep_child_end: bool = False) -> None:
        """In the parent after the fork: record the pid; close the child's end of the pipe
        (so read() sees b"" when the child is gone) unless a respawn will need it."""
        self.pid = pid
        self._started = True
        child_end = self._ends[_CHILD]
        if child_end is not None and not keep_child_end:
            self._ends[_CHILD] = None
            child_end.close()

    def enter_child(self) -> None:
        """In the forked child: the inherited event loop, timers, signal handlers and worker
        context are dropped (seed 003), the parent end is closed, stdio is redirected."""
        self._is_child = True
        self._started = True
        self.pid = os.getpid()
        ctx = current()
        inherited_loop, inside_server = ctx.loop, ctx.server is not None
        ctx.reset()
        if inherited_loop is not None and hasattr(inherited_loop, "close_after_fork"):
            inherited_loop.close_after_fork()  # the parent's epoll fd and wake-up pair
        timer.allow_private_loop()
        signal_handlers.reset_for_child(_forking.WORKER_IGNORED if inside_server else ())
        parent_end = self._ends["parent"]
        if parent_end is not None:
            self._ends["parent"] = None
            parent_end.close()
        child_end = self._ends[_CHILD]
        if self.redirect_stdin_stdout and child_end is not None:
            os.dup2(child_end.fileno(), 0)
            os.dup2(child_end.fileno(), 1)
            # New stream objects on fds 0/1: the old ones may not even be on those fds (a test
            # runner's capture), and print() must reach the parent line by line.
            sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
            sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)

    def enter_thread(self) -> None:
        """THREAD mode: the calling thread is this user process and talks on the child end."""
        self._local.side = _CHILD

    def shutdown_thread_pipe(self) -> None:
        """THREAD mode, server shutdown: wake the user-process thread if it is blocked reading
        its end of the pipe (the read returns b""); the server calls it, with SystemExit."""
        child_end = self._ends[_CHILD]
        if child_end is not None:
            try:
                child_end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run_callback(self) -> int:
        """Run the callback, then (outside a server) the private loop while it has timers;
        returns the exit code: 0, SystemExit's code, 255 after an exception (printed)."""
        try:
            self.callback(self)
            ctx = current()
            if ctx.loop is None and ctx.server is None and timer.has_pending_work():
                timer.Event.wait()
            return 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                return (exc.code or 0) & 0xFF
            print(exc.code, file=sys.stderr)
            return 1
        except BaseException:
            traceback.print_exc()
            return 255

    def finish_child(self, code: int) -> NoReturn:
        """End the child: status 0 runs atexit handlers and flushes stdio first (seed: normal
        exit); any other status flushes stdio only. Never returns into the parent's stack."""
        try:
            if code == 0:
                atexit._run_exitfuncs()  # what interpreter exit runs; os._exit skips it
            _forking.flush_stdio()
        finally:
            os._exit(code & 0xFF)

    # -- in the child -----------------------------------------------------------------------
    def name(self, process_name: str) -> bool:
        """Rename this process (set_process_name); call it in the child."""
        return set_process_name(process_name)

    def exec(self, execfile: str, args: Sequence[str | int]) -> bool:
        """Replace this process with `execfile` (an absolute path; else False + ENOENT) run with
        `args`; returns only on failure. With redirect_stdin_stdout the program's stdio is the pipe."""
        _forking.check_execfile(execfile)
        argv = [execfile, *_forking.check_args(args)]
        _forking.refuse_in("Process.exec()", THREADS, SUPERVISOR)
        if not os.path.isabs(execfile):
            return set_error(errno.ENOENT)
        return set_error(_forking.exec_program(execfile, argv).errno or errno.ENOEXEC)

    def exit(self, status: int = 0) -> NoReturn:
        """Exit this process: 0 runs atexit handlers and flushes stdio first; any other status
        exits at once, without cleanup (seed)."""
        if isinstance(status, bool) or not isinstance(status, int):
            raise TypeError(f"status must be an int, not {type(status).__name__}")
        if not 0 <= status <= 255:
            raise ValueError(f"status must be between 0 and 255, got {status}")
        _forking.refuse_in("Process.exit()", THREADS)
        if status:
            os._exit(status)
        self.finish_child(0)

    # -- static functions -------------------------------------------------------------------
    @staticmethod
    def kill(pid: int, signo: int = _SIGTERM) -> bool:
        """Send `signo` to `pid`; signo 0 only tests that the process exists."""
        return _forking.kill(pid, signo)

    @staticmethod
    def wait(blocking: bool = True) -> dict[str, int] | Literal[False]:
        """Reap one exited child: {'pid', 'code', 'signal'}; False when none is left (ECHILD)
        or, with blocking=False, none has exited yet."""
        return _forking.wait(blocking)

    @staticmethod
    def daemon(nochdir: bool = True, noclose: bool = True) -> bool:
        """Become a daemon: fork (the pid changes, the old process exits), new session;
        nochdir=False changes to "/", noclose=False points stdio at /dev/null."""
        _forking.refuse_in("Process.daemon()", THREADS, SUPERVISOR)
        try:
            _forking.daemonize(bool(nochdir), bool(noclose))
        except OSError as exc:
            return set_error(exc.errno or errno.EAGAIN)
        return True

    @staticmethod
    def signal(signo: int, callback: Callable[[int], Any] | None) -> bool:
        """Call `callback(signo)` on this process's loop when `signo` arrives; None removes it."""
        return signal_handlers.install(signo, callback)

    @staticmethod
    def alarm(interval_usec: int, type: int = _ITIMER_REAL) -> bool:  # noqa: A002 - Swoole's name
        """Periodic interval timer (SIGALRM / SIGVTALRM / SIGPROF every `interval_usec` µs);
        a negative interval clears it. Not together with Timer (ContextError)."""
        return signal_handlers.alarm(interval_usec, type)

    @staticmethod
    def set_affinity(cpu_set: Sequence[int]) -> bool:
        """Pin the calling process (thread, in THREAD mode) to these CPUs; False for an id
        >= the CPU count or more ids than CPUs."""
        return _forking.set_affinity(cpu_set)

    # -- Swoole spellings (contract §15) ----------------------------------------------------
    useQueue = alias("use_queue")
    statQueue = alias("stat_queue")
    freeQueue = alias("free_queue")
    setTimeout = alias("set_timeout")
    setBlocking = alias("set_blocking")
    exportSocket = alias("export_socket")
    setAffinity = alias("set_affinity")
    setaffinity = alias("set_affinity")


__all__ = ["Process", "ExecCallback", "set_process_name"]
