"""permessage-deflate (RFC 7692): negotiation, and the two compression contexts of a connection.

Negotiation (server side, `negotiate`): the client's ``Sec-WebSocket-Extensions`` header lists
offers in preference order; the first acceptable ``permessage-deflate`` offer wins. An offer is
declined when a parameter is unknown, repeated, or has a bad value, and when it asks for
``server_max_window_bits=8``: zlib cannot make a raw deflate stream with a 256-byte window
(``compressobj(wbits=-8)`` raises, and zlib's deflate silently uses 9 bits where it accepts 8),
so honouring it would produce data the client may not inflate. websockets declines it too;
Autobahn then moves to the client's next offer (case 13.7) or reports the case as "no
compression negotiated" (13.3, 13.5). Receiving with any window is fine: we always inflate with
a 15-bit window, which reads streams made with any smaller one.

Inflating (`Inflater`) is streamed and bounded: each piece of a message is inflated as it
arrives with ``max_length`` one byte over what the message may still grow by, so a small frame
that would inflate past ``max_message_size`` (a zip bomb) is stopped after at most that many
output bytes, never inflated whole.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

__all__ = [
    "EXTENSION_NAME", "DeflateParameters", "DeflateError", "MessageTooBig",
    "parse_extensions", "negotiate", "offer", "accept_response", "Inflater", "Deflater",
]

EXTENSION_NAME = "permessage-deflate"
_TRAILER = b"\x00\x00\xff\xff"  # removed from each compressed message by the sender (§7.2.1)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BITS = re.compile(r"[1-9][0-9]?")  # RFC 7692 §7.1.2: 1*DIGIT without a leading 0


class DeflateError(ValueError):
    """Compressed data zlib cannot inflate (close code 1007)."""


class MessageTooBig(ValueError):
    """A message that inflates past its size limit (close code 1009)."""


@dataclass(frozen=True)
class DeflateParameters:
    """The negotiated permessage-deflate parameters of one connection (RFC 7692 §7.1).

    ``server_*`` govern what the server sends (it compresses with that window, and resets its
    compressor after each message when ``server_no_context_takeover``); ``client_*`` govern what
    the client sends. Each side reads its own half with `local_*`/`remote_*` helpers.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15
    # Whether client_max_window_bits is stated in the response (the server may only do that when
    # the client's offer carried the parameter).
    client_max_window_bits_stated: bool = False

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            value = getattr(self, name)
            if type(value) is not int or not 8 <= value <= 15:
                raise ValueError(f"{name} must be an int in 8..15, got {value!r}")

    def response_value(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value of the server's 101 response."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits != 15:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits_stated:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)

    def sender(self, client_side: bool) -> tuple[bool, int]:
        """(no_context_takeover, max_window_bits) for the messages this side sends."""
        if client_side:
            return self.client_no_context_takeover, self.client_max_window_bits
        return self.server_no_context_takeover, self.server_max_window_bits

    def receiver(self, client_side: bool) -> bool:
        """no_context_takeover of the messages this side receives (the peer resets per message)."""
        return self.server_no_context_takeover if client_side else self.client_no_context_takeover


def parse_extensions(value: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Split a ``Sec-WebSocket-Extensions`` value into (name, [(param, value or None)]) offers.

    Raises ValueError for a value that is not the RFC 6455 §9.1 grammar (a quoted value is
    unquoted; a parameter value must be a token once unquoted).
    """
    result: list[tuple[str, list[tuple[str, str | None]]]] = []
    for item in _split_outside_quotes(value, ","):
        if not item.strip():
            continue  # empty list elements are allowed by the #rule
        pieces = _split_outside_quotes(item, ";")
        name = pieces[0].strip()
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"bad extension name {name!r}")
        params: list[tuple[str, str | None]] = []
        for piece in pieces[1:]:
            key, sep, raw = piece.partition("=")
            key = key.strip()
            if not _TOKEN.fullmatch(key):
                raise ValueError(f"bad extension parameter {piece.strip()!r}")
            if not sep:
                params.append((key.lower(), None))
                continue
            raw = raw.strip()
            if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            if not _TOKEN.fullmatch(raw):
                raise ValueError(f"bad value for extension parameter {key!r}: {raw!r}")
            params.append((key.lower(), raw))
        result.append((name.lower(), params))
    return result


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise ValueError("unterminated quoted string in extension header")
    parts.append("".join(current))
    return parts


def _accept_offer(params: list[tuple[str, str | None]], context_takeover: bool) -> DeflateParameters | None:
    """The parameters the server answers to one offer, or None to decline it."""
    seen: dict[str, str | None] = {}
    for key, value in params:
        if key in seen:
            return None  # §7: a repeated parameter makes the offer invalid
        seen[key] = value
    server_bits, client_bits, client_stated = 15, 15, False
    for key, value in seen.items():
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None
        elif key == "server_max_window_bits":
            if value is None or not _BITS.fullmatch(value) or not 8 <= int(value) <= 15:
                return None
            server_bits = int(value)
            if server_bits == 8:
                return None  # zlib cannot compress with a 256-byte window (module docstring)
        elif key == "client_max_window_bits":
            if value is not None:
                if not _BITS.fullmatch(value) or not 8 <= int(value) <= 15:
                    return None
                # A hint: the client will not use more than this; we state it back.
                client_bits, client_stated = int(value), True
        else:
            return None  # unknown parameter
    no_takeover = not context_takeover
    return DeflateParameters(
        server_no_context_takeover=no_takeover or "server_no_context_takeover" in seen,
        client_no_context_takeover=no_takeover or "client_no_context_takeover" in seen,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
        client_max_window_bits_stated=client_stated,
    )


def negotiate(header_value: str | None, context_takeover: bool = True) -> DeflateParameters | None:
    """The server's answer to a ``Sec-WebSocket-Extensions`` request header, or None.

    None means: no permessage-deflate (no offer, every offer declined, or an unparsable header,
    which declines extensions rather than failing the handshake). With ``context_takeover=False``
    the server asks both sides to reset their context after each message (Swoole's own answer,
    ``server_no_context_takeover; client_no_context_takeover``): less memory per connection,
    worse compression.
    """
    if not header_value:
        return None
    try:
        offers = parse_extensions(header_value)
    except ValueError:
        return None
    for name, params in offers:
        if name == EXTENSION_NAME:
            accepted = _accept_offer(params, context_takeover)
            if accepted is not None:
                return accepted
    return None


def offer(
    client_no_context_takeover: bool = False,
    server_no_context_takeover: bool = False,
    server_max_window_bits: int | None = None,
    client_max_window_bits: int | None | bool = True,
) -> str:
    """A client's offer (``Sec-WebSocket-Extensions`` value); ``client_max_window_bits=True``
    states the parameter without a value ("I can use a smaller window if you ask")."""
    parts = [EXTENSION_NAME]
    if client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if server_max_window_bits is not None:
        parts.append(f"server_max_window_bits={server_max_window_bits}")
    if client_max_window_bits is True:
        parts.append("client_max_window_bits")
    elif client_max_window_bits:
        parts.append(f"client_max_window_bits={client_max_window_bits}")
    return "; ".join(parts)


def accept_response(header_value: str | None) -> DeflateParameters | None:
    """Client side: the parameters in a server's 101 ``Sec-WebSocket-Extensions``, or None.

    Raises ValueError when the server answered something a client must reject (an unknown
    extension or parameter, a repeated one, a bad window size, or a client window of 8 bits,
    which zlib cannot compress with).
    """
    if not header_value:
        return None
    found: DeflateParameters | None = None
    for name, params in parse_extensions(header_value):
        if name != EXTENSION_NAME or found is not None:
            raise ValueError(f"server accepted an extension that was not offered: {name!r}")
        seen = dict(params)
        if len(seen) != len(params):
            raise ValueError("repeated permessage-deflate parameter in the response")
        values = {"server_max_window_bits": 15, "client_max_window_bits": 15}
        for key, value in seen.items():
            if key in ("server_no_context_takeover", "client_no_context_takeover"):
                if value is not None:
                    raise ValueError(f"{key} takes no value")
            elif key in values:
                if value is None or not _BITS.fullmatch(value) or not 8 <= int(value) <= 15:
                    raise ValueError(f"bad {key} {value!r}")
                values[key] = int(value)
            else:
                raise ValueError(f"unknown permessage-deflate parameter {key!r}")
        if values["client_max_window_bits"] == 8:
            raise ValueError("client_max_window_bits=8: zlib cannot compress with a 256-byte window")
        found = DeflateParameters(
            server_no_context_takeover="server_no_context_takeover" in seen,
            client_no_context_takeover="client_no_context_takeover" in seen,
            server_max_window_bits=values["server_max_window_bits"],
            client_max_window_bits=values["client_max_window_bits"],
            client_max_window_bits_stated="client_max_window_bits" in seen,
        )
    return found


class Inflater:
    """The receiving context: inflates the pieces of compressed messages, bounded in size."""

    __slots__ = ("_reset_each_message", "_zlib")

    def __init__(self, no_context_takeover: bool) -> None:
        self._reset_each_message = no_context_takeover
        self._zlib = zlib.decompressobj(wbits=-15)  # reads any window size <= 15 bits

    def inflate(self, data: bytes, room: int) -> bytes:
        """Inflate the next piece of a message that may still grow by `room` bytes.

        Raises MessageTooBig before producing more than room + 1 bytes, DeflateError for bad data.
        """
        try:
            out = self._zlib.decompress(data, room + 1)
        except zlib.error as exc:
            raise DeflateError(f"cannot inflate: {exc}") from None
        if len(out) > room:
            raise MessageTooBig("the message inflates past max_message_size")
        if self._zlib.unused_data:
            raise DeflateError("data after the end of the deflate stream")
        return out

    def finish(self, room: int) -> bytes:
        """End the message: inflate the removed trailer; reset the context when required."""
        zobj = self._zlib
        if zobj.eof:
            out = b""  # the sender ended the stream with a BFINAL block (RFC 7692 §7.2.3.4)
        else:
            try:
                out = zobj.decompress(_TRAILER, room + 1)
            except zlib.error as exc:
                raise DeflateError(f"cannot inflate: {exc}") from None
            if len(out) > room:
                raise MessageTooBig("the message inflates past max_message_size")
        if self._reset_each_message or zobj.eof:
            self._zlib = zlib.decompressobj(wbits=-15)
        return out


class Deflater:
    """The sending context: compresses whole messages, or the fragments of one message."""

    __slots__ = ("_reset_each_message", "_window_bits", "_level", "_zlib")

    def __init__(self, no_context_takeover: bool, max_window_bits: int = 15, level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        if not 9 <= max_window_bits <= 15:
            raise ValueError(f"cannot compress with a {max_window_bits}-bit window (zlib supports 9..15)")
        self._reset_each_message = no_context_takeover
        self._window_bits = max_window_bits
        self._level = level
        self._zlib = None  # made on first use: a compressor costs ~256 KiB at 15 bits

    def compress(self, data: bytes | bytearray | memoryview, fin: bool = True) -> bytes:
        """Compress the next fragment of a message (`fin`: the last one) as it goes on the wire."""
        zobj = self._zlib
        if zobj is None:
            zobj = self._zlib = zlib.compressobj(self._level, zlib.DEFLATED, -self._window_bits)
        out = zobj.compress(data) + zobj.flush(zlib.Z_SYNC_FLUSH)
        if not fin:
            return out  # a sync-flushed middle fragment keeps its empty stored block
        if self._reset_each_message:
            self._zlib = None
        # A sync flush ends with an empty stored block whose LEN/NLEN are 00 00 ff ff (§7.2.1).
        return out[:-4] if out.endswith(_TRAILER) else out
