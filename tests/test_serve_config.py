"""`threadswoole serve` options, addresses and application loading: the pure parts."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from threadswoole.errors import ConfigError
from threadswoole.serve.binds import Listen, listens_for, parse_bind, systemd_fds
from threadswoole.serve.config import OPTIONS, from_environment, resolve
from threadswoole.serve.loader import AppLoadError, detect_interface, load

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serve_apps")


def test_precedence_file_environment_command_line(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text('app = "from_file:app"\nworkers = 3\nmode = "thread"\nbind = ["127.0.0.1:9000", "unix:/tmp/x.sock"]\n'
                      'max-requests = 10\naccess_log = "-"\n')
    resolved = resolve({"config": str(config)}, environ={})
    assert (resolved.app, resolved.workers, resolved.mode, resolved.max_requests) == ("from_file:app", 3, "thread", 10)
    assert resolved.bind == ["127.0.0.1:9000", "unix:/tmp/x.sock"] and resolved.access_log == "-"
    resolved = resolve({"config": str(config)}, environ={"THREADSWOOLE_WORKERS": "5", "THREADSWOOLE_BIND": "a:1, b:2",
                                                        "THREADSWOOLE_DAEMON": "yes"})
    assert resolved.workers == 5 and resolved.bind == ["a:1", "b:2"] and resolved.daemon is True
    resolved = resolve({"config": str(config), "workers": "7", "app": "cli:app"}, environ={"THREADSWOOLE_WORKERS": "5"})
    assert resolved.workers == 7 and resolved.app == "cli:app"
    resolved = resolve({"app": "a:b"}, environ={"THREADSWOOLE_CONFIG": str(config)})
    assert resolved.mode == "thread"  # the file named by the environment


def test_every_option_has_a_flag_a_key_and_a_variable():
    names = [option.name for option in OPTIONS]
    assert len(set(names)) == len(names)
    for option in OPTIONS:
        assert option.flag == "--" + option.name.replace("_", "-")
        assert option.env == "THREADSWOOLE_" + option.name.upper()
    from_environment({option.env: "1" for option in OPTIONS if option.kind in (int, float, bool)})


@pytest.mark.parametrize("given,message", [
    ({"workers": "zero"}, "must be an int"),
    ({"workers": "0"}, "must be >= 1"),
    ({"mode": "fast"}, "must be one of base, process, thread"),
    ({"graceful_timeout": "-1"}, "must be >= 0.001"),
    ({"ssl_certfile": "cert.pem"}, "needs both"),
])
def test_bad_values(given, message):
    with pytest.raises(ConfigError, match=message):
        resolve({"app": "a:b", **given}, environ={})


def test_bad_sources(tmp_path):
    with pytest.raises(ConfigError, match="no application"):
        resolve({}, environ={})
    with pytest.raises(ConfigError, match="THREADSWOOLE_DAEMON: 'maybe' is not a boolean"):
        resolve({"app": "a:b"}, environ={"THREADSWOOLE_DAEMON": "maybe"})
    broken = tmp_path / "broken.toml"
    broken.write_text("workers = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        resolve({"app": "a:b", "config": str(broken)}, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("wokers = 2\n")
    with pytest.raises(ConfigError, match="unknown option 'wokers'"):
        resolve({"app": "a:b", "config": str(unknown)}, environ={})
    with pytest.raises(ConfigError, match="cannot read the config file"):
        resolve({"app": "a:b", "config": str(tmp_path / "missing.toml")}, environ={})


@pytest.mark.parametrize("spec,expected", [
    ("127.0.0.1:8000", Listen("tcp", "127.0.0.1", 8000)),
    ("localhost:0", Listen("tcp", "localhost", 0)),
    (":9000", Listen("tcp", "0.0.0.0", 9000)),
    ("example.org", Listen("tcp", "example.org", 8000)),
    ("[::1]:8000", Listen("tcp6", "::1", 8000)),
    ("[::]", Listen("tcp6", "::", 8000)),
    ("unix:/run/app.sock", Listen("unix", "/run/app.sock")),
    ("fd://3", Listen("fd", fd=3)),
])
def test_bind_addresses(spec, expected):
    assert parse_bind(spec) == expected


@pytest.mark.parametrize("spec", ["::1:8000", "[::1", "[::1]x", "host:port", "host:70000", "unix:", "fd://x", ""])
def test_bad_bind_addresses(spec):
    with pytest.raises(ConfigError):
        parse_bind(spec)


def test_systemd_activation_is_for_this_process_only():
    assert systemd_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2"}) == [3, 4]
    assert systemd_fds({"LISTEN_PID": "1", "LISTEN_FDS": "2"}) == []
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1", "LISTEN_FDNAMES": "web"}
    assert listens_for(None, None, environ) == [Listen("fd", fd=3)]
    assert environ == {}  # taken: children must not see them
    assert listens_for(None, None, {}) == [Listen("tcp", "127.0.0.1", 8000)]


@pytest.fixture()
def apps_path():
    sys.path.insert(0, APPS)
    yield
    sys.path.remove(APPS)


def test_loading(apps_path):
    from wsgi_apps import raw

    assert load("wsgi_apps:raw", app_dir=APPS) is raw
    assert detect_interface(load("wsgi_apps:raw", app_dir=APPS)) == "wsgi"
    assert detect_interface(load("asgi_apps:app", app_dir=APPS)) == "asgi"

    class AsgiClass:
        async def __call__(self, scope, receive, send):
            pass

    assert detect_interface(AsgiClass()) == "asgi"
    assert load("wsgi_apps:create()", app_dir=APPS) is raw  # a factory, gunicorn's spelling
    assert load("wsgi_apps:create", app_dir=APPS, factory=True) is raw  # uvicorn's --factory


@pytest.mark.parametrize("reference,message", [
    ("no_such_module:app", "cannot import 'no_such_module': no such module"),
    ("wsgi_apps:missing", "has no attribute 'missing'"),
    ("asgi_apps:NOT_CALLABLE", "is not callable"),
    ("wsgi apps:app", "is not a module name"),
    ("asgi_apps:not_an_app()", "is not callable"),
    ("broken_import:app", "ZeroDivisionError"),
])
def test_load_errors(apps_path, reference, message):
    with pytest.raises(AppLoadError, match=message):
        load(reference, app_dir=APPS)
