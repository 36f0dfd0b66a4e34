"""Where a fork is safe, and what a forked or exec'd child resets (contract §11, §16).

Forking a process that runs threads is unsafe in Python: a lock another thread held at the
fork (the import lock, a logging handler, a buffered stream) stays locked forever in the
child. So inside a running server `Process.start()` forks only from process workers and
user processes (single-threaded); THREAD mode, and the master and manager (reactor threads,
and a SIGCHLD handler that would reap our children), refuse. A child that only execs a
program needs no Python after the fork: `os.posix_spawn` does fork + exec in C, which is
safe with threads, so `Process(Process.exec_callback(path, args))` is allowed everywhere
but the master and manager.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
import threading
from typing import Any, Literal, Sequence

from threadswoole._context import ROLE_TASK, ROLE_USER, ROLE_WORKER, current, set_error
from threadswoole.constants import SWOOLE_THREAD
from threadswoole.errors import ContextError

OUTSIDE = "outside"  # no server in this thread: a script or a Process child
PROCESS_WORKER = "process worker"  # an event/task worker or user process that is a process
THREADS = "THREAD-mode server"  # a worker or user-process thread of a THREAD-mode server
SUPERVISOR = "master or manager"  # any mode: reactor or worker threads, or the workers' SIGCHLD reaper

# Python ignores these at start-up; a program it execs expects them at their default
# (subprocess's restore_signals does the same).
_PYTHON_IGNORED = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name))
# A server's forked workers ignore the master's signals (server/_modes/_common.child_signals);
# a child started from a worker gets them back at their default.
WORKER_IGNORED = (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def fork_context() -> str:
    """Which of the four contexts the calling thread is in."""
    ctx = current()
    server = ctx.server
    if server is None:
        return OUTSIDE
    if ctx.role not in (ROLE_WORKER, ROLE_TASK, ROLE_USER):
        return SUPERVISOR
    if getattr(server, "mode", None) == SWOOLE_THREAD:
        return THREADS
    return PROCESS_WORKER


def refuse_in(what: str, *contexts: str) -> str:
    """Raise ContextError when the calling thread is in one of `contexts`; else return it."""
    where = fork_context()
    if where in contexts:
        raise ContextError(f"{what} is not allowed in the {where} ({_reason(where)})")
    return where


def _reason(where: str) -> str:
    if where == THREADS:
        return "its workers and user processes are threads of one process; to run a program use Process(Process.exec_callback(path, args))"
    return "it runs threads or reaps the workers; do it in a worker or a user process"


class ExecCallback:
    """A Process callback that only replaces the child with a program (`Process.exec_callback`).

    `Process.start()` recognises it and starts the program with `os.posix_spawn` (no Python
    code runs in the child), which is why it is allowed in a THREAD-mode server as well."""

    def __init__(self, execfile: str, args: Sequence[str | int] = ()) -> None:
        self.execfile = check_execfile(execfile)
        self.args = check_args(args)

    def __call__(self, process: Any) -> bool:
        return process.exec(self.execfile, self.args)

    def __repr__(self) -> str:
        return f"<ExecCallback {self.execfile} {self.args}>"


def check_execfile(execfile: Any) -> str:
    if not isinstance(execfile, str):
        raise TypeError(f"execfile must be a str, not {type(execfile).__name__}")
    return execfile


def check_args(args: Any) -> list[str]:
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise TypeError("args must be a list of arguments (str or int), not a string")
    for arg in args:
        if isinstance(arg, bool) or not isinstance(arg, (str, int)):
            raise TypeError(f"every argument must be a str or an int, not {type(arg).__name__}")
    return [str(arg) for arg in args]


def flush_stdio() -> None:
    """Flush Python's buffers before fork or exec, so their contents are written exactly once."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def exec_program(execfile: str, argv: list[str]) -> OSError:
    """os.execv with Python's ignored signals back at default; returns the error on failure."""
    flush_stdio()
    saved = {signo: signal.getsignal(signo) for signo in _PYTHON_IGNORED}
    if threading.current_thread() is not threading.main_thread():
        saved = {}  # only the main thread may change dispositions; exec keeps them then
    for signo in saved:
        signal.signal(signo, signal.SIG_DFL)
    try:
        os.execv(execfile, argv)
    except OSError as exc:
        for signo, handler in saved.items():
            signal.signal(signo, handler)
        return exc
    raise AssertionError("unreachable: execv returned")


def spawn_program(execfile: str, argv: list[str], stdio_fd: int | None, inside_server: bool) -> int:
    """posix_spawn `argv` (stdin/stdout on `stdio_fd` if given), every signal unblocked and
    the ones Python (and a server worker) ignore back at default; OSError when it cannot run."""
    flush_stdio()
    actions = [] if stdio_fd is None else [(os.POSIX_SPAWN_DUP2, stdio_fd, 0), (os.POSIX_SPAWN_DUP2, stdio_fd, 1)]
    defaults = _PYTHON_IGNORED + (WORKER_IGNORED if inside_server else ())
    return os.posix_spawn(execfile, argv, os.environ, file_actions=actions, setsigmask=(), setsigdef=defaults)


def daemonize(nochdir: bool, noclose: bool) -> None:
    """fork, the parent exits at once, the child leads a new session (libc daemon())."""
    flush_stdio()
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if not nochdir:
        os.chdir("/")
    if not noclose:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)


# -- Process.kill / wait / set_affinity ------------------------------------------------------
def kill(pid: Any, signo: Any) -> bool:
    for label, value in (("pid", pid), ("signo", signo)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{label} must be an int, not {type(value).__name__}")
    if pid <= 0:
        raise ValueError(f"pid must be > 0 (process groups are not targets), got {pid}")
    if signo != 0 and signo not in signal.valid_signals():
        raise ValueError(f"unknown signal {signo}")
    if fork_context() == THREADS and (pid == os.getpid() or current().role == ROLE_USER):
        raise ContextError("Process.kill(): in a THREAD-mode server user processes are threads of this process; the signal would hit the whole server")
    try:
        os.kill(pid, signo)
    except OSError as exc:
        return set_error(exc.errno or errno.ESRCH)
    return True


def wait(blocking: bool) -> dict[str, int] | Literal[False]:
    refuse_in("Process.wait()", SUPERVISOR)
    try:
        pid, status = os.waitpid(-1, 0 if blocking else os.WNOHANG)
    except ChildProcessError:
        return set_error(errno.ECHILD)
    if pid == 0:
        return False
    if os.WIFSIGNALED(status):
        return {"pid": pid, "code": 0, "signal": os.WTERMSIG(status)}
    return {"pid": pid, "code": os.WEXITSTATUS(status), "signal": 0}


def set_affinity(cpu_set: Any) -> bool:
    try:
        cpus = list(cpu_set)
    except TypeError:
        raise TypeError("cpu_set must be a list of CPU ids") from None
    for cpu in cpus:
        if isinstance(cpu, bool) or not isinstance(cpu, int):
            raise TypeError(f"CPU ids must be ints, not {type(cpu).__name__}")
    count = os.cpu_count() or 1
    if not cpus or len(cpus) > count or any(not 0 <= cpu < count for cpu in cpus):
        return set_error(errno.EINVAL)
    try:
        os.sched_setaffinity(0, cpus)
    except OSError as exc:
        return set_error(exc.errno or errno.EINVAL)
    return True


# -- process names --------------------------------------------------------------------------
PR_SET_NAME = 15
COMM_LENGTH = 15  # the kernel keeps 16 bytes with the NUL
_libc: Any = None


def set_process_name(name: str) -> bool:
    """Rename the current process (swoole_set_process_name): the kernel's `comm`, 15 bytes,
    via prctl(PR_SET_NAME); from a thread other than the main one /proc/self/comm as well
    (prctl names the calling thread). False where unsupported (macOS, seed 003)."""
    if not isinstance(name, str):
        raise TypeError(f"the process name must be a str, not {type(name).__name__}")
    if not sys.platform.startswith("linux"):
        return False
    raw = name.encode("utf-8", "replace")[:COMM_LENGTH]
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        done = _libc.prctl(PR_SET_NAME, ctypes.c_char_p(raw), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0
    except (OSError, AttributeError):
        done = False
    if threading.current_thread() is not threading.main_thread():
        try:
            with open("/proc/self/comm", "wb") as comm:
                comm.write(raw)
        except OSError:
            pass
    return done
