"""Clients that misbehave, for the fault scenarios: stalled readers, slowloris, half-open peers.

Why: a server meets these in production; each one must cost it a bounded amount of memory
and time and must not hurt the well-behaved clients. Everything is loopback-only and
bounded in count and time; the background clients run in forked processes that are always
reaped (``Background``).

- ``stalled_readers``: connections that send 64 KiB length-framed requests as fast as the
  server takes them and never read an answer (tiny receive buffer), so the server's output
  queue for them fills up (``socket_buffer_size``).
- ``slowloris``: connections that send a length header announcing 1000 bytes, 10 bytes of
  it, then nothing; the heartbeat (``heartbeat_idle_time``) must close them. Reports when
  each one was closed.
- ``half_open_clients``: peers that leave without a proper goodbye: RST (SO_LINGER 0),
  a process SIGKILLed with its connections open (the kernel closes them), a half-close
  (``shutdown(SHUT_WR)``) after one request, and peers that vanish without any packet
  (``TCP_REPAIR`` close: no FIN, no RST; needs CAP_NET_ADMIN, skipped otherwise), which
  only the heartbeat can clean up.
"""
from __future__ import annotations

import multiprocessing
import os
import select
import signal
import socket
import struct
import time
from typing import Any, Callable

_HDR = struct.Struct(">I")
TCP_REPAIR = getattr(socket, "TCP_REPAIR", 19)


def _family(address: Any) -> int:
    if isinstance(address, str):
        return socket.AF_UNIX
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


def _connect(address: Any, timeout: float = 5.0, rcvbuf: int = 0) -> socket.socket:
    s = socket.socket(_family(address), socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(address)
    return s


def frame(body: bytes) -> bytes:
    return _HDR.pack(len(body)) + body


class Background:
    """Run ``target(pipe, *args)`` in a forked process; ``result()`` waits (bounded) for the
    one object it sends back, then reaps it (killed if it overstays)."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_guard, args=(target, child, *args), daemon=True)
        self.proc.start()
        child.close()
        self._result: Any = None
        self._done = False

    def result(self, timeout: float) -> Any:
        if not self._done:
            self._done = True
            try:
                if self.pipe.poll(max(0.0, timeout)):
                    self._result = self.pipe.recv()
                else:
                    self._result = {"error": f"pid {self.proc.pid} gave no result in {timeout:.0f}s"}
            except (EOFError, OSError) as exc:
                self._result = {"error": repr(exc)}
            self.stop()
        return self._result

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.join(timeout=1)
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=3)
        self.pipe.close()


def _guard(target: Callable[..., None], pipe: Any, *args: Any) -> None:
    try:
        target(pipe, *args)
    except BaseException as exc:
        try:
            pipe.send({"error": f"{type(exc).__name__}: {exc}"})
        except Exception:
            pass
    finally:
        pipe.close()


# ---- stalled readers -------------------------------------------------------------------------
def _stalled_main(pipe: Any, address: Any, n: int, frame_size: int, duration: float) -> None:
    socks = [_connect(address, rcvbuf=4096) for _ in range(n)]
    ep = select.epoll()
    body = (b"stall;" + b"s" * frame_size)[:frame_size - 4]
    chunk = frame(body) * 4
    pending = {}
    for s in socks:
        s.setblocking(False)
        pending[s.fileno()] = (s, memoryview(chunk))
        ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLRDHUP)
    sent = {s.fileno(): 0 for s in socks}
    closed: set[int] = set()
    last_progress = {s.fileno(): time.monotonic() for s in socks}
    end = time.monotonic() + duration
    while time.monotonic() < end:
        for fd, ev in ep.poll(0.1):
            s, buf = pending[fd]
            if ev & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
                closed.add(fd)
                ep.unregister(fd)
                continue
            try:
                k = s.send(buf)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                closed.add(fd)
                ep.unregister(fd)
                continue
            sent[fd] += k
            last_progress[fd] = time.monotonic()
            buf = buf[k:]
            pending[fd] = (s, buf if len(buf) else memoryview(chunk))
    now = time.monotonic()
    result = {"sent_bytes": sum(sent.values()), "closed_by_server": len(closed),
              "blocked_for_s": round(min(now - t for fd, t in last_progress.items() if fd not in closed), 2)
              if len(closed) < n else 0.0}
    ep.close()
    for s in socks:
        s.close()
    pipe.send(result)


def stalled_readers(address: Any, n: int = 4, frame_size: int = 65536, duration: float = 8.0) -> Background:
    """Start ``n`` never-reading clients in the background for ``duration`` s; ``.result()``:
    bytes they managed to send, how many the server closed, how long writes were blocked."""
    return Background(_stalled_main, address, n, frame_size, duration)


# ---- slowloris -------------------------------------------------------------------------------
def _slowloris_main(pipe: Any, address: Any, n: int, duration: float) -> None:
    socks, started = [], {}
    ep = select.epoll()
    for _ in range(n):
        s = _connect(address)
        s.sendall(_HDR.pack(1000) + b"slowloris!")      # 10 of the announced 1000 bytes
        started[s.fileno()] = time.monotonic()
        s.setblocking(False)
        ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        socks.append(s)
    by_fd = {s.fileno(): s for s in socks}
    closed_after: dict[int, float] = {}
    answered = 0
    end = time.monotonic() + duration
    while time.monotonic() < end and len(closed_after) < n:
        for fd, ev in ep.poll(0.05):
            s = by_fd[fd]
            try:
                data = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                answered += 1
                continue
            closed_after[fd] = time.monotonic() - started[fd]
            ep.unregister(fd)
    ep.close()
    for s in socks:
        s.close()
    times = sorted(closed_after.values())
    pipe.send({"connections": n, "closed": len(times), "answered": answered,
               "first_close_s": round(times[0], 2) if times else None,
               "last_close_s": round(times[-1], 2) if times else None})


def slowloris(address: Any, n: int = 20, duration: float = 8.0) -> Background:
    """Start ``n`` slowloris clients for at most ``duration`` s (they stop watching once all
    are closed); ``.result()``: how many the server closed and when (seconds after the
    partial packet)."""
    return Background(_slowloris_main, address, n, duration)


# ---- half-open peers -------------------------------------------------------------------------
def _hold_main(pipe: Any, address: Any, n: int) -> None:
    socks = [_connect(address) for _ in range(n)]
    for s in socks:
        s.sendall(_HDR.pack(100) + b"partial")
    pipe.send({"ready": n})
    time.sleep(60)                # SIGKILLed by the parent long before this


def half_open_clients(address: Any, n: int = 20, echo_body: bytes = b"half-open;ping") -> dict:
    """Open 4 x ``n`` connections that each end badly; returns what the clients saw.

    - ``rst``: one request answered, then a partial packet, then close with SO_LINGER 0 (RST);
    - ``killed``: a process holding ``n`` connections (a partial packet sent on each) is
      SIGKILLed; the kernel closes them for it;
    - ``shut_wr``: one request, then ``shutdown(SHUT_WR)``; we read the echo and the server's
      close (a Swoole server closes a connection on EOF);
    - ``vanished``: a partial packet, then the socket is dropped in TCP_REPAIR mode, so that
      no FIN or RST is ever sent: the server keeps a dead connection until its heartbeat.
    """
    out: dict[str, Any] = {}
    msg = frame(echo_body)
    # rst
    rst_answered = 0
    for _ in range(n):
        s = _connect(address)
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        rst_answered += got == msg
        s.sendall(_HDR.pack(100) + b"partial")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    out["rst"] = {"connections": n, "answered": rst_answered}
    # killed
    bg = Background(_hold_main, address, n)
    ready = bg.pipe.poll(10) and bg.pipe.recv()
    os.kill(bg.proc.pid, signal.SIGKILL)
    bg.proc.join(timeout=5)
    bg.pipe.close()
    out["killed"] = {"connections": n, "ready": bool(ready), "exitcode": bg.proc.exitcode}
    # shut_wr
    echoed = eof = 0
    for _ in range(n):
        s = _connect(address)
        s.sendall(msg)
        s.shutdown(socket.SHUT_WR)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    eof += 1
                    break
                got += chunk
        except OSError:
            pass
        echoed += got == msg
        s.close()
    out["shut_wr"] = {"connections": n, "echoed": echoed, "eof": eof}
    # vanished
    vanished = 0
    note = ""
    for _ in range(n):
        s = _connect(address)
        s.sendall(_HDR.pack(100) + b"partial")
        time.sleep(0.002)
        try:
            s.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        except OSError as exc:
            note = f"TCP_REPAIR unavailable ({exc.strerror}): no silent peers tested"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            break
        s.close()
        vanished += 1
    out["vanished"] = {"connections": vanished, "note": note}
    return out
