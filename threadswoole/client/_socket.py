"""Making a Client's socket: address resolution, the socket options of set(), and the TLS context."""

from __future__ import annotations

import socket
import ssl
import tempfile
from typing import Any, Mapping

from threadswoole.client._keep import Link
from threadswoole.constants import SockType
from threadswoole.errors import ConfigError

STREAM_TYPES = frozenset({SockType.SWOOLE_SOCK_TCP, SockType.SWOOLE_SOCK_TCP6, SockType.SWOOLE_SOCK_UNIX_STREAM})
FAMILY = {
    SockType.SWOOLE_SOCK_TCP: socket.AF_INET, SockType.SWOOLE_SOCK_UDP: socket.AF_INET,
    SockType.SWOOLE_SOCK_TCP6: socket.AF_INET6, SockType.SWOOLE_SOCK_UDP6: socket.AF_INET6,
    SockType.SWOOLE_SOCK_UNIX_STREAM: socket.AF_UNIX, SockType.SWOOLE_SOCK_UNIX_DGRAM: socket.AF_UNIX,
}  # fmt: skip


def resolve(sock_type: SockType, host: str, port: int) -> Any:
    """The socket address for host:port in the type's family (names are resolved); None if it does not resolve."""
    kind = socket.SOCK_STREAM if sock_type in STREAM_TYPES else socket.SOCK_DGRAM
    try:
        infos = socket.getaddrinfo(host, port, FAMILY[sock_type], kind)
    except (socket.gaierror, UnicodeError):
        return None
    return infos[0][4] if infos else None


def open_link(sock_type: SockType, settings: Mapping[str, Any], timeout: float | None) -> Link:
    """A new socket of `sock_type` with the options of `settings`, bound if asked (raises OSError)."""
    kind = socket.SOCK_STREAM if sock_type in STREAM_TYPES else socket.SOCK_DGRAM
    link = Link(socket.socket(FAMILY[sock_type], kind))
    sock = link.sock
    try:
        sock.settimeout(timeout)
        size = settings.get("socket_buffer_size")
        if size:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        if settings.get("open_tcp_nodelay") and sock_type in (SockType.SWOOLE_SOCK_TCP, SockType.SWOOLE_SOCK_TCP6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sock_type == SockType.SWOOLE_SOCK_UNIX_DGRAM:
            # A datagram peer can only answer to a bound address: bind a private path (removed on close).
            path = settings.get("bind_address") or tempfile.mktemp(prefix="threadswoole-client-", suffix=".sock")
            sock.bind(path)
            link.unix_path = path
        elif "bind_address" in settings or "bind_port" in settings:
            sock.bind((settings.get("bind_address", ""), settings.get("bind_port", 0)))
    except OSError:
        link.close()
        raise
    return link


def tls_context(settings: Mapping[str, Any]) -> ssl.SSLContext:
    """The client TLS context: Swoole's default trusts any server; ssl_verify_peer checks it (ConfigError if files fail to load).

    `ssl_verify_peer` verifies the chain against `ssl_cafile` / `ssl_capath` (else the system's
    CAs) and the name against `ssl_host_name` (else the host given to connect()). The standard
    library has no verification callback, so Swoole's `ssl_allow_self_signed` is not offered:
    give a self-signed server certificate as `ssl_cafile` to trust it.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    verify = bool(settings.get("ssl_verify_peer", False))
    context.check_hostname = verify
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    try:
        if verify:
            if settings.get("ssl_cafile") or settings.get("ssl_capath"):
                context.load_verify_locations(settings.get("ssl_cafile"), settings.get("ssl_capath"))
            else:
                context.load_default_certs()
        if settings.get("ssl_cert_file"):
            context.load_cert_chain(settings["ssl_cert_file"], settings.get("ssl_key_file"))
        if settings.get("ssl_ciphers"):
            context.set_ciphers(settings["ssl_ciphers"])
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"client TLS settings: {exc}") from None
    return context


def tls_wrap(context: ssl.SSLContext, sock: socket.socket, sock_type: SockType, host: str, settings: Mapping[str, Any]) -> ssl.SSLSocket:
    """Wrap the connected socket and run the handshake (within the socket's timeout)."""
    server_name = settings.get("ssl_host_name")
    if server_name is None and sock_type != SockType.SWOOLE_SOCK_UNIX_STREAM:
        server_name = host
    if server_name is None:
        context.check_hostname = False  # a Unix path is no host name
    return context.wrap_socket(sock, server_hostname=server_name)
