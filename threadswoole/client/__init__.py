"""`threadswoole.Client`: Swoole's synchronous client (contract §12) for TCP, UDP and Unix sockets, with TLS.

    client = Client(SWOOLE_SOCK_TCP)
    client.set(open_length_check=True, package_length_type="N", package_body_offset=4)
    if client.connect("127.0.0.1", 9501, timeout=1.0):
        client.send(packet)
        reply = client.recv()          # exactly one packet; b"" if the server closed; False on error

Errors (R3): a failing call returns False and sets `err_code` (an errno, or a Swoole code from
the table below); the worker's `get_last_error()` gets the same code.

    errno.ECONNREFUSED / ETIMEDOUT / ...   connect() failed (ETIMEDOUT: no answer within `timeout`)
    errno.EAGAIN                           send()/recv() timed out (the connection stays usable)
    errno.ECONNRESET                       the peer closed in the middle of a framed packet
    errno.EISCONN                          connect() on a connected client
    PACKAGE_LENGTH_TOO_LARGE (1201)        a framed packet announced more than package_max_length
    errno.EPROTO                           other framing errors (bad length field, length func)
    CLIENT_NO_CONNECTION (5001)            send/recv/close... on a client that is not connected
    DNSLOOKUP_RESOLVE_FAILED (704)         the host name does not resolve
    SSL_VERIFY_FAILED (1013)               ssl_verify_peer: the server's certificate does not verify
    SSL_HANDSHAKE_FAILED (1017)            the TLS handshake failed (not TLS, no common cipher, ...)
    errno.ECONNRESET                       also: a TLS error after the handshake (e.g. the server's
                                           alert when it refuses our certificate under TLS 1.3)

The Swoole codes 704, 1013, 1017 and 5001 have swoole-src's values; they are not members of
`threadswoole.ErrorCode` (which follows the seeds), hence the constants in this module.
A Client is not thread-safe: use one per thread.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
import ssl
import weakref
from typing import Any, Literal, Mapping

from threadswoole._aliases import alias
from threadswoole._arguments import as_bytes
from threadswoole._context import set_error, unstarted_server
from threadswoole.client import _keep, _socket
from threadswoole.client._settings import validate
from threadswoole.constants import SWOOLE_KEEP, SWOOLE_SSL, SockType
from threadswoole.errors import ConfigError, ErrorCode, StateError
from threadswoole.protocol import FramingError, make_framer

__all__ = ["Client", "CLIENT_NO_CONNECTION", "DNSLOOKUP_RESOLVE_FAILED", "SSL_HANDSHAKE_FAILED", "SSL_VERIFY_FAILED"]

DNSLOOKUP_RESOLVE_FAILED = 704
SSL_VERIFY_FAILED = 1013
SSL_HANDSHAKE_FAILED = 1017
CLIENT_NO_CONNECTION = 5001

_STREAM = _socket.STREAM_TYPES
_RECV_CHUNK = 65536


def _release(holder: list[Any]) -> None:
    """Finalizer of a Client: close its socket, or hand a SWOOLE_KEEP connection back."""
    link, keep_key = holder
    holder[0] = None
    if link is None:
        return
    if keep_key is not None:
        _keep.give_back(keep_key, link)
    else:
        link.close()


class Client:
    """A synchronous (blocking) client socket with Swoole's framing, TLS and keep-alive options."""

    def __init__(self, sock_type: int, is_sync: bool = False, key: str | None = None) -> None:
        if isinstance(sock_type, bool) or not isinstance(sock_type, int):
            raise TypeError(f"sock_type must be an int, not {type(sock_type).__name__}")
        if is_sync:
            raise ValueError("async client not supported: threadswoole.Client is synchronous (SWOOLE_SOCK_SYNC)")
        if key is not None and not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        try:
            self.type = SockType(sock_type & ~(SWOOLE_SSL | SWOOLE_KEEP))
        except ValueError:
            raise ValueError(f"unknown sock_type {sock_type}") from None
        self._ssl = bool(sock_type & SWOOLE_SSL)
        self._keep = bool(sock_type & SWOOLE_KEEP)
        if (self._ssl or self._keep) and self.type not in _STREAM:
            raise ValueError("SWOOLE_SSL and SWOOLE_KEEP need a stream socket type (TCP, TCP6, UNIX_STREAM)")
        server = unstarted_server()
        if server is not None:
            raise StateError(f"a Client can only be created inside the callbacks of a running server, not before {server!r} starts")
        self.key = key
        self.err_code = 0
        self.reuse = False  # (not in seeds) True when connect() took over a kept connection
        self._settings: dict[str, Any] = {}
        self._framer: Any = None
        self._packets: collections.deque[bytes] = collections.deque()
        self._deferred_error = 0  # reported by the recv() after the packets completed before it
        self._peer: Any = None  # UDP without sock_flag: where send() goes; else the last sender
        self._udp_connected = False
        self._connected = False
        self._timeout: float | None = None
        self._holder: list[Any] = [None, None]  # [Link | None, keep key | None], owned by the finalizer
        self._finalizer = weakref.finalize(self, _release, self._holder)

    def __repr__(self) -> str:
        state = "connected" if self._connected else "not connected"
        return f"<Client {self.type.name}{' SSL' if self._ssl else ''}{' KEEP' if self._keep else ''} {state}>"

    # -- state ----------------------------------------------------------------------------------------
    @property
    def sock(self) -> int | None:
        """The socket's file descriptor, or None."""
        link = self._holder[0]
        return None if link is None else link.sock.fileno()

    errCode = alias("err_code")

    def _fail(self, code: int) -> Literal[False]:
        self.err_code = code
        return set_error(code)

    def _link(self) -> Any:
        return self._holder[0]

    def _drop(self) -> None:
        """Really close the socket (never kept: after an error its stream state is unknown)."""
        link, self._holder[0], self._holder[1] = self._holder[0], None, None
        self._connected = False
        if link is not None:
            link.close()

    # -- settings -------------------------------------------------------------------------------------
    def set(self, settings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Swoole's client settings (framing, socket and TLS keys); only before connect()."""
        if self._link() is not None:
            raise StateError("set() is only allowed before connect()")
        self._settings = validate(self._settings, settings, kwargs)

    @property
    def setting(self) -> Mapping[str, Any]:
        """(not in seeds) The settings given to set(), read-only."""
        import types

        return types.MappingProxyType(self._settings)

    # -- connect --------------------------------------------------------------------------------------
    def connect(self, host: str, port: int = 0, timeout: float = 0.5, sock_flag: int = 0) -> bool:
        """Connect (UDP: set the peer; with sock_flag, also filter what recv() accepts); False + err_code on failure.

        `timeout` (seconds) bounds the connect, the TLS handshake and every later send/recv;
        a value <= 0 waits forever.
        """
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, not {type(host).__name__}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
            raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
        if self._connected:
            return self._fail(errno.EISCONN)
        unix = self.type in (SockType.SWOOLE_SOCK_UNIX_STREAM, SockType.SWOOLE_SOCK_UNIX_DGRAM)
        if not unix and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
            raise ValueError(f"port must be in 1..65535, got {port!r}")
        self._timeout = float(timeout) if timeout > 0 else None
        keep_key = (self.key or f"{host}:{port}") if self._keep else None
        if keep_key is not None:
            link = _keep.take(keep_key)
            if link is not None:
                link.sock.settimeout(self._timeout)
                self._holder[:] = [link, keep_key]
                self._connected = True
                self.reuse = True
                self._framer = make_framer(self._settings)
                return True
        self.reuse = False
        if unix:
            address: Any = host
        else:
            address = self._resolve(host, port)
            if address is None:
                return self._fail(DNSLOOKUP_RESOLVE_FAILED)
        link = self._link()
        if link is None:
            link = self._open()
            if link is None:
                return False
        else:
            link.sock.settimeout(self._timeout)  # a datagram socket made earlier by sendto()
        self._holder[0] = link
        sock = link.sock
        try:
            if self.type in _STREAM or sock_flag:
                sock.connect(address)
                self._udp_connected = self.type not in _STREAM
            if self._ssl:
                link.sock = sock = self._tls(sock, host)
        except socket.timeout:
            self._drop()
            return self._fail(errno.ETIMEDOUT)
        except ssl.SSLCertVerificationError:
            self._drop()
            return self._fail(SSL_VERIFY_FAILED)
        except ssl.SSLError:
            self._drop()
            return self._fail(SSL_HANDSHAKE_FAILED)
        except OSError as exc:
            self._drop()
            if isinstance(exc, ConnectionResetError) and self._ssl:
                return self._fail(SSL_HANDSHAKE_FAILED)
            return self._fail(exc.errno or errno.EIO)
        self._peer = address
        self._holder[1] = keep_key
        self._connected = True
        self._framer = make_framer(self._settings) if self.type in _STREAM else None
        self._packets.clear()
        self._deferred_error = 0
        return True

    def _resolve(self, host: str, port: int) -> Any:
        return _socket.resolve(self.type, host, port)

    def _open(self) -> Any:
        """A new socket of the client's type, bound and tuned as set() says; None (+ err_code) on failure."""
        try:
            return _socket.open_link(self.type, self._settings, self._timeout)
        except OSError as exc:
            self._fail(exc.errno or errno.EIO)
            return None

    def _tls(self, sock: socket.socket, host: str) -> ssl.SSLSocket:
        try:
            context = _socket.tls_context(self._settings)
        except ConfigError:
            self._drop()
            raise
        return _socket.tls_wrap(context, sock, self.type, host, self._settings)

    # -- sending --------------------------------------------------------------------------------------
    def send(self, data: Any) -> int | Literal[False]:
        """Send all of `data`; returns its length, or False + err_code."""
        payload = as_bytes(data)
        if not payload:
            raise ValueError("data to send is empty")
        link = self._link()
        if not self._connected or link is None:
            return self._fail(CLIENT_NO_CONNECTION)
        try:
            if self.type in _STREAM or self._udp_connected:
                link.sock.sendall(payload)
            else:
                link.sock.sendto(payload, self._peer)
        except socket.timeout:
            return self._fail(errno.EAGAIN)
        except ssl.SSLError:
            return self._fail(errno.ECONNRESET)
        except OSError as exc:
            return self._fail(exc.errno or errno.EIO)
        return len(payload)

    def sendto(self, ip: str, port: int, data: Any) -> bool:
        """UDP / UDP6 / Unix datagram: send one datagram to any address (no connect() needed)."""
        if self.type in _STREAM:
            raise ValueError("sendto() needs a datagram socket type (UDP, UDP6, UNIX_DGRAM)")
        payload = as_bytes(data)
        if self.type == SockType.SWOOLE_SOCK_UNIX_DGRAM:
            address: Any = ip
        else:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"port must be in 1..65535, got {port!r}")
            address = self._resolve(ip, port)
            if address is None:
                return self._fail(DNSLOOKUP_RESOLVE_FAILED)
        link = self._link()
        if link is None:
            link = self._open()
            if link is None:
                return False
            self._holder[0] = link
        try:
            link.sock.sendto(payload, address)
        except socket.timeout:
            return self._fail(errno.EAGAIN)
        except OSError as exc:
            return self._fail(exc.errno or errno.EIO)
        return True

    def sendfile(self, filename: str | os.PathLike[str], offset: int = 0, length: int = 0) -> bool:
        """Send `length` bytes of a file from `offset` (0: to its end) on a stream connection."""
        if self.type not in _STREAM:
            raise ValueError("sendfile() needs a stream socket type")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or not isinstance(length, int) or length < 0:
            raise ValueError("offset and length must be ints >= 0")
        link = self._link()
        if not self._connected or link is None:
            return self._fail(CLIENT_NO_CONNECTION)
        try:
            with open(filename, "rb") as file:
                link.sock.sendfile(file, offset, length or None)
        except socket.timeout:
            return self._fail(errno.EAGAIN)
        except OSError as exc:
            return self._fail(exc.errno or errno.EIO)
        return True

    # -- receiving ------------------------------------------------------------------------------------
    def recv(self, size: int = 65535, flags: int = 0) -> bytes | Literal[False]:
        """Data from the peer: one whole packet when framing is set (`size` is then ignored).

        b"" when the peer closed the connection; False + err_code on error or timeout.
        `flags`: socket.MSG_* (MSG_WAITALL waits for exactly `size` bytes; MSG_PEEK leaves them).
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an int >= 1, got {size!r}")
        link = self._link()
        if link is None or (not self._connected and self.type in _STREAM):
            if self._packets:
                return self._packets.popleft()
            if self._deferred_error:
                code, self._deferred_error = self._deferred_error, 0
                return self._fail(code)
            return self._fail(CLIENT_NO_CONNECTION)
        if self._framer is not None:
            return self._recv_packet(link)
        try:
            if self.type not in _STREAM:
                data, self._peer = link.sock.recvfrom(size, flags)
                return data
            if flags & socket.MSG_WAITALL:
                return self._recv_all(link, size, flags & ~socket.MSG_WAITALL)
            return link.sock.recv(size, flags) if flags else link.sock.recv(size)
        except socket.timeout:
            return self._fail(errno.EAGAIN)
        except ssl.SSLError:
            return self._fail(errno.ECONNRESET)
        except OSError as exc:
            return self._fail(exc.errno or errno.EIO)

    def _recv_all(self, link: Any, size: int, flags: int) -> bytes:
        """MSG_WAITALL by hand (the timeout applies to each wait): up to `size` bytes, fewer only at EOF."""
        chunks = []
        remaining = size
        while remaining:
            chunk = link.sock.recv(remaining, flags) if flags else link.sock.recv(remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _recv_packet(self, link: Any) -> bytes | Literal[False]:
        if self._packets:
            return self._packets.popleft()
        framer = self._framer
        chunk_size = max(_RECV_CHUNK, self._settings.get("socket_buffer_size") or 0)
        while True:
            try:
                chunk = link.sock.recv(chunk_size)
            except socket.timeout:
                return self._fail(errno.EAGAIN)  # what was read stays in the framer
            except OSError as exc:
                self._drop()
                return self._fail(errno.ECONNRESET if isinstance(exc, ssl.SSLError) else exc.errno or errno.EIO)
            if not chunk:
                if framer.buffered:
                    self._drop()
                    return self._fail(errno.ECONNRESET)  # closed in the middle of a packet
                return b""
            try:
                packets = framer.feed(chunk)
            except FramingError as err:
                self._drop()
                code = ErrorCode.PACKAGE_LENGTH_TOO_LARGE if err.reason == "too_large" else errno.EPROTO
                if not err.packets:
                    return self._fail(int(code))
                self._deferred_error = int(code)
                packets = err.packets
            if packets:
                self._packets.extend(packets[1:])
                return packets[0]

    # -- closing and addresses ------------------------------------------------------------------------
    def close(self, force: bool = False) -> bool:
        """Close the connection; a SWOOLE_KEEP one is kept for the next connect() unless `force`."""
        link, keep_key = self._holder
        if link is None:
            return self._fail(CLIENT_NO_CONNECTION)
        self._holder[0] = self._holder[1] = None
        self._connected = False
        self._udp_connected = False
        self._packets.clear()
        if keep_key is not None and not force and (self._framer is None or not self._framer.buffered):
            _keep.give_back(keep_key, link)
        else:
            link.close()
        return True

    def is_connected(self) -> bool:
        """True between a successful connect() and close() (the client's state, not a probe of the peer)."""
        return self._connected

    def get_sockname(self) -> dict[str, Any] | Literal[False]:
        """{'host', 'port'} of the local end; False + err_code without a socket."""
        link = self._link()
        if link is None:
            return self._fail(CLIENT_NO_CONNECTION)
        return self._address(link.sock.getsockname())

    def get_peername(self) -> dict[str, Any] | Literal[False]:
        """{'host', 'port'} of the peer (UDP: the connect() address, then the last sender)."""
        link = self._link()
        if link is None:
            return self._fail(CLIENT_NO_CONNECTION)
        if self.type in _STREAM or self._udp_connected:
            try:
                return self._address(link.sock.getpeername())
            except OSError as exc:
                return self._fail(exc.errno or errno.ENOTCONN)
        if self._peer is None:
            return self._fail(errno.ENOTCONN)
        return self._address(self._peer)

    @staticmethod
    def _address(address: Any) -> dict[str, Any]:
        if isinstance(address, tuple):
            return {"host": address[0], "port": address[1]}
        if isinstance(address, bytes):
            address = address.decode("utf-8", "surrogateescape")
        return {"host": address, "port": 0}

    isConnected = alias("is_connected")
    getsockname = alias("get_sockname")
    getpeername = alias("get_peername")
