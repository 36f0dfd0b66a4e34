"""Shared bits of the echo servers: command line and length-prefix framing.

Kept tiny so that each server's hot path stays visible in its own module.
"""
from __future__ import annotations

import argparse
import struct

HDR = struct.Struct(">I")
MAX_FRAME = 64 << 20


def parser(name: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python -m stress.servers.{name}")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--framing", choices=("none", "length"), default="none")
    ap.add_argument("--workers", type=int, default=1)
    return ap


def take_frames(buf: bytearray) -> bytes:
    """Remove and return every complete ``>I``-length-prefixed frame at the head of ``buf``.

    Raises ValueError on a frame larger than MAX_FRAME (the caller closes the connection).
    """
    pos, n = 0, len(buf)
    while n - pos >= 4:
        need = 4 + HDR.unpack_from(buf, pos)[0]
        if need > MAX_FRAME:
            raise ValueError("frame too large")
        if n - pos < need:
            break
        pos += need
    if not pos:
        return b""
    out = bytes(buf[:pos])
    del buf[:pos]
    return out


def ready(port: int) -> None:
    print("READY", port, flush=True)
