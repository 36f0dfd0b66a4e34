"""The benchmark-only virtualenv that holds the peer servers (uvicorn, uvloop, granian, ...).

Why: threadswoole is compared against the servers users would pick instead, but
those must never become dependencies of the package. They live in a virtualenv
the benchmark creates on demand, outside the repository, and are run only as
subprocesses (``python_path()`` / ``bin_path()``); nothing in ``threadswoole/``
or the test suite imports them.

Location: one venv per interpreter, named by its version *and ABI flags*, so a free-threaded
3.13t (``py3.13t``) never shares a plain 3.13's (``py3.13``): ``$XDG_CACHE_HOME/threadswoole/
bench-venv-py3.X[t]`` (``~/.cache/...``); ``$THREADSWOOLE_BENCH_VENV`` overrides it for the
interpreter running the benchmark only. Every function takes ``python=`` (an interpreter's
path; None: the running one). Versions are pinned per kind of build: ``PINS`` for GIL builds,
``FT_PINS`` for free-threaded ones (only what has a free-threaded wheel and is measured there);
``ensure()`` (re)installs when the pins written beside the venv differ. Concurrent ``ensure()``
calls are serialised with a lock file.

CLI: ``python -m stress.peers [--python PATH] ensure | path | status | remove``.
"""
from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
from typing import Optional

# Pinned peer versions (what pip can get here). flask / django / starlette are not needed:
# the WSGI/ASGI hello apps in stress/servers/apps.py are bare callables.
PINS: dict[str, str] = {
    "uvicorn": "0.54.0",
    "uvloop": "0.23.0",
    "httptools": "0.9.0",
    "granian": "2.8.7",
    "gunicorn": "27.0.1",
    "aiohttp": "3.14.5",
    "websockets": "17.4",
}
# Free-threaded builds (cp313t): granian only (the serve-blocking free-threaded pair). 2.7.9 is
# the newest granian with a cp313t wheel; 2.8.x has none, and building it needs a Rust toolchain.
FT_PINS: dict[str, str] = {
    "granian": "2.7.9",
}
_MARKER = "threadswoole-bench-pins.json"
_PROBE = "import sys; print(sys.version_info[0], sys.version_info[1], sys.abiflags or '-')"


@functools.lru_cache(maxsize=None)
def _abi(python: str) -> tuple[str, bool]:
    """(``py3.13t``-style tag, free-threaded?) of interpreter ``python`` (asked once)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        major, minor, flags = sys.version_info[0], sys.version_info[1], sys.abiflags
    else:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                             check=True).stdout.split()
        major, minor, flags = int(out[0]), int(out[1]), out[2].strip("-")
    return f"py{major}.{minor}{flags}", "t" in flags


def interpreter_tag(python: Optional[str] = None) -> str:
    """``py3.11``, ``py3.13t``...: the version and ABI flags the venv of ``python`` is named by."""
    return _abi(python or sys.executable)[0]


def pins(python: Optional[str] = None) -> dict[str, str]:
    """What the venv of ``python`` holds: ``FT_PINS`` on a free-threaded build, else ``PINS``."""
    return FT_PINS if _abi(python or sys.executable)[1] else PINS


def _is_running(python: Optional[str]) -> bool:
    return python is None or os.path.realpath(python) == os.path.realpath(sys.executable)


def venv_dir(python: Optional[str] = None) -> str:
    """Where the peer venv of interpreter ``python`` (None: the running one) lives."""
    env = os.environ.get("THREADSWOOLE_BENCH_VENV")
    if env and _is_running(python):
        return os.path.abspath(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "threadswoole", f"bench-venv-{interpreter_tag(python)}")


def python_path(python: Optional[str] = None) -> str:
    return os.path.join(venv_dir(python), "bin", "python")


def bin_path(name: str, python: Optional[str] = None) -> str:
    """A console script installed in the venv (``granian``, ``gunicorn``, ...)."""
    return os.path.join(venv_dir(python), "bin", name)


def _installed_pins(python: Optional[str] = None) -> Optional[dict]:
    try:
        with open(os.path.join(venv_dir(python), _MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ready(python: Optional[str] = None) -> bool:
    """True when the venv exists with exactly the pinned versions installed."""
    return os.path.exists(python_path(python)) and _installed_pins(python) == pins(python)


def missing_reason(python: Optional[str] = None) -> Optional[str]:
    """None when the peers are usable; else why not (for a skipped row)."""
    if ready(python):
        return None
    how = "python -m stress.peers" + (f" --python {python}" if not _is_running(python) else "") + " ensure"
    return f"peer virtualenv not ready at {venv_dir(python)} (run: {how})"


def ensure(quiet: bool = True, timeout: float = 600.0, python: Optional[str] = None) -> str:
    """Create/upgrade the venv of ``python`` (None: the running interpreter) so that it holds
    its pins; return the venv's python. Idempotent."""
    root = venv_dir(python)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready(python):
            return python_path(python)
        if not os.path.exists(python_path(python)):
            subprocess.run([python or sys.executable, "-m", "venv", root], check=True, timeout=120)
        wanted = pins(python)
        cmd = [python_path(python), "-m", "pip", "install", "--disable-pip-version-check",
               *(["-q"] if quiet else []), *(f"{k}=={v}" for k, v in wanted.items())]
        if not quiet:
            print("+", " ".join(cmd), file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, timeout=timeout, capture_output=quiet, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "")[-1500:] if quiet else ""
            raise RuntimeError(f"pip install of the peers failed (rc={proc.returncode}): {tail}")
        tmp = os.path.join(root, _MARKER + ".tmp")
        with open(tmp, "w") as f:
            json.dump(wanted, f)
        os.replace(tmp, os.path.join(root, _MARKER))
    return python_path(python)


def status(python: Optional[str] = None) -> dict:
    info = {"venv": venv_dir(python), "ready": ready(python), "pins": pins(python),
            "installed_pins": _installed_pins(python)}
    if os.path.exists(python_path(python)):
        out = subprocess.run([python_path(python), "-m", "pip", "list", "--format=json",
                              "--disable-pip-version-check"], capture_output=True, text=True, timeout=60)
        try:
            info["installed"] = {p["name"].lower(): p["version"] for p in json.loads(out.stdout)}
        except ValueError:
            info["installed"] = out.stderr[-500:]
    return info


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.peers", description=__doc__.splitlines()[0])
    ap.add_argument("--python", help="the interpreter whose venv this is (default: this one), "
                                     "e.g. a free-threaded python3.13t")
    ap.add_argument("command", choices=("ensure", "path", "status", "remove"))
    a = ap.parse_args(argv)
    if a.command == "ensure":
        print(ensure(quiet=False, python=a.python))
    elif a.command == "path":
        print(venv_dir(a.python))
    elif a.command == "status":
        print(json.dumps(status(a.python), indent=1))
    else:
        if os.path.isdir(venv_dir(a.python)):
            shutil.rmtree(venv_dir(a.python))
        print(f"removed {venv_dir(a.python)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
