"""The C load generator: built at run time, run, parsed.

Why: on two cores a Python load generator cannot keep a Python server busy, so
the server idles between wake-ups and per-wake-up costs dominate. A C epoll
generator costs a few microseconds per request and keeps the server saturated:
the regime users compare servers in. It checks each echo (or WebSocket frame) against
what it sent and counts mismatches as errors; the Python generator (``stress.loadgen``)
stays the fully verified load (tagged messages, per-request deadlines, faults).

Source: ``$THREADSWOOLE_LOADGEN_C`` if set, else the shared ``../shared/tools/loadgen.c`` beside the
repo (the generator the project's targets were measured with) when it is there, else the
project's own ``stress/cgen.c`` (the same command line and result line, so a clean clone without
the shared tools still benchmarks; it also checks every echoed byte). It is compiled
with gcc once per process into a temporary directory (removed at exit); no gcc or no source
means ``binary()`` returns None and ``missing_reason()`` says why.
"""
from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import subprocess
import tempfile
from typing import Optional

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_built: dict[str, Optional[str]] = {}


SHARED_SOURCE = os.path.join(os.path.dirname(_REPO), "shared", "tools", "loadgen.c")
OWN_SOURCE = os.path.join(_REPO, "stress", "cgen.c")


def source_path() -> str:
    """The C source to build: ``$THREADSWOOLE_LOADGEN_C``, else the shared loadgen.c, else ours."""
    chosen = os.environ.get("THREADSWOOLE_LOADGEN_C")
    if chosen:
        return chosen
    return SHARED_SOURCE if os.path.isfile(SHARED_SOURCE) else OWN_SOURCE


def missing_reason() -> Optional[str]:
    if shutil.which("gcc") is None:
        return "gcc not on PATH (the C load generator cannot be built)"
    if not os.path.isfile(source_path()):
        return f"{source_path()} not found (set THREADSWOOLE_LOADGEN_C)"
    if binary() is None:
        return f"building {source_path()} failed: {_built.get('error')}"
    return None


def binary() -> Optional[str]:
    """Path of the built generator (built on first call), or None when it cannot be built."""
    if "path" in _built:
        return _built["path"]
    src = source_path()
    if shutil.which("gcc") is None or not os.path.isfile(src):
        _built["path"] = None
        return None
    tmp = tempfile.mkdtemp(prefix="ts-cgen-")
    atexit.register(shutil.rmtree, tmp, True)
    out = os.path.join(tmp, "cgen")
    proc = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-pthread", "-o", out, src],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        _built["error"] = proc.stderr.strip()[-500:]
        _built["path"] = None
    else:
        _built["path"] = out
    return _built["path"]


def parse(line: str) -> dict:
    """``key=value`` pairs of the generator's result line; numbers as int/float."""
    out: dict = {}
    for part in line.split():
        key, sep, value = part.partition("=")
        if not sep:
            continue
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def run(host: str, port: int, *, mode: str = "echo", connections: int = 100, threads: int = 1,
        size: int = 64, duration: float = 5.0, path: str = "/", max_requests: int = 0) -> dict:
    """Run the generator once against a loopback server; return its figures.

    Keys: ``rps``, ``requests``, ``p50_us``, ``p90_us``, ``p99_us``, ``max_us``, ``errors``,
    ``duration_s`` (the generator's own wall time, connects included). Raises RuntimeError
    when the generator is missing or fails.
    """
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the load generator only targets loopback addresses, not {host}")
    exe = binary()
    if exe is None:
        raise RuntimeError(missing_reason() or "C load generator unavailable")
    cmd = [exe, "-m", mode, "-H", host, "-p", str(port), "-c", str(connections),
           "-t", str(max(1, min(threads, connections))), "-s", str(size), "-d", f"{duration:g}"]
    if mode == "ws":
        cmd += ["-P", path]
    if max_requests:
        cmd += ["-n", str(max_requests)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    lines = [x for x in proc.stdout.splitlines() if "rps=" in x]
    if not lines:
        raise RuntimeError(f"cgen rc={proc.returncode}: {proc.stderr.strip()[-300:] or 'no output'}")
    res = parse(lines[-1])
    res["stderr"] = proc.stderr.strip()[-300:]
    return res
