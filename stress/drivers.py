"""Load phases and readiness probes for the workloads: C generator, wrk, redis-benchmark.

Each ``*_phase`` returns a ``stress.benchkit.Phase`` whose ``run(host, port)`` drives a
server on loopback once and returns ``requests``, ``rps``, ``p50_us``, ``p99_us`` and
``errors``. Every external tool runs with a subprocess timeout, so a server that stops
answering costs a bounded time, never a hang. Probes make one real request (an HTTP GET
whose body is checked, a RESP PING, a WebSocket upgrade): a server is measured only once
it answers correctly.
"""
from __future__ import annotations

import http.client
import ipaddress
import re
import shutil
import socket
import subprocess
from typing import Optional

from stress import cgen
from stress.benchkit import Phase, Probe

_WS_UPGRADE = ("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n")


def _loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"load only ever goes to loopback addresses, not {host}")


# ---- probes --------------------------------------------------------------------------------
def http_probe(body: bytes = b"Hello, World!") -> Probe:
    """Ready when ``GET /`` answers 200 with exactly ``body``."""
    def probe(host: str, port: int) -> Optional[str]:
        conn = http.client.HTTPConnection(host, port, timeout=2)
        try:
            conn.request("GET", "/")
            resp = conn.getresponse()
            got = resp.read()
        finally:
            conn.close()
        if resp.status != 200 or got != body:
            return f"GET / answered {resp.status} {got[:60]!r}, want 200 {body!r}"
        return None
    return probe


def redis_probe(host: str, port: int) -> Optional[str]:
    with socket.create_connection((host, port), timeout=2) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        got = s.recv(64)
    return None if got.startswith(b"+PONG") else f"PING answered {got[:40]!r}"


def ws_probe(path: str = "/") -> Probe:
    def probe(host: str, port: int) -> Optional[str]:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(_WS_UPGRADE.format(path=path, host=host, port=port).encode())
            got = s.recv(1024)
        return None if got.startswith(b"HTTP/1.1 101") else f"upgrade answered {got[:40]!r}"
    return probe


# ---- the C generator (echo / WebSocket) ------------------------------------------------------
def cgen_phase(*, mode: str = "echo", connections: int = 100, threads: int = 1, size: int = 64,
               duration: float = 5.0, warmup: float = 1.0, path: str = "/", label: str = "") -> Phase:
    def run(host: str, port: int) -> dict:
        res = cgen.run(host, port, mode=mode, connections=connections, threads=threads, size=size,
                       duration=duration, path=path)
        return {"requests": res["requests"], "rps": res["rps"], "p50_us": res["p50_us"],
                "p99_us": res["p99_us"], "errors": res["errors"], "duration": res["duration_s"],
                "stderr": res.get("stderr", "")}

    def warm(host: str, port: int) -> None:
        cgen.run(host, port, mode=mode, connections=connections, threads=threads, size=size,
                 duration=warmup, path=path)
    return Phase(run, label, warm if warmup > 0 else None)


# ---- wrk (HTTP) ---------------------------------------------------------------------------------
_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def wrk_missing() -> Optional[str]:
    return None if shutil.which("wrk") else "wrk not on PATH (Debian package wrk)"


def parse_wrk(out: str) -> dict:
    lat = {p: float(v) * _UNIT_US[u] for p, v, u in
           re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\b", out, re.M)}
    m_rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    m_req = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    m_bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m_bad:
        errors += int(m_bad.group(1))
    return {"rps": float(m_rps.group(1)) if m_rps else None,
            "requests": int(m_req.group(1)) if m_req else 0,
            "duration": float(m_req.group(2)) * _UNIT_US[m_req.group(3)] / 1e6 if m_req else None,
            "p50_us": lat.get("50"), "p99_us": lat.get("99"), "errors": errors}


def run_wrk(host: str, port: int, *, connections: int = 100, duration: float = 5.0,
            threads: int = 1, path: str = "/") -> dict:
    _loopback(host)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}{path}"
    secs = max(1, round(duration))
    proc = subprocess.run(["wrk", "-t", str(max(1, min(threads, connections))), "-c", str(connections),
                           "-d", f"{secs}s", "--latency", url],
                          capture_output=True, text=True, timeout=secs + 60)
    res = parse_wrk(proc.stdout)
    if proc.returncode != 0 or res["rps"] is None:
        raise RuntimeError(f"wrk rc={proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return res


def wrk_phase(*, connections: int = 100, duration: float = 5.0, warmup: float = 1.0,
              threads: int = 1, label: str = "") -> Phase:
    def run(host: str, port: int) -> dict:
        return run_wrk(host, port, connections=connections, duration=duration, threads=threads)

    def warm(host: str, port: int) -> None:
        run_wrk(host, port, connections=connections, duration=warmup, threads=threads)
    return Phase(run, label, warm if warmup > 0 else None)


# ---- redis-benchmark --------------------------------------------------------------------------
def redis_tools_missing() -> Optional[str]:
    for tool in ("redis-benchmark", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH (Debian packages redis-tools / redis-server)"
    return None


def parse_redis_csv(out: str) -> dict[str, dict]:
    """``{"PING_INLINE": {"rps":..., "p50_us":..., "p99_us":...}, ...}`` from ``--csv`` output."""
    rows: dict[str, dict] = {}
    header: list[str] = []
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.strip().split(",")]
        if cells and cells[0] == "test":
            header = cells
            continue
        if len(cells) < 2 or not header:
            continue
        rec = dict(zip(header, cells))
        try:
            rows[rec["test"]] = {"rps": float(rec["rps"]),
                                 "p50_us": float(rec.get("p50_latency_ms", "nan")) * 1000,
                                 "p99_us": float(rec.get("p99_latency_ms", "nan")) * 1000}
        except (KeyError, ValueError):
            continue
    return rows


def redis_phase(test: str, *, requests: int = 200000, clients: int = 50, pipeline: int = 1,
                warmup_requests: int = 0, timeout: float = 180.0) -> Phase:
    """``redis-benchmark -n N -c C -P P -t <test> --csv`` (``-q`` figures, machine-readable)."""
    def bench(host: str, port: int, n: int, t: str) -> dict:
        _loopback(host)
        proc = subprocess.run(["redis-benchmark", "-h", host, "-p", str(port), "-n", str(n),
                               "-c", str(clients), "-P", str(pipeline), "-t", t, "--csv"],
                              capture_output=True, text=True, timeout=timeout)
        rows = parse_redis_csv(proc.stdout)
        if proc.returncode != 0 or not rows:
            raise RuntimeError(f"redis-benchmark rc={proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        rec = next(iter(rows.values()))
        return {"requests": n, "rps": rec["rps"], "p50_us": rec["p50_us"], "p99_us": rec["p99_us"],
                "errors": 0, "duration": n / rec["rps"] if rec["rps"] else None}

    def warm(host: str, port: int) -> None:
        bench(host, port, warmup_requests, test)
    return Phase(lambda host, port: bench(host, port, requests, test), f"{test} P{pipeline}",
                 warm if warmup_requests else None)
