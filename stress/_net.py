"""Helpers shared by the load drivers: address family, loopback check, worker plumbing."""
from __future__ import annotations

import multiprocessing
import socket
from typing import Callable, Optional, Union

Address = Union[tuple, str]
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


def _spawn(target: Callable, *args: object) -> tuple:
    """Fork a load process running ``target(pipe, *args)``; returns (process, parent's pipe end)."""
    parent_end, child_end = multiprocessing.get_context("fork").Pipe()
    p = multiprocessing.get_context("fork").Process(target=target, daemon=True, args=(child_end, *args))
    p.start()
    child_end.close()
    return p, parent_end


def _serve_parent(pipe, body: Callable[[], None]) -> None:
    """Run a load process's ``body``; any failure is reported as ("error", text), so the
    parent never hangs waiting for a reply, and the pipe is closed either way."""
    try:
        body()
    except BaseException as exc:
        try:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        except Exception:
            pass
    finally:
        pipe.close()


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


def settle(address: Address) -> None:
    """Open and close one connection, as any live server has seen before it is measured.

    Why: a server's first EOF can change its steady state. Stock asyncio reads into a
    256 KiB buffer, above glibc's initial mmap threshold (128 KiB), so each read costs an
    mmap+munmap, until the first EOF frees one such buffer whole and glibc raises its
    threshold: from then on the reads come from the heap (measured here: ~45k -> ~140k
    requests per CPU-second). Every benchmark run starts after this, so that no server is
    measured in a state a long-running server never stays in.
    """
    try:
        if isinstance(address, str):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2.0)
                s.connect(address)
        else:
            with socket.create_connection(address, timeout=2.0):
                pass
    except OSError:
        pass                       # the load that follows reports a server that is not there
