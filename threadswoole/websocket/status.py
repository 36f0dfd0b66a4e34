"""A WebSocket connection's word in its shared record, and what a codec switch carries.

The word (state/shared.py C_WEBSOCKET_STATUS) holds the status (1 connection, 2 handshake,
3 established, 4 closing: get_client_info()['websocket_status']), COMPRESSED when
permessage-deflate was negotiated, and PENDING plus the accepting worker (bits 16..: its id
+ 1) from the moment a worker accepted the handshake until the owning reactor switched the
codec. Only PROCESS mode has such a moment (the reactor is in another process): meanwhile the
accepting worker's own frames follow its 101 in its pipe, and any other worker's push goes to
the reactor as a PUSH operation, which it holds until the switch.
"""

from __future__ import annotations

import marshal

from threadswoole.protocol.websocket import DeflateParameters

# the websocket word of a connection record (state/shared.py C_WEBSOCKET_STATUS)
STATUS_CONNECTION, STATUS_HANDSHAKE, STATUS_ESTABLISHED, STATUS_CLOSING = 1, 2, 3, 4
STATUS_MASK = 0xFF
COMPRESSED = 0x100
PENDING = 0x200


def pack_deflate(deflate: DeflateParameters | None) -> bytes:
    """The SWITCH_CODEC payload: the negotiated permessage-deflate parameters (or none)."""
    if deflate is None:
        return marshal.dumps(None)
    return marshal.dumps((deflate.server_no_context_takeover, deflate.client_no_context_takeover,
                          deflate.server_max_window_bits, deflate.client_max_window_bits,
                          deflate.client_max_window_bits_stated))


def unpack_deflate(spec: bytes) -> DeflateParameters | None:
    fields = marshal.loads(spec)
    return None if fields is None else DeflateParameters(*fields)


ACCEPTED_SHIFT = 16


def accepted_by(worker_id: int) -> int:
    return (worker_id + 1) << ACCEPTED_SHIFT
