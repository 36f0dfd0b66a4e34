"""The Autobahn harness's environment cache and its clear failures (no network, no builds)."""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `pytest` alone (as tox runs it) puts only tests/ on sys.path
    sys.path.insert(0, ROOT)

from conformance.autobahn import environments  # noqa: E402
from conformance.autobahn.echo_server import NOT_AVAILABLE, NOT_AVAILABLE_STATUS  # noqa: E402


def test_an_environment_is_built_once_per_key_and_rebuilt_when_the_key_changes(tmp_path):
    builds = []

    def build(directory, log_path):
        os.makedirs(directory)
        builds.append(directory)
        with open(os.path.join(directory, "content"), "w") as stream:
            stream.write(str(len(builds)))

    target = str(tmp_path / "env")
    assert environments._build_once(target, "key-a", build) == target
    assert environments._build_once(target, "key-a", build) == target
    assert len(builds) == 1
    environments._build_once(target, "key-b", build)  # a pin changed
    assert len(builds) == 2 and open(os.path.join(target, "content")).read() == "2"


def test_a_half_built_environment_is_rebuilt(tmp_path):
    target = str(tmp_path / "env")

    def broken(directory, log_path):
        os.makedirs(directory)
        raise environments.SetupError("pip failed")

    with pytest.raises(environments.SetupError):
        environments._build_once(target, "key", broken)
    assert os.path.isdir(target) and not os.path.exists(os.path.join(target, environments.MARKER))
    built = []
    environments._build_once(target, "key", lambda d, log: (os.makedirs(d), built.append(d)))
    assert built == [target]


def test_the_key_follows_the_pins():
    assert environments._key("wstest", "/py", ("a==1",)) == environments._key("wstest", "/py", ("a==1",))
    assert environments._key("wstest", "/py", ("a==1",)) != environments._key("wstest", "/py", ("a==2",))


def test_no_python27_is_a_clear_error(tmp_path):
    with pytest.raises(environments.SetupError, match=r"Python 2\.7\.18 not found .*pyenv install 2\.7\.18"):
        environments.find_python27(str(tmp_path / "python2.7"))
    with pytest.raises(environments.SetupError, match="not found"):
        environments.find_python27(sys.executable)  # runs, but is not 2.7


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("THREADSWOOLE_AUTOBAHN_CACHE", str(tmp_path / "c"))
    assert environments.cache_root() == str(tmp_path / "c")
    monkeypatch.delenv("THREADSWOOLE_AUTOBAHN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert environments.cache_root() == str(tmp_path / "x" / "threadswoole" / "autobahn")


def test_echo_server_says_clearly_when_the_websocket_server_is_missing():
    import subprocess

    from conformance.autobahn.echo_server import websocket_server_class

    if websocket_server_class()[0] is not None:
        pytest.skip("threadswoole.websocket.Server exists now")
    answer = subprocess.run([sys.executable, "-m", "conformance.autobahn.echo_server", "--mode", "base"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert answer.returncode == NOT_AVAILABLE_STATUS
    assert answer.stderr.startswith(NOT_AVAILABLE) and "Traceback" not in answer.stderr
    runner = subprocess.run([sys.executable, "-m", "conformance.autobahn", "--modes", "base"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert runner.returncode == 2 and "Traceback" not in runner.stdout + runner.stderr
    assert f"FAILED: {NOT_AVAILABLE}" in runner.stdout
