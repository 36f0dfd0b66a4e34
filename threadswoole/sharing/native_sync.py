"""Cross-process locks and waits for Table, Atomic and Lock: robust pthread mutexes and futexes (ctypes).

The standard library has no atomic read-modify-write on shared memory, so every shared word that
several writers change is changed under a lock that lives in the segment itself. The lock was
chosen by measurement (`python -m stress.table_bench --primitives`, 2-core box shared with other
jobs; microseconds per call, CPython 3.11 | free-threaded 3.13t with PYTHON_GIL=0):

    multiprocessing.Lock acquire+release (a POSIX semaphore) .... 0.09 | 0.14
    robust pthread mutex trylock+unlock through ctypes .......... 0.38 | 0.66
    futex(2) wake through ctypes syscall() ...................... 1.60 | 2.42
    libatomic __atomic_fetch_add_8 through ctypes ............... 0.58 | 0.88  (not always installed)
    a whole Table.incr / set / get (3 columns), with the mutex .. 1.4 / 1.9 / 1.6 | 2.9 / 3.9 / 2.9
    a Manager().dict() operation, 2 client processes ............ about 25 us wall, 22 us of CPU

A semaphore would save about 0.3 us of a 1.4-2 us operation (15-20%): the rest is the
interpreter. But semaphores are not robust: after a `kill -9` of the holder nothing tells the
others, and an owner word written beside the semaphore leaves a window (between acquiring and
writing the word) in which a death cannot be told from a live holder, so recovery would have to
guess from a timeout. A pthread mutex made PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST is on
its holder thread's robust list: when the holder dies (process killed, thread ended) the kernel
marks it and the next locker gets EOWNERDEAD, exactly, with no window and no polling. So every
lock here is one, ERRORCHECK type as well (relocking from the holding thread returns EDEADLK
instead of hanging; unlocking from another thread returns EPERM).

Calls that cannot block (trylock, unlock, consistent) keep the GIL (PYFUNCTYPE: no release and
re-acquire around a call that takes nanoseconds); `pthread_mutex_lock` releases it (CFUNCTYPE),
since it may sleep. The Table's writers and Atomic make exactly two ctypes calls: trylock and
unlock (the Table's through `mutex_handle`, the cheapest form ctypes has); the blocking lock only
runs when the trylock found the mutex busy. The Table's readers of a head row make none on x86
(a seqlock beside the mutex, see table_paths.py); a writer's death still reaches them through
the mutex, which they take when the sequence says a write is under way.

Waiting for a value (Atomic.wait, a contended read-write lock) uses futex(2) on a 32-bit word of
the segment (shared, not FUTEX_PRIVATE: the waiters are in different processes): it keeps no
state of its own, so a waiter that is killed leaves nothing behind.

Linux only (robust mutexes, futexes, /proc), like the server. A mutex takes MUTEX_BYTES of the
segment: more than sizeof(pthread_mutex_t) on every Linux ABI (glibc x86-64 40, aarch64 48; musl 40).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import threading
import time

from threadswoole.state.shm import pid_alive

MUTEX_BYTES = 64
EOWNERDEAD = errno.EOWNERDEAD
EBUSY = errno.EBUSY
ETIMEDOUT = errno.ETIMEDOUT
EDEADLK = errno.EDEADLK
EPERM = errno.EPERM

_PTHREAD_MUTEX_ERRORCHECK = 2
_PTHREAD_PROCESS_SHARED = 1
_PTHREAD_MUTEX_ROBUST = 1
_CLOCK_MONOTONIC = 1
_CLOCK_REALTIME = 0
_FUTEX_WAIT = 0
_FUTEX_WAKE = 1
# futex(2) system call numbers: x86-64 has its own table, the generic table (aarch64, riscv64,
# loongarch64) says 98; 32-bit x86 and ARM say 240.
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "riscv64": 98, "loongarch64": 98, "i686": 240, "i386": 240, "armv7l": 240, "ppc64le": 221, "ppc64": 221, "s390x": 238}.get(platform.machine().lower())


def _load_libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "pthread_mutexattr_setrobust"):  # glibc < 2.34 keeps them in libpthread
        name = ctypes.util.find_library("pthread")
        if name:
            libc = ctypes.CDLL(name, use_errno=True)
    return libc


_libc = _load_libc()
# CFUNCTYPE releases the GIL around the call (needed for anything that may block); PYFUNCTYPE
# keeps it, which halves the cost of a call on a GIL build (0.82 -> 0.34 us for trylock+unlock):
# right for the calls that never block, trylock and unlock.
_blocking = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_non_blocking = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _function(name: str, prototype: type = _blocking) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    try:
        return prototype((name, _libc))
    except AttributeError:
        raise OSError(errno.ENOSYS, f"{name} is missing: shared Table/Atomic/Lock need Linux robust pthread mutexes") from None


# The hot-path calls: each takes the mutex address (an int) and returns 0 or an errno. The fast
# path is `mutex_trylock` then, only if that says EBUSY, the blocking `mutex_lock`.
mutex_lock = _function("pthread_mutex_lock")
mutex_trylock = _function("pthread_mutex_trylock", _non_blocking)
mutex_unlock = _function("pthread_mutex_unlock", _non_blocking)
mutex_consistent = _function("pthread_mutex_consistent", _non_blocking)

# The Table's hot paths call through a *handle* instead: a ctypes array laid over the mutex
# (`mutex_handle`), made once per stripe, and prototypes with no argtypes. ctypes passes an array
# as its address with no conversion (an int through a c_void_p argtype goes through from_param and
# a format lookup each call), and an unlock with no result skips building one: per
# trylock+unlock pair, 5119 -> 4463 instructions on 3.11 and 7660 -> 5838 on 3.13t (callgrind).
handle_trylock = _function("pthread_mutex_trylock", ctypes.PYFUNCTYPE(ctypes.c_int))
handle_unlock = _function("pthread_mutex_unlock", ctypes.PYFUNCTYPE(None))


def mutex_handle(address: int) -> ctypes.Array:  # type: ignore[type-arg]
    """The mutex at `address` as an argument for handle_trylock/handle_unlock (valid while the
    segment is mapped; `ctypes.addressof(handle)` gives the address back)."""
    return (ctypes.c_char * MUTEX_BYTES).from_address(address)

_timed_by_clock = getattr(_libc, "pthread_mutex_clocklock", None)  # glibc >= 2.30: monotonic deadlines
if _timed_by_clock is not None:
    _timed_by_clock.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Timespec)]
    _timed_by_clock.restype = ctypes.c_int
_timed_realtime = _libc.pthread_mutex_timedlock
_timed_realtime.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Timespec)]
_timed_realtime.restype = ctypes.c_int
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def init_mutex(address: int) -> None:
    """Initialise a robust, process-shared, error-checking mutex at `address` (creator, before fork)."""
    attr = ctypes.create_string_buffer(64)  # >= sizeof(pthread_mutexattr_t) everywhere
    calls = (
        (_libc.pthread_mutexattr_init, (attr,)),
        (_libc.pthread_mutexattr_settype, (attr, _PTHREAD_MUTEX_ERRORCHECK)),
        (_libc.pthread_mutexattr_setpshared, (attr, _PTHREAD_PROCESS_SHARED)),
        (_libc.pthread_mutexattr_setrobust, (attr, _PTHREAD_MUTEX_ROBUST)),
        (_libc.pthread_mutex_init, (ctypes.c_void_p(address), attr)),
    )
    try:
        for function, args in calls:
            result = function(*args)
            if result:
                raise OSError(result, f"{function.__name__}: {os.strerror(result)}")
    finally:
        _libc.pthread_mutexattr_destroy(attr)


def _deadline_timespec(clock: int, timeout: float) -> _Timespec:
    now = time.clock_gettime(time.CLOCK_MONOTONIC if clock == _CLOCK_MONOTONIC else time.CLOCK_REALTIME)
    seconds, fraction = divmod(now + max(0.0, timeout), 1.0)
    return _Timespec(int(seconds), int(fraction * 1e9))


def mutex_lock_timeout(address: int, timeout: float) -> int:
    """Lock, waiting at most `timeout` seconds: 0, ETIMEDOUT, EOWNERDEAD or another errno."""
    if _timed_by_clock is not None:
        return _timed_by_clock(address, _CLOCK_MONOTONIC, ctypes.byref(_deadline_timespec(_CLOCK_MONOTONIC, timeout)))
    return _timed_realtime(address, ctypes.byref(_deadline_timespec(_CLOCK_REALTIME, timeout)))


def mutex_acquire(address: int) -> int:
    """Lock, waiting without limit: 0, EOWNERDEAD, EDEADLK (this thread holds it) or an errno."""
    result = mutex_trylock(address)
    return mutex_lock(address) if result == EBUSY else result


def mutex_lock_interruptible(address: int, slice_seconds: float = 0.5) -> int:
    """Lock without a limit, in slices, so that Python signal handlers of this thread still run
    while it waits (a blocked pthread_mutex_lock would hold them off until it got the lock)."""
    result = mutex_trylock(address)
    while result == EBUSY or result == ETIMEDOUT:
        result = mutex_lock_timeout(address, slice_seconds)
    return result


# -- futex --------------------------------------------------------------------------------
def futex_wait(address: int, expected: int, timeout: float) -> None:
    """Sleep while the 32-bit word at `address` equals `expected`, at most `timeout` seconds.
    Returns on a wake-up, a change of the word, a signal or the timeout: callers re-check."""
    if _SYS_FUTEX is None:  # an architecture we have no number for: poll instead
        time.sleep(min(timeout, 0.005))
        return
    seconds, fraction = divmod(max(0.0, timeout), 1.0)
    delay = _Timespec(int(seconds), int(fraction * 1e9))
    _syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_int(_FUTEX_WAIT), ctypes.c_int(expected - (1 << 32) if expected >= 1 << 31 else expected), ctypes.byref(delay), None, ctypes.c_int(0))


def futex_wake(address: int, count: int) -> None:
    """Wake up to `count` waiters sleeping on the 32-bit word at `address`."""
    if _SYS_FUTEX is not None:
        _syscall(ctypes.c_long(_SYS_FUTEX), ctypes.c_void_p(address), ctypes.c_int(_FUTEX_WAKE), ctypes.c_int(min(count, 0x7FFFFFFF)), None, None, ctypes.c_int(0))


# -- holders ------------------------------------------------------------------------------
def thread_token() -> int:
    """This thread's identity in a shared word: pid in the high half, kernel thread id in the low."""
    return (os.getpid() << 32) | threading.get_native_id()


def holder_alive(token: int) -> bool:
    """Is the thread named by `thread_token()` value `token` still running (not a zombie)?"""
    pid, tid = token >> 32, token & 0xFFFF_FFFF
    try:
        with open(f"/proc/{pid}/task/{tid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X", b"x")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc: the process, at least
        return pid_alive(pid)
