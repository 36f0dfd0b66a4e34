"""Listening sockets for the six Swoole socket types, created in the constructor (port 0 = OS port)."""

from __future__ import annotations

import errno
import os
import socket
import stat

from threadswoole.constants import SWOOLE_SSL, SockType
from threadswoole.errors import ServerError

_FAMILY = {
    SockType.SWOOLE_SOCK_TCP: (socket.AF_INET, socket.SOCK_STREAM),
    SockType.SWOOLE_SOCK_UDP: (socket.AF_INET, socket.SOCK_DGRAM),
    SockType.SWOOLE_SOCK_TCP6: (socket.AF_INET6, socket.SOCK_STREAM),
    SockType.SWOOLE_SOCK_UDP6: (socket.AF_INET6, socket.SOCK_DGRAM),
    SockType.SWOOLE_SOCK_UNIX_STREAM: (socket.AF_UNIX, socket.SOCK_STREAM),
    SockType.SWOOLE_SOCK_UNIX_DGRAM: (socket.AF_UNIX, socket.SOCK_DGRAM),
}
DEFAULT_BACKLOG = 512


def split_type(sock_type: int) -> tuple[SockType, bool]:
    """(base type, ssl flag) of a sock_type that may carry SWOOLE_SSL; ValueError if unknown."""
    if isinstance(sock_type, bool) or not isinstance(sock_type, int):
        raise TypeError(f"sock_type must be an int, not {type(sock_type).__name__}")
    ssl = bool(sock_type & SWOOLE_SSL)
    base = sock_type & ~SWOOLE_SSL & 0xFF
    if sock_type & ~(SWOOLE_SSL | 0xFF):
        raise ValueError(f"unknown sock_type flags in {sock_type}")
    try:
        kind = SockType(base)
    except ValueError:
        raise ValueError(f"unknown sock_type {sock_type}") from None
    if ssl and family_type(kind)[1] != socket.SOCK_STREAM:
        raise ValueError("SWOOLE_SSL needs a stream socket type (TCP, TCP6 or UNIX_STREAM)")
    return kind, ssl


def family_type(kind: SockType) -> tuple[int, int]:
    return _FAMILY[kind]


def _remove_stale_unix_socket(path: str) -> None:
    """A Unix socket file left by a previous run is removed when nobody listens on it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


def open_listener(host: str, port: int, kind: SockType, *, backlog: int = DEFAULT_BACKLOG, reuse_port: bool = False) -> socket.socket:
    """Bind (and listen, for streams) a non-blocking socket; raises ServerError with the errno."""
    family, type_ = _FAMILY[kind]
    if family != socket.AF_UNIX:
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    sock = socket.socket(family, type_)
    try:
        if family != socket.AF_UNIX:
            if type_ == socket.SOCK_STREAM:
                # Only for TCP (restart through TIME_WAIT). On UDP it would let a second
                # socket bind the same port and silently split the traffic.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # Swoole (and Linux) let an IPv6 listener accept IPv4 clients too.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
        else:
            if type_ == socket.SOCK_STREAM:
                _remove_stale_unix_socket(host)
            sock.bind(host)
        if type_ == socket.SOCK_STREAM:
            sock.listen(backlog)
        sock.setblocking(False)
    except socket.gaierror as exc:
        sock.close()
        raise ServerError(errno.EADDRNOTAVAIL, f"cannot listen on {host}:{port} ({exc})") from exc
    except OSError as exc:
        sock.close()
        code = exc.errno or errno.EINVAL
        raise ServerError(code, f"cannot listen on {host}:{port} ({os.strerror(code)})") from exc
    except Exception:
        sock.close()
        raise
    return sock


def bound_port(sock: socket.socket) -> int:
    if sock.family == socket.AF_UNIX:
        return 0
    return sock.getsockname()[1]
