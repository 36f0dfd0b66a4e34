"""The `threadswoole serve` command: help, startup errors, listeners, TLS, signals, restarts,
the pid file, the access log, daemon mode, configuration sources. Real processes throughout."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import psutil
import pytest

from serve_harness import APPS, ROOT, ServeProcess, split_url
from tls_certs import have_openssl, make_certs


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "threadswoole", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_help_reads_like_its_peers():
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for flag in ("--interface", "--mode", "--workers", "--bind", "--fd", "--ssl-certfile", "--max-requests",
                 "--max-requests-jitter", "--graceful-timeout", "--access-log", "--log-level", "--pid", "--daemon",
                 "--config", "--metrics-bind", "--root-path", "THREADSWOOLE_WORKERS", "HUP or USR1"):
        assert flag in result.stdout, flag
    assert run_cli("--help").returncode == 0 and "demo" in run_cli("--help").stdout


@pytest.mark.parametrize("reference,status,message", [
    ("no_such_module:app", 4, "cannot import 'no_such_module': no such module"),
    ("wsgi_apps:missing", 4, "has no attribute 'missing'"),
    ("asgi_apps:NOT_CALLABLE", 4, "int object 'NOT_CALLABLE' is not callable"),
    ("broken_import:app", 4, "ZeroDivisionError: division by zero"),
])
def test_startup_errors_are_clear(reference, status, message):
    result = run_cli("serve", reference, "--app-dir", APPS, "--bind", "127.0.0.1:0")
    assert result.returncode == status
    assert message in result.stderr
    if reference.startswith("broken"):
        assert "Traceback (most recent call last)" in result.stderr and "broken_import.py" in result.stderr


def test_bad_options_exit_2():
    result = run_cli("serve", "wsgi_apps:app", "--workers", "0")
    assert result.returncode == 2 and "workers must be >= 1" in result.stderr
    result = run_cli("serve", "wsgi_apps:app", "--app-dir", APPS, "--bind", "[::1")
    assert result.returncode != 0 and "missing ']'" in result.stderr


def test_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "wsgi_apps:app", "--app-dir", APPS, "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 3 and "Address already in use" in result.stderr


def _get(host: str, port: int, path: str = "/hello") -> bytes:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()


def _unix_get(path: str, request_path: str = "/hello") -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(f"GET {request_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_several_listeners(tmp_path):
    path = str(tmp_path / "app.sock")
    with ServeProcess(["wsgi_apps:app", "--bind", "127.0.0.1:0", "--bind", "[::1]:0", "--bind", f"unix:{path}"]) as server:
        assert len(server.addresses) == 3
        for url in server.addresses[:2]:
            assert _get(*split_url(url)) == b"Hello, World!"
        assert server.addresses[2] == f"unix:{path}"
        assert _unix_get(path).endswith(b"Hello, World!\r\n0\r\n\r\n")
    assert not os.path.exists(path)


def test_inherited_socket_fd():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    with ServeProcess(["wsgi_apps:app", "--fd", str(fd)], pass_fds=(fd,)) as server:
        listener.close()  # the server holds its own copy
        assert split_url(server.addresses[0]) == ("127.0.0.1", port)
        assert _get("127.0.0.1", port) == b"Hello, World!"


def test_systemd_socket_activation():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # as systemd does: the socket at fd 3, LISTEN_PID the pid of the process that execs
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.environ['LISTEN_FDS'] = '1'; os.execv(sys.argv[2], sys.argv[2:])")
    wrap = [sys.executable, "-c", launcher, str(fd)]
    with ServeProcess(["wsgi_apps:app"], bind=False, pass_fds=(fd,), wrap=wrap) as server:
        listener.close()
        assert split_url(server.addresses[0]) == ("127.0.0.1", port)
        assert _get("127.0.0.1", port) == b"Hello, World!"


@pytest.mark.skipif(not have_openssl(), reason="the openssl command makes the test certificates")
@pytest.mark.parametrize("app", ["wsgi_apps:app", "asgi_apps:app"])
def test_tls(tmp_path, app):
    certs = make_certs(str(tmp_path))
    with ServeProcess([app, "--ssl-certfile", certs.server_cert, "--ssl-keyfile", certs.server_key]) as server:
        assert server.addresses[0].startswith("https://")
        host, port = server.host_port
        context = certs.client_context(with_cert=None)
        connection = http.client.HTTPSConnection(host, port, timeout=10, context=context)
        try:
            connection.request("GET", "/hello")
            assert connection.getresponse().read() == b"Hello, World!"
            connection.request("GET", "/scope" if app.startswith("asgi") else "/environ")
            assert b'"https"' in connection.getresponse().read()  # url_scheme / scheme
        finally:
            connection.close()


def test_root_path():
    with ServeProcess(["wsgi_apps:app", "--root-path", "/mounted"]) as server:
        response, body = server.request("GET", "/mounted/environ")
        assert b'"SCRIPT_NAME": "/mounted"' in body and b'"PATH_INFO": "/environ"' in body
    with ServeProcess(["asgi_apps:app", "--root-path", "/mounted"]) as server:
        response, body = server.request("GET", "/scope")
        assert b'"root_path": "/mounted"' in body and b'"path": "/mounted/scope"' in body


def test_config_file_and_environment(tmp_path):
    config = tmp_path / "serve.toml"
    config.write_text('app = "wsgi_apps:app"\nmode = "thread"\nworkers = 3\n')
    env = dict(os.environ, THREADSWOOLE_WORKERS="2")
    with ServeProcess(["--config", str(config)], env=env) as server:
        server.wait_for(r"\(WSGI, thread mode, 2 workers\)")
        assert server.request("GET", "/hello")[1] == b"Hello, World!"


def test_access_log(tmp_path):
    log_path = tmp_path / "access.log"
    with ServeProcess(["wsgi_apps:app", "--access-log", str(log_path), "--mode", "thread", "--workers", "2"]) as server:
        server.request("GET", "/hello?x=1", headers={"User-Agent": "tester/1.0", "Referer": "http://r/"})
        server.request("POST", "/echo", body=b"12345")
        server.request("GET", "/nowhere")
    lines = log_path.read_text().splitlines()
    combined = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(.*?)" (\d{3}) (\d+|-) "(.*?)" "(.*?)"$')
    parsed = [combined.match(line).groups() for line in lines]
    assert ("GET /hello?x=1 HTTP/1.1", "200", "13", "http://r/", "tester/1.0") in parsed
    assert any(p[0] == "POST /echo HTTP/1.1" and p[2] == "5" for p in parsed)
    assert any(p[0] == "GET /nowhere HTTP/1.1" and p[1] == "404" for p in parsed)


def test_pid_file_and_graceful_stop(tmp_path):
    """SIGTERM: the request in progress is answered, then the server exits 0, the pid file goes."""
    pid_file = tmp_path / "serve.pid"
    server = ServeProcess(["wsgi_apps:app", "--pid", str(pid_file)])
    try:
        assert int(pid_file.read_text()) == server.master_pid
        results = []
        worker = threading.Thread(target=lambda: results.append(server.request("GET", "/sleep?s=1.0")[1]))
        worker.start()
        time.sleep(0.3)
        assert server.stop(signal.SIGTERM) == 0
        worker.join(10)
        assert results == [b"slept"]
        assert not pid_file.exists()
    finally:
        server.close()


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM])
def test_stop_signals_with_workers(signo):
    server = ServeProcess(["asgi_apps:app", "--workers", "2"])
    try:
        assert server.request("GET", "/hello")[1] == b"Hello, World!"
        deadline = time.monotonic() + 10
        while len(server.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        children = server.children()
        assert len(children) == 2
        assert server.stop(signo) == 0
        assert server.count("LIFESPAN SHUTDOWN") == 2  # every worker ran the lifespan shutdown
        psutil.wait_procs(children, timeout=5)
        assert not any(child.is_running() for child in children)
    finally:
        server.close()


def _pid_of(server, connection=None) -> int:
    if connection is None:
        response, _ = server.request("GET", "/hello")
        return int(response.getheader("X-Pid"))
    connection.request("GET", "/hello")
    response = connection.getresponse()
    response.read()
    return int(response.getheader("X-Pid"))


@pytest.mark.parametrize("signo", [signal.SIGHUP, signal.SIGUSR1])
def test_reload_signals_restart_the_workers(signo):
    """HUP (gunicorn) and USR1 (Swoole): a rolling restart; in PROCESS mode a keep-alive
    connection opened before it is still served after it, by a new worker."""
    with ServeProcess(["wsgi_apps:app", "--mode", "process", "--workers", "2"]) as server:
        before = {child.pid for child in server.children() if child.pid != server.master_pid}
        connection = server.connection()
        try:
            old_pid = _pid_of(server, connection)
            server.send_signal(signo)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                current = {p.pid for p in server.children()}
                if old_pid not in current and len(current - before) >= 2:
                    break
                time.sleep(0.1)
            new_pid = _pid_of(server, connection)  # the same connection, kept through the reload
            assert new_pid != old_pid
        finally:
            connection.close()


def test_max_requests_restarts_workers():
    with ServeProcess(["wsgi_apps:app", "--workers", "2", "--max-requests", "5", "--max-requests-jitter", "2",
                       "--metrics-bind", "127.0.0.1:0"]) as server:
        pids = set()
        for _ in range(40):
            try:
                pids.add(_pid_of(server))
            except (ConnectionError, http.client.HTTPException):
                pass  # a BASE worker that restarts closes its connections
        assert len(pids) > 2
        host, port = split_url(server.metrics_url)
        text = _get(host, port, "/metrics").decode()
        restarts = sum(int(v) for v in re.findall(r'^threadswoole_worker_restarts_total\{worker="\d+"\} (\d+)$', text, re.M))
        assert restarts >= 2


def test_daemon_mode(tmp_path):
    pid_file = tmp_path / "serve.pid"
    log_file = tmp_path / "serve.log"
    result = run_cli("serve", "wsgi_apps:app", "--app-dir", APPS, "--bind", "127.0.0.1:0", "--daemon",
                     "--pid", str(pid_file), "--log-file", str(log_file))
    assert result.returncode == 0  # the launcher returns at once; the server runs detached
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (log_file.exists() and "listening at" in log_file.read_text()):
        time.sleep(0.05)
    text = log_file.read_text()
    url = re.search(r"listening at (\S+)", text).group(1)
    pid = int(pid_file.read_text())
    try:
        assert psutil.Process(pid).ppid() == 1 or psutil.Process(pid).terminal() is None
        assert _get(*split_url(url)) == b"Hello, World!"
    finally:
        os.kill(pid, signal.SIGTERM)
        gone, alive = psutil.wait_procs([psutil.Process(pid)], timeout=15)
        for process in alive:
            process.kill()
    assert not pid_file.exists()


def test_process_mode_survives_a_worker_crash():
    """PROCESS: kill -9 the worker in the middle of a request: the client still gets its answer
    (the event is handed again to the replacement) on the same connection, which stays open."""
    with ServeProcess(["wsgi_apps:app", "--mode", "process", "--workers", "1"]) as server:
        connection = server.connection(timeout=20)
        try:
            victim = _pid_of(server, connection)
            results = []

            def slow_request():
                connection.request("GET", "/sleep?s=1.5")
                response = connection.getresponse()
                results.append((response.status, response.read(), int(response.getheader("X-Pid"))))

            worker = threading.Thread(target=slow_request)
            worker.start()
            time.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
            worker.join(20)
            assert results and results[0][:2] == (200, b"slept")
            assert results[0][2] != victim  # answered by the replacement
            assert _pid_of(server, connection) == results[0][2]  # the same connection, still open
        finally:
            connection.close()


def test_a_sighup_before_the_server_can_reload_is_ignored_not_fatal():
    """SIGHUP is forwarded as SIGUSR1 only while the mode's SIGUSR1 handler is in place: in the
    start-up window before it (SIGUSR1 still at its default action) forwarding would kill the
    process. A real process, its own signals; a SIGHUP with the handler in place still reloads."""
    program = (
        "import os, signal\n"
        "from threadswoole.serve.runner import forward_sighup_as_reload\n"
        "signal.signal(signal.SIGUSR1, signal.SIG_DFL)\n"
        "signal.signal(signal.SIGHUP, forward_sighup_as_reload)\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "print('survived', flush=True)\n"
        "reloads = []\n"
        "signal.signal(signal.SIGUSR1, lambda signo, frame: reloads.append(signo))\n"
        "os.kill(os.getpid(), signal.SIGHUP)\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, set())  # a call: pending handlers run by now\n"
        "print('reloads', len(reloads), flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["survived", "reloads 1"]
    assert "SIGHUP ignored" in result.stderr
