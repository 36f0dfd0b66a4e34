"""The socket a `Client` holds, and the process-wide registry of `SWOOLE_KEEP` connections.

A `Link` is the open socket plus what must be undone when it goes (the bound path of a Unix
datagram client). A client's finalizer owns its link, not the client, so that deleting the
client closes the socket, or hands a `SWOOLE_KEEP` connection back to the registry.

The registry maps a key ("host:port" or the client's `key`) to an idle kept link. A client
takes the link out while it uses it, so two clients never share one socket; `close()` puts it
back. A link made by another process (inherited over fork) is never reused: the parent may be
using the same socket. A link whose peer has closed it is dropped when it is taken.
"""

from __future__ import annotations

import os
import select
import socket
import threading

__all__ = ["Link", "take", "give_back", "kept_keys"]


class Link:
    """One open client socket (possibly TLS-wrapped)."""

    __slots__ = ("sock", "unix_path", "pid", "__weakref__")

    def __init__(self, sock: socket.socket, unix_path: str | None = None) -> None:
        self.sock = sock
        self.unix_path = unix_path  # our own bound path (Unix datagram): removed on close
        self.pid = os.getpid()

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            if self.unix_path is not None and self.pid == os.getpid():
                try:
                    os.unlink(self.unix_path)
                except OSError:
                    pass
                self.unix_path = None

    def peer_closed(self) -> bool:
        """True if the peer has closed the connection (readable with nothing to read), without consuming data."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            # Peek at the raw stream (below TLS): b"" is EOF; anything else is data for the next user.
            return socket.socket.recv(self.sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True


_kept: dict[str, Link] = {}
_lock = threading.Lock()


def take(key: str) -> Link | None:
    """The idle kept link for `key`, removed from the registry; None if there is none still usable."""
    with _lock:
        link = _kept.pop(key, None)
    if link is None:
        return None
    if link.pid != os.getpid():
        # Inherited over fork: the socket is the parent's too. Close our copy of the fd only:
        # that sends nothing to the peer while the parent's copy is open (and no TLS alert).
        link.close()
        return None
    if link.peer_closed():
        link.close()
        return None
    return link


def give_back(key: str, link: Link) -> None:
    """Keep `link` idle under `key` for the next connect(); an older link under that key is closed."""
    with _lock:
        old = _kept.get(key)
        _kept[key] = link
    if old is not None and old is not link:
        old.close()


def kept_keys() -> list[str]:
    """The keys with an idle kept connection (for tests and diagnostics)."""
    with _lock:
        return list(_kept)
