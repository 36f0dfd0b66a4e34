"""What the scenarios share: the row helper, the three server configurations, probes of a
running server (stats, process tree, fds, threads, shared memory) and a clean stop.

A row is ``{scenario, mode, figure, value, unit, passed, detail}``: ``figure``
is a short name ("req/cpu-s"), ``value`` a number (or None when the run
failed), ``detail`` free text (ratios, errors). Extra keys (e.g. per-interval
counts) are kept in the JSON and not printed.
"""
from __future__ import annotations

import glob
import json
import os
import socket
import struct
import time
import urllib.request
from typing import Any, Callable, Optional

import psutil

from stress.proctree import ServerError, ServerProcess

SERVER_MODULE = "stress.servers.threadswoole_echo"
WS_SERVER_MODULE = "stress.servers.threadswoole_ws"      # websocket.Server echo / fan-out
HOST = "127.0.0.1"

# The configuration of each mode in the capacity / churn / soak / faults scenarios: two
# workers everywhere, so that killing or reloading one leaves another serving.
MODE_ARGS: dict[str, list[str]] = {
    "base": ["--mode", "base", "--workers", "2"],
    "process": ["--mode", "process", "--workers", "2", "--reactors", "1"],
    "thread": ["--mode", "thread", "--workers", "2"],
}
MODES = list(MODE_ARGS)
MODE_LABEL = {"base": "BASE w2", "process": "PROCESS w2 r1", "thread": "THREAD w2"}


def make_row(scenario: str, mode: str, figure: str, value: Optional[float], unit: str,
             passed: bool, detail: str = "", **extra: Any) -> dict[str, Any]:
    row = {"scenario": scenario, "mode": mode, "figure": figure, "value": value,
           "unit": unit, "passed": bool(passed), "detail": detail}
    row.update(extra)
    return row


def say(text: str) -> None:
    """Progress line while a scenario runs (the table comes at the end)."""
    print(f"   {text}", flush=True)


# ---- starting and stopping -------------------------------------------------------------------
def start_server(mode: str, extra: list[str], framing: Optional[str] = "length", control: bool = True,
                 module: str = SERVER_MODULE) -> ServerProcess:
    """Start ``module`` (the echo server unless told) in ``mode``'s configuration; ``framing``
    None passes no ``--framing`` (servers that speak one protocol, e.g. ``WS_SERVER_MODULE``)."""
    args = [*MODE_ARGS[mode], *(["--framing", framing] if framing else []), *extra]
    if control:
        args.append("--control")
    srv = ServerProcess(module, args, host=HOST)
    srv.start()
    return srv


def shm_segments(master_pid: int) -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob(f"/dev/shm/threadswoole_{master_pid}_*"))


def stop_server(srv: ServerProcess) -> list[str]:
    """Stop the server; return the problems: not a clean SIGTERM exit, processes left
    behind (killed by PID), shared-memory segments left in /dev/shm."""
    problems = []
    pid = srv.proc.pid if srv.proc else 0
    status = srv.stop()
    if status != "term":
        problems.append(f"stop: {status}")
    left = srv.tree.survivors() if srv.tree else []
    if left:
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        problems.append(f"processes left behind: {[p.pid for p in left]}")
    if pid:
        segs = shm_segments(pid)
        if segs:
            problems.append(f"/dev/shm segments left after stop: {segs}")
    return problems


class Server:
    """``with Server(mode, extra) as srv:`` start, yield, always stop; ``srv.problems``.
    Keywords go to ``start_server`` (``module=WS_SERVER_MODULE, framing=None``: the WebSocket server)."""

    def __init__(self, mode: str, extra: Optional[list[str]] = None, **kw: Any) -> None:
        self.mode, self.extra, self.kw = mode, extra or [], kw
        self.srv: Optional[ServerProcess] = None
        self.problems: list[str] = []

    def __enter__(self) -> ServerProcess:
        self.srv = start_server(self.mode, self.extra, **self.kw)
        return self.srv

    def __exit__(self, *exc: object) -> None:
        if self.srv is not None:
            self.problems = stop_server(self.srv)


# ---- probes ----------------------------------------------------------------------------------
def control(port: int, command: bytes, timeout: float = 3.0) -> Optional[dict]:
    """Send ``!ctl:<command>`` on a fresh connection, return the JSON answer (None if none).

    The probe then half-closes and waits (bounded) for the server's close, so that when it
    returns the server has released the probe's connection: the next probe's
    ``connection_num`` does not count this one."""
    body = b"!ctl:" + command
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(struct.pack(">I", len(body)) + body)
            buf = b""
            while not (len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from(">I", buf)[0]):
                chunk = s.recv(65536)
                if not chunk:
                    return None
                buf += chunk
            n = struct.unpack_from(">I", buf)[0]
            answer = json.loads(buf[4:4 + n])
            try:
                s.shutdown(socket.SHUT_WR)
                s.settimeout(1.0)
                while s.recv(65536):
                    pass
            except OSError:
                pass
            return answer
    except (OSError, ValueError):
        return None


def http_stats(port: int, timeout: float = 3.0) -> Optional[dict]:
    """server.stats() over HTTP, from servers whose ``--control`` answers ``GET /!ctl/stats``
    (the http and WebSocket servers); a fresh connection, closed after: Connection: close."""
    request = urllib.request.Request(f"http://{HOST}:{port}/!ctl/stats", headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except (OSError, ValueError):
        return None


def stats(port: int) -> Optional[dict]:
    """server.stats() from a worker; its connection_num includes the probe's own connection."""
    return control(port, b"stats")


def connection_num(port: int) -> Optional[int]:
    """Connections the server holds, not counting the probe itself."""
    st = stats(port)
    return None if st is None else st["connection_num"] - 1


def connection_count_report(port: int, expect: int, extra_wait: float = 10.0) -> str:
    """When ``connection_num`` is not back to ``expect``: the raw counters, the sessions
    ``get_client_list()`` still shows (the probe's own included), and whether the count
    corrects itself within ``extra_wait`` more seconds (a lagging counter) or not."""
    st = stats(port) or {}
    answer = control(port, b"clients") or {}
    now = time.time()
    held = [f"fd {fd} {now - (v.get('connect_time') or now):.1f}s old, idle "
            f"{now - (v.get('last_time') or now):.1f}s" for fd, v in (answer.get("clients") or {}).items()]
    text = (f"accept_count {st.get('accept_count')} - close_count {st.get('close_count')} "
            f"(abort {st.get('abort_count')}); get_client_list with the probe: {len(held)} "
            f"[{'; '.join(held[:3])}{' ...' if len(held) > 3 else ''}]")
    if extra_wait > 0:
        later = wait_for(lambda: connection_num(port) == expect, extra_wait, step=0.5)
        text += (f"; back to {expect} {extra_wait:.0f} s later" if later else
                 f"; still {connection_num(port)} {extra_wait:.0f} s later")
    return text


def server_warnings(srv: ServerProcess, n: int = 2) -> str:
    """The last ``n`` WARNING / ERROR lines the server logged (its stderr), for details."""
    text = srv.stderr_final if srv.stderr_final else srv.stderr_tail(8000)
    lines = [x.strip() for x in text.split(" | ") if "WARNING" in x or "ERROR" in x]
    lines = [x.split("] ", 1)[-1].replace(" threadswoole:", ":") for x in lines]   # drop the stamp
    return " / ".join(x[:200] for x in lines[-n:])


def wait_for(pred: Callable[[], Any], timeout: float, step: float = 0.1) -> Any:
    """Poll ``pred`` until it returns something true or ``timeout`` passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def worker_pids(srv: ServerProcess) -> list[int]:
    """Worker processes: the leaves of the tree (BASE: the master's children; PROCESS: the
    manager's children). Empty in THREAD mode (one process)."""
    procs = srv.tree.live()
    parents = set()
    for p in procs:
        try:
            parents.add(p.ppid())
        except psutil.Error:
            pass
    return sorted(p.pid for p in procs if p.pid != srv.tree.root.pid and p.pid not in parents)


def snapshot(srv: ServerProcess) -> dict[str, Any]:
    """fds, threads, processes, RSS of the live tree, and the master's /dev/shm segments.

    ``anon`` is the tree's anonymous (private heap) RSS: ``rss`` also counts the pages of
    the shared-memory segments each process has touched so far, which grows as new session
    records are used until the whole segment is mapped: bounded, not a leak."""
    fds = threads = rss = anon = 0
    pids = []
    for p in srv.tree.live():
        try:
            with p.oneshot():
                fds += p.num_fds()
                threads += p.num_threads()
                mi = p.memory_info()
                rss += mi.rss
                anon += mi.rss - mi.shared       # RssAnon: not file pages, not /dev/shm pages
            pids.append(p.pid)
        except psutil.Error:
            pass
    return {"fds": fds, "threads": threads, "pids": sorted(pids), "rss": rss, "anon": anon,
            "shm": shm_segments(srv.proc.pid)}


def settled_snapshot(srv: ServerProcess, target: Optional[dict] = None, timeout: float = 5.0) -> dict:
    """A snapshot once the fd count is stable (two equal readings 0.2 s apart), or equal to
    ``target['fds']`` when given, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    prev = snapshot(srv)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        cur = snapshot(srv)
        if target is not None:
            if cur["fds"] == target["fds"] and cur["threads"] == target["threads"]:
                return cur
        elif cur["fds"] == prev["fds"] and cur["threads"] == prev["threads"]:
            return cur
        prev = cur
    return prev


def mib(n: float) -> float:
    return n / 2**20


def guarded(name: str, mode: str, body: Callable[[], list[dict]]) -> list[dict]:
    """Run one mode's part of a scenario; a server that does not start or an unexpected
    error becomes a failed row and the scenario goes on with the next mode."""
    try:
        return body()
    except ServerError as exc:
        return [make_row(name, mode, "run", None, "", False, f"server failed to start: {exc}")]
    except Exception as exc:  # keep the suite alive; record why
        import traceback

        fr = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{os.path.basename(fr.filename)}:{fr.lineno}"
        return [make_row(name, mode, "run", None, "", False, f"{type(exc).__name__}: {exc} (at {where})")]
