"""The benchmark-only virtualenv that holds the peer servers (uvicorn, uvloop, granian, ...).

Why: threadswoole is compared against the servers users would pick instead, but
those must never become dependencies of the package. They live in a virtualenv
the benchmark creates on demand, outside the repository, and are run only as
subprocesses (``python_path()`` / ``bin_path()``); nothing in ``threadswoole/``
or the test suite imports them.

Location: ``$THREADSWOOLE_BENCH_VENV``, else ``$XDG_CACHE_HOME/threadswoole/bench-venv-py3.X``
(``~/.cache/...``). Versions are pinned in ``PINS``; ``ensure()`` (re)installs when the
pins written beside the venv differ from ``PINS``. Concurrent ``ensure()`` calls are
serialised with a lock file.

CLI: ``python -m stress.peers ensure | path | status | remove``.
"""
from __future__ import annotations

import argparse
import fcntl
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
_MARKER = "threadswoole-bench-pins.json"


def venv_dir() -> str:
    env = os.environ.get("THREADSWOOLE_BENCH_VENV")
    if env:
        return os.path.abspath(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return os.path.join(cache, "threadswoole", f"bench-venv-{tag}")


def python_path() -> str:
    return os.path.join(venv_dir(), "bin", "python")


def bin_path(name: str) -> str:
    """A console script installed in the venv (``granian``, ``gunicorn``, ...)."""
    return os.path.join(venv_dir(), "bin", name)


def _installed_pins() -> Optional[dict]:
    try:
        with open(os.path.join(venv_dir(), _MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def ready() -> bool:
    """True when the venv exists with exactly the pinned versions installed."""
    return os.path.exists(python_path()) and _installed_pins() == PINS


def missing_reason() -> Optional[str]:
    """None when the peers are usable; else why not (for a skipped row)."""
    if ready():
        return None
    return f"peer virtualenv not ready at {venv_dir()} (run: python -m stress.peers ensure)"


def ensure(quiet: bool = True, timeout: float = 600.0) -> str:
    """Create/upgrade the venv so that it holds ``PINS``; return its python. Idempotent."""
    root = venv_dir()
    os.makedirs(os.path.dirname(root), exist_ok=True)
    with open(root + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return python_path()
        if not os.path.exists(python_path()):
            subprocess.run([sys.executable, "-m", "venv", root], check=True, timeout=120)
        cmd = [python_path(), "-m", "pip", "install", "--disable-pip-version-check",
               *(["-q"] if quiet else []), *(f"{k}=={v}" for k, v in PINS.items())]
        if not quiet:
            print("+", " ".join(cmd), file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, timeout=timeout, capture_output=quiet, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or "")[-1500:] if quiet else ""
            raise RuntimeError(f"pip install of the peers failed (rc={proc.returncode}): {tail}")
        tmp = os.path.join(root, _MARKER + ".tmp")
        with open(tmp, "w") as f:
            json.dump(PINS, f)
        os.replace(tmp, os.path.join(root, _MARKER))
    return python_path()


def status() -> dict:
    info = {"venv": venv_dir(), "ready": ready(), "pins": PINS, "installed_pins": _installed_pins()}
    if os.path.exists(python_path()):
        out = subprocess.run([python_path(), "-m", "pip", "list", "--format=json",
                              "--disable-pip-version-check"], capture_output=True, text=True, timeout=60)
        try:
            info["installed"] = {p["name"].lower(): p["version"] for p in json.loads(out.stdout)}
        except ValueError:
            info["installed"] = out.stderr[-500:]
    return info


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.peers", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("ensure", "path", "status", "remove"))
    a = ap.parse_args(argv)
    if a.command == "ensure":
        print(ensure(quiet=False))
    elif a.command == "path":
        print(venv_dir())
    elif a.command == "status":
        print(json.dumps(status(), indent=1))
    else:
        if os.path.isdir(venv_dir()):
            shutil.rmtree(venv_dir())
        print(f"removed {venv_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
