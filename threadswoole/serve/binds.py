"""Where `serve` listens: ``--bind`` addresses, ``--fd`` and systemd's LISTEN_FDS, as server ports.

Address forms (gunicorn's): ``HOST:PORT``, ``[IPV6]:PORT``, ``HOST`` (port 8000), ``:PORT``
(every IPv4 interface), ``unix:PATH``, ``fd://N``. systemd socket activation: when
``LISTEN_PID`` is this process and ``LISTEN_FDS`` is N, descriptors 3 .. 3+N-1 are listening
sockets handed over (used when no ``--bind`` is given; the variables are then removed so
workers and children do not take them for theirs).

A threadswoole listener binds its own socket in the constructor (api.md §5.1), so an inherited
socket is put in place of a stand-in one: the port is made with a throw-away address of the same
family, then ``dup2(N, port.sock)`` makes its descriptor the inherited socket (the stand-in is
closed by that), which from then on is the listener in every mode.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping

from threadswoole.constants import SWOOLE_SOCK_TCP, SWOOLE_SOCK_TCP6, SWOOLE_SOCK_UNIX_STREAM, SWOOLE_SSL
from threadswoole.errors import ConfigError

__all__ = ["Listen", "parse_bind", "systemd_fds", "listens_for", "open_ports", "describe"]

DEFAULT_PORT = 8000
SD_LISTEN_FDS_START = 3


@dataclass(frozen=True)
class Listen:
    """One address to listen on: TCP (host, port), a Unix path, or an inherited descriptor."""

    kind: str  # "tcp", "tcp6", "unix", "fd"
    host: str = ""
    port: int = 0
    fd: int = -1

    @property
    def sock_type(self) -> int:
        return {"tcp": SWOOLE_SOCK_TCP, "tcp6": SWOOLE_SOCK_TCP6, "unix": SWOOLE_SOCK_UNIX_STREAM}[self.kind]


def _port(text: str, spec: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(f"bind {spec!r}: {text!r} is not a port number (0-65535)")
    return int(text)


def parse_bind(spec: str) -> Listen:
    """One ``--bind`` value as a `Listen`; ConfigError for a malformed one."""
    text = spec.strip()
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ConfigError(f"bind {spec!r}: unix: needs a path")
        return Listen("unix", host=path)
    if text.startswith("fd://"):
        number = text[5:]
        if not number.isdigit():
            raise ConfigError(f"bind {spec!r}: fd:// needs a descriptor number")
        return Listen("fd", fd=int(number))
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"bind {spec!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"bind {spec!r}: expected [ADDRESS]:PORT")
        return Listen("tcp6", host=host or "::", port=_port(rest[1:], spec) if rest else DEFAULT_PORT)
    if text.count(":") > 1:
        raise ConfigError(f"bind {spec!r}: write an IPv6 address in brackets, e.g. [::1]:8000")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(DEFAULT_PORT)
    if not host and not sep:
        raise ConfigError("bind: empty address")
    return Listen("tcp", host=host or "0.0.0.0", port=_port(port, spec))


def systemd_fds(environ: Mapping[str, str]) -> list[int]:
    """The descriptors systemd passed to this very process (socket activation), if any."""
    if environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = environ.get("LISTEN_FDS", "")
    if not count.isdigit():
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)))


def listens_for(binds: list[str] | None, fds: list[int] | None, environ: Any) -> list[Listen]:
    """Every listener to open: --bind, then --fd; with neither, systemd's or 127.0.0.1:8000."""
    listens = [parse_bind(spec) for spec in binds or ()]
    listens += [Listen("fd", fd=fd) for fd in fds or ()]
    if not listens:
        activated = systemd_fds(environ)
        if activated:
            for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                environ.pop(name, None)
            listens = [Listen("fd", fd=fd) for fd in activated]
        else:
            listens = [Listen("tcp", host="127.0.0.1", port=DEFAULT_PORT)]
    return listens


def _inherited(fd: int) -> tuple[int, str]:
    """(family, stand-in address) of an inherited listening socket; ConfigError if it is not one."""
    try:
        probe = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        raise ConfigError(f"fd {fd}: not an open socket ({exc.strerror})") from None
    try:
        if probe.type != socket.SOCK_STREAM or not probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ConfigError(f"fd {fd}: not a listening stream socket")
        return probe.family, ""
    finally:
        probe.close()


def open_ports(server_class: Any, listens: list[Listen], mode: int, tls: bool) -> tuple[Any, list[Any]]:
    """Make the server with its first listener, add the others; return (server, ports)."""
    server = None
    ports = []
    stand_in_dir = None
    for listen in listens:
        fd = -1
        if listen.kind == "fd":
            family, _ = _inherited(listen.fd)
            fd = listen.fd
            if family == socket.AF_UNIX:
                stand_in_dir = stand_in_dir or tempfile.mkdtemp(prefix="threadswoole-fd-")
                listen = Listen("unix", host=os.path.join(stand_in_dir, f"fd{fd}.sock"))
            elif family == socket.AF_INET6:
                listen = Listen("tcp6", host="::1", port=0)
            else:
                listen = Listen("tcp", host="127.0.0.1", port=0)
        sock_type = listen.sock_type | (SWOOLE_SSL if tls else 0)
        if server is None:
            server = server_class(listen.host, listen.port, mode, sock_type)
            port = server.ports[0]
        else:
            port = server.add_listener(listen.host, listen.port, sock_type)
            if port is False:
                raise ConfigError(f"cannot listen on {describe_listen(listen)}: {os.strerror(server.get_last_error())}")
        if fd >= 0:
            os.dup2(fd, port.sock)  # the inherited socket takes the stand-in's descriptor
            os.close(fd)
            os.set_blocking(port.sock, False)
            if listen.kind == "unix":
                os.unlink(listen.host)  # the stand-in's file (the real socket's path is its owner's)
        ports.append(port)
    if stand_in_dir is not None:
        os.rmdir(stand_in_dir)
    return server, ports


def describe_listen(listen: Listen) -> str:
    if listen.kind == "unix":
        return f"unix:{listen.host}"
    if listen.kind == "tcp6":
        return f"[{listen.host}]:{listen.port}"
    if listen.kind == "fd":
        return f"fd://{listen.fd}"
    return f"{listen.host}:{listen.port}"


def describe(port: Any, tls: bool = False) -> str:
    """The address a port really listens on (read from its socket: right for inherited ones)."""
    sock = port.get_socket()
    scheme = "https" if tls else "http"
    try:
        address = sock.getsockname()
    except OSError:
        return "?"
    if sock.family == socket.AF_UNIX:
        return f"unix:{address or port.host}"
    if sock.family == socket.AF_INET6:
        return f"{scheme}://[{address[0]}]:{address[1]}"
    return f"{scheme}://{address[0]}:{address[1]}"
