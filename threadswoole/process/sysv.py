"""System V message queues through ctypes on libc (the standard library has no SysV IPC).

`Process.use_queue/push/pop/stat_queue/free_queue` (contract §11) sit on this. A queue is
identified by an integer key; it outlives the processes that use it until `remove()`
(IPC_RMID), exactly like Swoole's (seed 003: data survives the program unless freed).
Calls that block (`msgsnd` on a full queue, `msgrcv` on an empty one) release the GIL, since
ctypes does for every CDLL call, and are retried after a signal (PEP 475 style) once the
Python-level handlers have had their turn.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_NOWAIT = 0o4000  # the kernel's flag (Process.IPC_NOWAIT = 256 is Swoole's, mapped onto this)
IPC_RMID = 0
IPC_STAT = 2

QUEUE_PERMISSIONS = 0o600  # owner only: a queue is not a channel for other users' processes
_LONG = struct.Struct("l")  # struct msgbuf starts with `long mtype`


class _IpcPerm(ctypes.Structure):
    """struct ipc_perm of 64-bit Linux (glibc and musl agree on this layout)."""

    _fields_ = [
        ("key", ctypes.c_int32),
        ("uid", ctypes.c_uint32),
        ("gid", ctypes.c_uint32),
        ("cuid", ctypes.c_uint32),
        ("cgid", ctypes.c_uint32),
        ("mode", ctypes.c_uint32),
        ("seq", ctypes.c_uint16),
        ("_pad", ctypes.c_uint16),
        ("_reserved1", ctypes.c_ulong),
        ("_reserved2", ctypes.c_ulong),
    ]


class _MsqidDs(ctypes.Structure):
    """struct msqid_ds of 64-bit Linux."""

    _fields_ = [
        ("msg_perm", _IpcPerm),
        ("msg_stime", ctypes.c_long),
        ("msg_rtime", ctypes.c_long),
        ("msg_ctime", ctypes.c_long),
        ("msg_cbytes", ctypes.c_ulong),
        ("msg_qnum", ctypes.c_ulong),
        ("msg_qbytes", ctypes.c_ulong),
        ("msg_lspid", ctypes.c_int32),
        ("msg_lrpid", ctypes.c_int32),
        ("_reserved4", ctypes.c_ulong),
        ("_reserved5", ctypes.c_ulong),
    ]


_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    """libc with the four msg* prototypes; OSError(ENOSYS) where SysV queues are missing."""
    global _libc
    if _libc is None:
        if ctypes.sizeof(ctypes.c_void_p) != 8 or not os.path.isdir("/proc/sysvipc"):
            raise OSError(errno.ENOSYS, "SysV message queues are supported on 64-bit Linux only")
        lib = ctypes.CDLL(None, use_errno=True)
        lib.msgget.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.msgget.restype = ctypes.c_int
        lib.msgsnd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        lib.msgsnd.restype = ctypes.c_int
        lib.msgrcv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long, ctypes.c_int]
        lib.msgrcv.restype = ctypes.c_ssize_t
        lib.msgctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_MsqidDs)]
        lib.msgctl.restype = ctypes.c_int
        _libc = lib
    return _libc


def ftok(path: str, project_id: int = 1) -> int:
    """glibc's ftok(): low 16 bits of the inode, low 8 of the device, the project id on top."""
    info = os.stat(path)
    key = (info.st_ino & 0xFFFF) | ((info.st_dev & 0xFF) << 16) | ((project_id & 0xFF) << 24)
    return key - (1 << 32) if key >= 1 << 31 else key  # key_t is a signed 32-bit int


def _error() -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))


class MessageQueue:
    """One SysV message queue, attached (created if missing) by key."""

    def __init__(self, key: int, *, exclusive: bool = False) -> None:
        flags = IPC_CREAT | QUEUE_PERMISSIONS | (IPC_EXCL if exclusive else 0)
        msqid = _lib().msgget(key, flags)
        if msqid < 0:
            raise _error()
        self.key = key
        self.msqid = msqid

    def send(self, data: bytes, message_type: int, *, nowait: bool) -> None:
        """msgsnd(); OSError(EAGAIN) when full and `nowait`, EINVAL above the kernel's msgmax."""
        payload = _LONG.pack(message_type) + data
        buffer = ctypes.create_string_buffer(payload, len(payload))
        flags = IPC_NOWAIT if nowait else 0
        lib = _lib()
        while lib.msgsnd(self.msqid, buffer, len(data), flags) < 0:
            failure = _error()
            if failure.errno != errno.EINTR:
                raise failure

    def receive(self, size: int, message_type: int, *, nowait: bool) -> bytes:
        """msgrcv() of one message of at most `size` bytes (type 0 = any): OSError(ENOMSG)
        when empty and `nowait`, E2BIG when the next message is larger (it stays queued)."""
        buffer = ctypes.create_string_buffer(_LONG.size + size)
        flags = IPC_NOWAIT if nowait else 0
        lib = _lib()
        while True:
            received = lib.msgrcv(self.msqid, buffer, size, message_type, flags)
            if received >= 0:
                return buffer.raw[_LONG.size : _LONG.size + received]
            failure = _error()
            if failure.errno != errno.EINTR:
                raise failure

    def stat(self) -> tuple[int, int]:
        """(messages queued, bytes queued), from msgctl(IPC_STAT)."""
        info = _MsqidDs()
        if _lib().msgctl(self.msqid, IPC_STAT, ctypes.byref(info)) < 0:
            raise _error()
        return int(info.msg_qnum), int(info.msg_cbytes)

    def remove(self) -> None:
        """msgctl(IPC_RMID): the queue and its messages are gone, blocked callers get EIDRM."""
        if _lib().msgctl(self.msqid, IPC_RMID, None) < 0:
            raise _error()

    def __repr__(self) -> str:
        return f"<MessageQueue key={self.key:#x} msqid={self.msqid}>"


def listed_queues() -> dict[int, int]:
    """key -> msqid of every queue the kernel lists (/proc/sysvipc/msg), for leak checks."""
    queues: dict[int, int] = {}
    try:
        with open("/proc/sysvipc/msg") as listing:
            next(listing)
            for line in listing:
                fields = line.split()
                queues[int(fields[0])] = int(fields[1])
    except (OSError, StopIteration):
        pass
    return queues
