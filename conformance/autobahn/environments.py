"""The two throw-away interpreters the harness needs, built once and cached by their pins.

- wstest: Autobahn|Testsuite runs only on Python 2.7. A virtualenv (virtualenv<20.22 is the
  last that creates 2.7 environments; a plain `pip install --target` breaks the `zope`
  namespace package) made from pyenv's 2.7.18, with the pins of issue 13.
- reference: a Python 3 venv with the `websockets` library, whose echo server the
  `--self-check` run tests to prove the harness itself (not a project dependency).

Both live under the cache directory (`$THREADSWOOLE_AUTOBAHN_CACHE`, else
`$XDG_CACHE_HOME/threadswoole/autobahn`, else `~/.cache/threadswoole/autobahn`), in a directory
named after a hash of the pins, so changing a pin builds a new one. A build holds a lock file
(two runs at once build once) and writes its marker last (a half-built environment is rebuilt).
pip is the registry's ordinary client; its output goes to `<env>.log` beside the environment.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys

PYTHON27_VERSION = "2.7.18"
VIRTUALENV_PIN = "virtualenv<20.22"
WSTEST_PINS = (
    "txaio==2.1.0", "incremental==16.10.1", "pyOpenSSL==19.1.0", "cryptography==3.3.2",
    "Twisted==19.10.0", "zope.interface==4.6.0", "jinja2==2.11.3", "markupsafe==1.1.1",
    "Werkzeug==1.0.1", "klein==17.10.0", "service_identity==18.1.0", "unittest2==1.1.0",
    "six==1.16.0", "autobahn[accelerate,twisted]==0.10.9", "autobahntestsuite==25.10.1",
    # autobahntestsuite 25.10.1 declares setuptools==44.0.0; virtualenv seeds 44.1.1, and
    # pip's resolver then prints an ERROR line (harmless, but confusing in CI output).
    "setuptools==44.0.0",
)
REFERENCE_PINS = ("websockets==15.0.1",)
MARKER = ".threadswoole-complete"
FORMAT = 1  # bump to rebuild every cached environment


class SetupError(RuntimeError):
    """An environment could not be found or built; the message says what to do."""


def cache_root() -> str:
    explicit = os.environ.get("THREADSWOOLE_AUTOBAHN_CACHE")
    if explicit:
        return os.path.abspath(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "threadswoole", "autobahn")


def find_python27(explicit: str | None = None) -> str:
    """The 2.7 interpreter: --python27 / $THREADSWOOLE_PYTHON27, else pyenv's 2.7.18."""
    candidates = []
    if explicit or os.environ.get("THREADSWOOLE_PYTHON27"):
        candidates.append(explicit or os.environ["THREADSWOOLE_PYTHON27"])
    else:
        roots = [os.environ.get("PYENV_ROOT", "")]
        if shutil.which("pyenv"):
            answer = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30)
            roots.append(answer.stdout.strip())
        roots.append(os.path.join(os.path.expanduser("~"), ".pyenv"))
        candidates += [os.path.join(root, "versions", PYTHON27_VERSION, "bin", "python")
                       for root in roots if root]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            answer = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                    capture_output=True, text=True, timeout=30)
            if answer.stdout.strip() == "2.7":
                return candidate
    raise SetupError(
        f"Python {PYTHON27_VERSION} not found (looked at: {', '.join(candidates) or 'nothing'}). "
        f"wstest needs Python 2.7: install it with `pyenv install {PYTHON27_VERSION}` or point "
        "--python27 (or $THREADSWOOLE_PYTHON27) at a Python 2.7 built with ssl "
        "(its virtualenv installs wstest from PyPI).")


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([FORMAT, *parts]).encode()).hexdigest()[:12]


def _run_logged(command: list[str], log_path: str, env: dict[str, str] | None = None) -> None:
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, timeout=1800).returncode
    if status != 0:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            tail = "".join(log.readlines()[-15:])
        raise SetupError(f"`{' '.join(command)}` failed with status {status}; "
                                f"last lines of {log_path}:\n{tail}")


def _build_once(directory: str, key: str, build) -> str:
    """Run build(directory, log) unless `directory` holds a marker for `key`; return directory."""
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    marker = os.path.join(directory, MARKER)
    with open(directory + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            with open(marker, encoding="utf-8") as stream:
                if stream.read().strip() == key:
                    return directory
        except OSError:
            pass
        shutil.rmtree(directory, ignore_errors=True)
        log_path = directory + ".log"
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"building {directory} (key {key})\n")
        print(f"autobahn: building {directory} (log: {log_path})", flush=True)
        build(directory, log_path)
        with open(marker, "w", encoding="utf-8") as stream:
            stream.write(key + "\n")
    return directory


def wstest_environment(python27: str) -> str:
    """The virtualenv's wstest executable, building the environment if needed."""
    real = os.path.realpath(python27)
    key = _key("wstest", real, VIRTUALENV_PIN, WSTEST_PINS)
    root = cache_root()

    def build(directory: str, log_path: str) -> None:
        tools = os.path.join(root, f"virtualenv-{_key('tools', VIRTUALENV_PIN)}")
        if not os.access(os.path.join(tools, "bin", "virtualenv"), os.X_OK):
            shutil.rmtree(tools, ignore_errors=True)
            _run_logged([sys.executable, "-m", "venv", tools], log_path)
            _run_logged([os.path.join(tools, "bin", "python"), "-m", "pip", "install", "-q", VIRTUALENV_PIN],
                        log_path)
        env = dict(os.environ, VIRTUALENV_OVERRIDE_APP_DATA=os.path.join(root, "virtualenv-app-data"))
        _run_logged([os.path.join(tools, "bin", "virtualenv"), "--no-periodic-update", "-p", real, directory],
                    log_path, env)
        python = os.path.join(directory, "bin", "python")
        _run_logged([python, "-m", "pip", "install", "-q", *WSTEST_PINS], log_path)
        _run_logged([python, "-c", "import autobahntestsuite.wstest, autobahn, twisted, wsaccel"], log_path)

    directory = _build_once(os.path.join(root, f"wstest-{key}"), key, build)
    return os.path.join(directory, "bin", "wstest")


def reference_environment() -> str:
    """The Python 3 venv's interpreter, with `websockets` installed (for --self-check)."""
    version = "%d.%d" % sys.version_info[:2]
    key = _key("reference", version, REFERENCE_PINS)

    def build(directory: str, log_path: str) -> None:
        _run_logged([sys.executable, "-m", "venv", directory], log_path)
        python = os.path.join(directory, "bin", "python")
        _run_logged([python, "-m", "pip", "install", "-q", *REFERENCE_PINS], log_path)

    directory = _build_once(os.path.join(cache_root(), f"reference-{key}"), key, build)
    return os.path.join(directory, "bin", "python")
