"""http.Server end to end, resilience (issue 12): slowloris and idle clients against the
heartbeat, a client that never reads a large response (memory bounded by
socket_buffer_size), keep-alive load from ab, wrk, curl and http.client with the server's
fds / threads / processes back to baseline after, and PROCESS mode keeping every request
through kill -9 of a worker and reloads under keep-alive load.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import tree_resources
from http_server_helpers import RawConnection, curl, echo_app, get, http_server_class, needs_curl, needs_tool, server_stats, wait_until

pytestmark = pytest.mark.timeout(60)
MIB = 1024 * 1024


def start(run_server, mode, settings, setup=echo_app, **kw):
    return run_server(setup, mode=mode, settings={"worker_num": 1, **settings}, server_class=http_server_class(), **kw)


# -- the heartbeat ------------------------------------------------------------------------------

def test_a_slowloris_sending_its_head_one_byte_a_second_is_closed_by_the_heartbeat(run_server, mode):
    handle = start(run_server, mode, {"heartbeat_check_interval": 1, "heartbeat_idle_time": 2})
    head = get("/slow", extra="X-Padding: " + "p" * 40 + "\r\n")
    sock = socket.create_connection(("127.0.0.1", handle.port), timeout=5)
    began = time.monotonic()
    closed_after = None
    try:
        for byte in head[:-2]:  # never the final CRLF
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - began
                break
            sock.settimeout(1.0)
            try:
                if sock.recv(4096) == b"":
                    closed_after = time.monotonic() - began
                    break
            except socket.timeout:
                pass
            except OSError:
                closed_after = time.monotonic() - began
                break
            if time.monotonic() - began > 5:
                break
    finally:
        sock.close()
    assert closed_after is not None and closed_after <= 2 + 1 + 1.5, f"still open after {time.monotonic() - began:.1f} s"
    assert RawConnection(handle.port).request(get("/fixed/2")).body == b"ff"  # others are served


def test_an_idle_keep_alive_connection_and_a_stalled_head_are_closed_by_the_heartbeat(run_server, mode):
    handle = start(run_server, mode, {"heartbeat_check_interval": 1, "heartbeat_idle_time": 1})
    idle = RawConnection(handle.port)
    assert idle.request(get("/fixed/1")).status == 200
    stalled = RawConnection(handle.port)
    stalled.send(b"GET /never-finished HTTP/1.1\r\nHo")
    began = time.monotonic()
    assert idle.closed_by_server(timeout=5) and stalled.closed_by_server(timeout=5)
    assert time.monotonic() - began <= 1 + 1 + 1.5
    idle.close()
    stalled.close()
    assert RawConnection(handle.port).request(get("/fixed/3")).body == b"fff"


# -- a client that never reads ------------------------------------------------------------------
def huge_app(server, emit):
    echo_app(server, emit)
    on_echo = server.get_callback("request")

    def on_request(request, response):
        path = request.server["request_uri"]
        if path == "/huge-write":  # 64 MiB in 1 MiB chunks, as fast as the server takes them
            chunk = b"h" * MIB
            written = 0
            while written < 64 and response.write(chunk):
                written += 1
            emit("huge", written=written, last_error=server.get_last_error())
        elif path == "/huge-file":
            emit("huge", sent=response.sendfile(request.get["path"]))
        else:
            on_echo(request, response)

    server.on("request", on_request)


def tree_rss(handle) -> int:
    total = 0
    for proc in handle.tree():
        try:
            total += proc.memory_info().rss
        except Exception:  # noqa: BLE001 - a process that just went
            pass
    return total


def never_reading_client(port: int, request: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def test_a_client_that_never_reads_64_mib_does_not_grow_the_server_past_socket_buffer_size(run_server, mode, tmp_path):
    buffer_size = 4 * MIB
    handle = start(run_server, mode, {"socket_buffer_size": buffer_size}, setup=huge_app)
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(64 * MIB)
    assert RawConnection(handle.port).request(get("/fixed/1")).status == 200
    before = tree_rss(handle)
    writer = never_reading_client(handle.port, get("/huge-write"))
    result = handle.wait("huge", timeout=20)
    assert 0 < result["written"] < 64 and result["last_error"] == 1008  # OUTPUT_BUFFER_OVERFLOW, not memory
    reader = never_reading_client(handle.port, get(f"/huge-file?path={big}"))
    assert handle.wait("huge", timeout=20)["sent"] is True
    time.sleep(0.3)  # the reactor has filled the kernel buffers by now; nothing else to wait for
    growth = tree_rss(handle) - before
    # The bound is the send queue twice over (in PROCESS mode the bytes sit in the worker while it
    # writes them to the pipe and in the master's queue) plus allocator slack (free-threaded 3.13's
    # mimalloc keeps freed pages): far below the 64 MiB a server without a limit would hold.
    assert growth < 2 * buffer_size + 8 * MIB, f"server tree grew {growth / MIB:.1f} MiB"
    with RawConnection(handle.port) as other:  # everybody else is served meanwhile
        assert other.request(get("/fixed/5")).body == b"fffff"
    writer.close()
    reader.close()
    assert wait_until(lambda: server_stats(handle.port)["connection_num"] == 1)


def test_a_response_that_could_not_be_written_closes_the_connection(run_server, mode):
    handle = start(run_server, mode, {"socket_buffer_size": 2 * MIB}, setup=huge_app)
    writer = never_reading_client(handle.port, get("/huge-write"))
    assert handle.wait("huge", timeout=20)["written"] < 64
    writer.settimeout(2)  # reading the few MiB queued takes milliseconds; then EOF is due
    received = 0
    try:
        while True:
            data = writer.recv(MIB)
            if not data:
                break
            received += len(data)
    except socket.timeout:
        pytest.fail(f"the connection is still open after {received} bytes of a truncated chunked body")
    finally:
        writer.close()


# A client that pipelines and reads late: its answers pile up past half of socket_buffer_size,
# so the server parks its next requests and stops reading it (Host.hold_events; in PROCESS also
# after 64 requests its worker has not finished) until it reads; no answer fails for room.
def test_a_client_that_pipelines_many_requests_and_reads_late_gets_every_answer(run_server, mode):
    handle = start(run_server, mode, {"socket_buffer_size": 256 * 1024})
    count, size = 5000, 2000  # 10 MB of answers: far over socket_buffer_size and the kernel's buffers
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", handle.port))
    sender = threading.Thread(target=sock.sendall, args=(b"".join(get(f"/fixed/{size}") for _ in range(count)),))
    sender.start()
    time.sleep(0.5)  # the client is slow to read: the server must wait for it, not drop answers
    got = 0
    with RawConnection(sock=sock, timeout=2) as conn:
        try:
            while got < count:
                assert conn.read_response().body == b"f" * size
                got += 1
        except (socket.timeout, EOFError):
            pass
    sender.join(5)
    assert got == count, f"{got} of {count} answers"


# -- keep-alive load -------------------------------------------------------------------------------
def keep_alive_clients(port: int, connections: int, requests: int, path: str = "/fixed/13") -> list[str]:
    """`connections` threads, each `requests` GETs on one http.client connection; the failures."""
    failures: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(requests):
                conn.request("GET", path)
                reply = conn.getresponse()
                if reply.status != 200 or reply.read() != b"f" * 13:
                    failures.append(f"status {reply.status}")
        except Exception as exc:  # noqa: BLE001 - reported
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return failures


def quiet_resources(handle) -> dict:
    """fds / threads / processes once the server holds no client connection (connection_num
    is 1: the stats probe itself) and two readings 0.1 s apart agree (the probe's own close)."""
    assert wait_until(lambda: server_stats(handle.port)["connection_num"] == 1)
    readings: list[dict] = []

    def stable() -> dict | None:
        readings.append(tree_resources(handle))
        return readings[-1] if len(readings) > 1 and readings[-1] == readings[-2] else None

    return wait_until(stable, timeout=5, interval=0.1) or readings[-1]


@needs_tool("ab")
@needs_tool("wrk")
@needs_curl
def test_keep_alive_load_from_ab_wrk_curl_and_http_client_then_back_to_baseline(run_server, mode):
    handle = start(run_server, mode, {"worker_num": 2})
    url = f"http://127.0.0.1:{handle.port}/fixed/13"
    assert not keep_alive_clients(handle.port, 4, 2)  # warm-up: every worker has served
    baseline = quiet_resources(handle)
    assert not keep_alive_clients(handle.port, 50, 20)  # 1,000 requests from 50 connections

    out = subprocess.run(["ab", "-q", "-k", "-n", "2000", "-c", "20", url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    figures = {key: int(value) for key, value in re.findall(r"^(Complete requests|Failed requests|Keep-Alive requests):\s+(\d+)", out.stdout, re.M)}
    assert figures == {"Complete requests": 2000, "Failed requests": 0, "Keep-Alive requests": 2000}, out.stdout
    assert "Non-2xx" not in out.stdout

    out = subprocess.run(["wrk", "-t", "1", "-c", "50", "-d", "1s", url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Socket errors" not in out.stdout and "Non-2xx" not in out.stdout, out.stdout
    assert int(re.search(r"(\d+) requests in", out.stdout).group(1)) > 50

    urls = [arg for _ in range(200) for arg in (url, "-o", "/dev/null")]  # one curl, 200 requests, one connection
    out = curl("-w", "%{http_code} %{num_connects}\n", *urls)
    lines = out.stdout.decode().split()
    assert lines[0::2] == ["200"] * 200 and sum(map(int, lines[1::2])) == 1

    after = wait_until(lambda: (now := quiet_resources(handle)) == baseline and now, timeout=10) or quiet_resources(handle)
    assert after == baseline, f"fds/threads/processes {baseline} -> {after}"
    assert handle.stop() == 0


# -- PROCESS mode: kill -9 and reload under keep-alive load -------------------------------------------
def tag_app(server, emit):
    def on_request(request, response):
        response.end(request.server["request_uri"].encode())

    server.on("request", on_request)
    server.on("worker_start", lambda srv, worker_id: emit("worker", pid=os.getpid(), worker_id=worker_id))


class TaggedLoad:
    """Keep-alive clients whose every answer must be the path it asked for (no loss, no
    duplicate, no answer on the wrong connection); runs until stopped."""

    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(index,)) for index in range(connections)]
        for thread in self.threads:
            thread.start()

    def client(self, index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sequence = 0
        try:
            while not self.stopping.is_set():
                path = f"/tag/{index}/{sequence}"
                conn.request("GET", path)
                reply = conn.getresponse()
                body = reply.read()
                if reply.status != 200 or body != path.encode():
                    self.failures.append(f"{path}: {reply.status} {body[:60]!r}")
                else:
                    self.ok += 1
                sequence += 1
        except Exception as exc:  # noqa: BLE001 - a lost request or connection
            self.failures.append(f"client {index} request {sequence}: {exc!r}")
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)


def test_process_mode_keeps_every_request_through_kill_9_and_reloads(run_server):
    handle = start(run_server, "process", {"worker_num": 2}, setup=tag_app, wait_for=None)
    workers = {event["worker_id"]: event["pid"] for event in handle.wait_n("worker", 2)}
    load = TaggedLoad(handle.port, 20)
    try:
        for round_ in range(2):  # kill -9 each worker in turn; the manager starts a new one
            time.sleep(0.5)
            victim = workers[round_ % 2]
            os.kill(victim, signal.SIGKILL)
            workers[round_ % 2] = handle.wait("worker", worker_id=round_ % 2, timeout=10)["pid"]
        for _ in range(2):  # reload: every worker restarts while the load goes on
            time.sleep(0.5)
            handle.signal(signal.SIGUSR1)
            for event in handle.wait_n("worker", 2, timeout=15):
                workers[event["worker_id"]] = event["pid"]
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.failures == [] and load.ok > 100, (load.ok, load.failures[:5])
    assert handle.stop() == 0
