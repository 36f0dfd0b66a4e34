"""TLS for listeners created with `SWOOLE_SSL`: the server context, a non-blocking handshake
driven by the reactor, the decrypting read path and the client certificate (contract §5.5).

Why it looks the way it does:

* The handshake runs in the owning reactor like any other I/O: the accepted socket is
  wrapped with `do_handshake_on_connect=False`, registered for whatever direction OpenSSL
  asks for (SSLWantReadError -> EPOLLIN, SSLWantWriteError -> EPOLLOUT), and only when it
  completes does `Host.open` register the connection for good and fire `connect`. A failed
  or expired handshake closes the socket without `connect` or `close` callbacks (the user
  never saw the connection) and counts a protocol error.
* The handshake deadline is `max_wait_time` (default 3 s): the setting that already bounds
  how long the server waits on a peer that does not cooperate (see `Host.close`). Without it
  a client that opens TCP and never sends a ClientHello would hold a connection slot forever.
  The timer lives in `Connection.drain_timer` (unused before a connection opens), so
  `Host._release` cancels it on every path that drops the connection.
* Reading: OpenSSL decrypts whole records, so after a recv() bytes may sit decrypted in
  OpenSSL's buffer where epoll cannot see them. The read loop therefore keeps reading while
  `pending()` says so (bounded per wake-up, the rest deferred to the next loop iteration),
  and a connection whose reading resumes (resume, confirm, end of PROCESS back-pressure) is
  given a deferred read when bytes are pending (`kick`).
* Writing needs no code here: `Host.send` / `Connection.flush` treat SSLWantWriteError as
  "would block" (`_connection.WOULD_BLOCK`) and retry with the same buffer, as OpenSSL asks.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
from typing import Any, Mapping

from threadswoole.constants import SSLMethod
from threadswoole.errors import ConfigError, ErrorCode
from threadswoole.connections.connection import RECV_SIZE, is_disconnect
from threadswoole.loop.reactor import EPOLLIN, EPOLLOUT

log = logging.getLogger("threadswoole")

MAX_READS_PER_WAKEUP = 16  # records decrypted per readiness event before yielding to others
_LINGER = struct.Struct("ii")

# ssl_method -> the one protocol version it pins; other methods keep OpenSSL's defaults (TLS 1.2+).
_PINNED: dict[int, ssl.TLSVersion] = {
    int(SSLMethod.SWOOLE_TLSv1_METHOD): ssl.TLSVersion.TLSv1,
    int(SSLMethod.SWOOLE_TLSv1_SERVER_METHOD): ssl.TLSVersion.TLSv1,
    int(SSLMethod.SWOOLE_TLSv1_1_METHOD): ssl.TLSVersion.TLSv1_1,
    int(SSLMethod.SWOOLE_TLSv1_1_SERVER_METHOD): ssl.TLSVersion.TLSv1_1,
    int(SSLMethod.SWOOLE_TLSv1_2_METHOD): ssl.TLSVersion.TLSv1_2,
    int(SSLMethod.SWOOLE_TLSv1_2_SERVER_METHOD): ssl.TLSVersion.TLSv1_2,
}
_CLIENT_ONLY = frozenset(
    int(m)
    for m in (
        SSLMethod.SWOOLE_SSLv23_CLIENT_METHOD,
        SSLMethod.SWOOLE_TLSv1_CLIENT_METHOD,
        SSLMethod.SWOOLE_TLSv1_1_CLIENT_METHOD,
        SSLMethod.SWOOLE_TLSv1_2_CLIENT_METHOD,
    )
)


# -- configuration (at start(), in the master) ----------------------------------------------
def make_server_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """The SSLContext of one listener from its effective settings; ConfigError when unusable.

    Decisions (documented in the README settings table):
    * `ssl_method`: the TLSv1_x methods pin both the minimum and maximum version (ConfigError
      when this OpenSSL cannot); SSLv23 methods keep OpenSSL's defaults; the *_CLIENT_METHOD
      values cannot accept connections and are refused. OpenSSL 3 refuses TLS 1.0 / 1.1
      handshakes at its default security level: add ":@SECLEVEL=0" to `ssl_ciphers` for them.
    * `ssl_verify_peer`: clients must present a certificate that verifies against the CA
      file `ssl_client_cert_file`, which is then required. The standard library has no
      verification callback, so `ssl_allow_self_signed` cannot accept arbitrary self-signed
      client certificates; list a self-signed certificate in `ssl_client_cert_file` (it is
      its own CA) to trust it. Without `ssl_verify_peer`, no client certificate is asked for.
    """
    cert_file = settings.get("ssl_cert_file")
    key_file = settings.get("ssl_key_file")
    if not cert_file or not key_file:
        raise ConfigError("SWOOLE_SSL needs both ssl_cert_file and ssl_key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_method(context, int(settings.get("ssl_method") or 0))
    try:
        context.load_cert_chain(cert_file, key_file)
    except FileNotFoundError as exc:
        raise ConfigError(f"ssl_cert_file / ssl_key_file: {exc.filename or cert_file!r} does not exist") from None
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot load ssl_cert_file {cert_file!r} with ssl_key_file {key_file!r} (PEM certificate and matching PEM key expected): {exc}") from None
    ciphers = settings.get("ssl_ciphers")
    if ciphers:
        try:
            context.set_ciphers(ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"ssl_ciphers {ciphers!r} selects no usable cipher: {exc}") from None
    if settings.get("ssl_verify_peer"):
        ca_file = settings.get("ssl_client_cert_file")
        if not ca_file:
            raise ConfigError("ssl_verify_peer needs ssl_client_cert_file: the CA (PEM) that signs the client certificates")
        try:
            context.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise ConfigError(f"ssl_client_cert_file {ca_file!r} does not exist") from None
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"cannot load ssl_client_cert_file {ca_file!r} (PEM CA certificates expected): {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _apply_method(context: ssl.SSLContext, method: int) -> None:
    if method in _CLIENT_ONLY:
        raise ConfigError(f"ssl_method {SSLMethod(method).name} is a client method; a server listener needs a *_METHOD or *_SERVER_METHOD")
    version = _PINNED.get(method)
    if version is None:
        return
    try:
        context.minimum_version = context.maximum_version = version
    except (ValueError, ssl.SSLError) as exc:
        raise ConfigError(f"ssl_method {SSLMethod(method).name}: this OpenSSL ({ssl.OPENSSL_VERSION}) cannot pin {version.name}: {exc}") from None


# -- the handshake (on the owning reactor's thread) -----------------------------------------
def start_handshake(host: Any, conn: Any) -> None:
    """Wrap an accepted socket, register it for the handshake and start it (from Host.adopt)."""
    try:
        tls = conn.listener.tls_context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        # On failure wrap_socket has already closed the fd; this retires the record and counts.
        log.warning("session %d: cannot start TLS: %s", conn.session_id, exc)
        host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_SERVER, reset=True)
        return
    conn.sock = tls
    conn.tls = tls
    conn.events = EPOLLIN
    host.reactor.add(conn.fd, EPOLLIN, conn.on_event)
    conn.drain_timer = host.reactor.after(max(0.001, host.max_wait_time) * 1000, _handshake_expired, host, conn)
    continue_handshake(host, conn)


def continue_handshake(host: Any, conn: Any) -> None:
    """One non-blocking step of the handshake; on success the connection opens (`connect`)."""
    if conn.closing:
        return
    try:
        conn.sock.do_handshake()
    except ssl.SSLWantReadError:
        _interest(host, conn, EPOLLIN)
        return
    except ssl.SSLWantWriteError:
        _interest(host, conn, EPOLLOUT)
        return
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        _drop(host, conn, None)  # the client went away mid-handshake: not a protocol error
        return
    except ssl.SSLError as exc:
        _drop(host, conn, exc)  # not TLS, a bad certificate, no shared cipher or version...
        return
    except (BlockingIOError, InterruptedError):
        return
    except OSError as exc:
        _drop(host, conn, None if is_disconnect(exc.errno or 0) else exc)
        return
    if conn.drain_timer is not None:
        host.reactor.clear_timer(conn.drain_timer)
        conn.drain_timer = None
    if conn.listener.tls_context.verify_mode != ssl.CERT_NONE:
        der = conn.sock.getpeercert(binary_form=True)
        if der:
            conn.client_cert = ssl.DER_cert_to_PEM_cert(der)
    # Host.open registers the fd itself, with the connection's real interest set and handler.
    host.reactor.remove(conn.fd)
    conn.events = 0
    host.open(conn)
    if not conn.closing and conn.sock.pending():
        kick(host, conn)


def _interest(host: Any, conn: Any, events: int) -> None:
    if conn.events != events and not conn.closed:
        conn.events = events
        host.reactor.modify(conn.fd, events)


def _handshake_expired(host: Any, conn: Any) -> None:
    conn.drain_timer = None
    if not conn.opened and not conn.closing:
        log.info("session %d: no TLS handshake within %.3g s; closing", conn.session_id, host.max_wait_time)
        host.counters.protocol_errors += 1
        host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_SERVER, reset=True)


def _drop(host: Any, conn: Any, exc: BaseException | None) -> None:
    """A failed handshake: close without callbacks (`connect` never fired); count bad input."""
    if exc is not None:
        host.counters.protocol_errors += 1
        log.info("session %d: TLS handshake failed: %s", conn.session_id, exc)
    host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT if exc is None else ErrorCode.SESSION_CLOSED_BY_SERVER, reset=True)


# -- reading (Host.on_readable delegates here for TLS connections) ---------------------------
def tls_readable(host: Any, conn: Any) -> None:
    """Decrypt and deliver what is readable, including bytes already decrypted by OpenSSL."""
    if not conn.opened:
        continue_handshake(host, conn)
        return
    sock = conn.sock
    for _ in range(MAX_READS_PER_WAKEUP):
        if conn.closing:
            return
        try:
            data = sock.recv(RECV_SIZE)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError):
            return  # nothing decryptable yet (a partial record, or OpenSSL must write first)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT)
            return
        except ssl.SSLError as exc:
            # Not a TLS record, a bad MAC, an alert: bad input closes this connection only.
            host.counters.protocol_errors += 1
            log.info("session %d: TLS error: %s; closing", conn.session_id, exc)
            host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_SERVER, reset=True)
            return
        except OSError as exc:
            host.on_socket_error(conn, exc.errno or 0)
            return
        if not data:
            host.close(conn, reason=ErrorCode.SESSION_CLOSED_BY_CLIENT)
            return
        host.received(conn, data)
        if not sock.pending():
            return  # what the kernel still holds, epoll reports (level-triggered)
        if not _reading(conn):
            return  # paused (or delayed, or throttled) by a callback: kick() resumes it
    if _reading(conn):
        # Bounded per wake-up; the decrypted rest is read on the next loop iteration.
        host.reactor.defer(lambda: tls_readable(host, conn) if _reading(conn) else None)


def _reading(conn: Any) -> bool:
    return not (conn.paused or conn.delayed or conn.throttled or conn.closing)


def kick(host: Any, conn: Any) -> None:
    """Reading became allowed again: epoll will not report bytes OpenSSL already decrypted,
    so read them from the loop (deferred: the caller may be inside a callback)."""
    if conn.tls is None or not conn.opened or conn.closing:
        return
    try:
        pending = conn.sock.pending()
    except (OSError, ValueError):
        return
    if pending:
        host.reactor.defer(lambda: tls_readable(host, conn) if _reading(conn) else None)


# -- closing and client info --------------------------------------------------------------
def goodbye(conn: Any) -> None:
    """Before the socket is closed: send TLS close_notify after a graceful server-side close
    (best effort, never blocks); not after a reset or when the peer is already gone."""
    if not conn.opened or conn.close_reason != ErrorCode.SESSION_CLOSED_BY_SERVER:
        return
    try:
        onoff, linger = _LINGER.unpack(conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER.size))
        if onoff and linger == 0:
            return  # close(fd, reset=True): the peer must see a reset, not an orderly close
        conn.sock.unwrap()
    except (OSError, ValueError):
        pass


def add_client_cert(info: Any, conn: Any) -> Any:
    """get_client_info() of a connection this worker holds: add `ssl_client_cert` (PEM)."""
    if isinstance(info, dict) and conn is not None and conn.client_cert is not None:
        info["ssl_client_cert"] = conn.client_cert
    return info


