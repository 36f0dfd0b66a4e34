"""Operations one worker can ask of the owner of a connection (send, close, pause, ...).

The owner applies them with `Host.apply`; the ways of getting there (a mailbox datagram between
processes, a command-queue entry between threads) all carry these codes, so the IPC message
types for them are these same numbers (ipc/messages.py).
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

log = logging.getLogger("threadswoole")

SEND = 10
SENDFILE = 11
CLOSE = 12
PAUSE = 14
RESUME = 15
CONFIRM = 16
PROTECT = 17
BIND = 18
SWITCH_CODEC = 24  # replace the connection's codec (HTTP -> WebSocket); payload: the protocol's spec
RESUME_CODEC = 25  # an upgrade was refused: the held bytes are parsed by the same codec again
PUSH = 26  # a message the connection's own codec must encode (WebSocket with compression)

ALL = frozenset({SEND, SENDFILE, CLOSE, PAUSE, RESUME, CONFIRM, PROTECT, BIND, SWITCH_CODEC, RESUME_CODEC, PUSH})


def apply_operation(host: Any, conn: Any, op: int, payload: bytes, src: int) -> None:
    """An operation another worker asked for on a connection `host` owns (PROCESS reactor
    threads, BASE and THREAD workers): the same effect as the call made by the owner."""
    if op == SEND:
        # The sender admitted these bytes (PROCESS workers check the queue themselves, from
        # the counts the reactor publishes): write them, never drop them.
        if not conn.closing:
            host.write(conn, payload)
    elif op == CLOSE:
        if not conn.closing:
            host.close(conn, reset=payload == b"\x01")
    elif op in (PAUSE, RESUME):
        host.set_paused(conn, op == PAUSE)
    elif op == PROTECT:
        host.protect(conn, payload == b"\x01")
    elif op == CONFIRM:
        host.confirm(conn)
    elif op == BIND:
        if not conn.uid:
            host.bind_uid(conn, int.from_bytes(payload, "big"))
    elif op == SENDFILE:
        path, offset, length = pickle.loads(payload)
        try:
            host.sendfile(conn, path, offset, length)
        except ValueError as exc:
            log.warning("sendfile from worker %d failed: %s", src, exc)
    elif op == SWITCH_CODEC:
        host.switch_codec(conn, conn.listener.protocol.codec_for_switch(payload))
    elif op == RESUME_CODEC:
        host.resume_codec(conn)
    elif op == PUSH:
        # A message only the connection's own codec can encode (WebSocket compression keeps
        # per-connection state): the codec turns the payload into the frame's bytes.
        encode = getattr(conn.codec, "encode_push", None)
        if conn.closing:
            pass
        elif encode is not None:
            host.write(conn, encode(payload))
        else:  # the worker that accepted its upgrade has not had it switched yet: hold it
            host.hold_push(conn, payload)
    else:
        log.warning("session %d: unknown operation %d from worker %d", conn.session_id, op, src)
