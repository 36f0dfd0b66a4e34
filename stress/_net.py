"""Helpers shared by the load drivers: address family, loopback check, worker plumbing."""
from __future__ import annotations

import argparse
import errno
import multiprocessing
import os
import random
import select
import socket
import struct
import sys
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from stress.histogram import Histogram

Address = Union[tuple, str]
_HDR = struct.Struct(">I")
_MAX_FRAME = 64 << 20
_CONNECT_TIMEOUT = 10.0




def _family_for(address: Address, family: Optional[int]) -> int:
    if family is not None:
        return family
    if isinstance(address, str):
        return socket.AF_UNIX
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


def raise_nofile(want: int) -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to ``want`` (capped at the hard limit);
    returns the soft limit now in force. Forked children inherit it."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def _check_loopback(address: Address) -> None:
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost") \
            and not address[0].startswith("127."):
        raise ValueError("load is only ever sent to loopback addresses")


def _recv_reply(p, pipe, timeout: float) -> tuple:
    try:
        if pipe.poll(max(0.0, timeout)):
            return pipe.recv()
        return "error", f"worker {p.pid} timed out"
    except (EOFError, OSError) as exc:
        return "error", f"worker {p.pid}: {exc!r}"


def _reap(workers: list, kill: bool) -> None:
    for p, pipe in workers:
        if kill and p.is_alive():
            p.kill()
        p.join(timeout=3)
        if p.is_alive():
            p.kill()
            p.join(timeout=2)
        pipe.close()


