"""Real applications under `threadswoole serve`: Flask (WSGI), a Django project (WSGI and ASGI)
and FastAPI/Starlette (ASGI), each in BASE, PROCESS and THREAD, driven with http.client (forms,
uploads, streaming responses, cookies, redirects, errors) and, for FastAPI, a WebSocket.

The frameworks are test-only dependencies (``pip install -e .[test,apps]``; ``tox -e apps``);
without them these tests are skipped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import uuid

import pytest

from serve_harness import ServeProcess

HERE = os.path.dirname(os.path.abspath(__file__))
FRAMEWORKS = {
    "flask": ("flask_app:app", "flask", "Hello from Flask"),
    "django-wsgi": ("djangoproject.wsgi:application", "django", "Hello from Django"),
    "django-asgi": ("djangoproject.asgi:application", "django", "Hello from Django"),
    "fastapi": ("fastapi_app:app", "fastapi", "Hello from FastAPI"),
}
MODES = ["base", "process", "thread"]
WORKERS = {"base": 1, "process": 2, "thread": 2}


@pytest.fixture(scope="module", params=[(f, m) for f in FRAMEWORKS for m in MODES], ids=lambda p: f"{p[0]}-{p[1]}")
def server(request):
    framework, mode = request.param
    reference, package, greeting = FRAMEWORKS[framework]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install -e .[apps], or tox -e apps)")
    with ServeProcess([reference, "--mode", mode, "--workers", str(WORKERS[mode])], app_dir=HERE) as process:
        process.framework, process.mode, process.greeting = framework, mode, greeting
        yield process
    if framework == "fastapi":
        assert "FASTAPI LIFESPAN SHUTDOWN" in process.output


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def test_index(server):
    response, body = server.request("GET", "/")
    assert response.status == 200 and body.decode() == server.greeting


def test_urlencoded_form(server):
    response, body = server.request("POST", "/form", body=b"name=Ada+Lovelace&colour=bl%C3%BCe",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 200, body
    assert json.loads(body) == {"name": "Ada Lovelace", "colour": "blüe"}


@pytest.mark.parametrize("size", [1000, 300_000])
def test_upload(server, size):
    data = os.urandom(size)
    body, content_type = multipart({"note": "a file"}, {"file": ("data.bin", data)})
    response, answer = server.request("POST", "/upload", body=body, headers={"Content-Type": content_type})
    assert response.status == 200, answer
    assert json.loads(answer) == {"name": "data.bin", "size": size, "sha256": hashlib.sha256(data).hexdigest(),
                                  "field": "a file"}


def test_streaming_response(server):
    connection = server.connection()
    try:
        connection.request("GET", "/stream?n=20")
        response = connection.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked" or response.getheader("Content-Length")
        assert response.read() == b"".join(b"part %d\n" % i for i in range(20))
    finally:
        connection.close()


def test_cookies_and_redirect(server):
    response, _ = server.request("GET", "/login")
    assert response.status == 302 and response.getheader("Location").endswith("/whoami")
    cookie = response.getheader("Set-Cookie")
    assert cookie.startswith("user=alice")
    response, body = server.request("GET", "/whoami", headers={"Cookie": "user=alice"})
    assert json.loads(body)["user"] == "alice"


def test_a_failing_view_is_500_and_the_worker_carries_on(server):
    response, body = server.request("GET", "/fail")
    assert response.status == 500
    response, body = server.request("GET", "/")
    assert body.decode() == server.greeting


def test_keep_alive(server):
    connection = server.connection()
    try:
        for _ in range(5):
            connection.request("GET", "/")
            assert connection.getresponse().read().decode() == server.greeting
    finally:
        connection.close()


def test_fastapi_sync_view_and_lifespan_state(server):
    if server.framework != "fastapi":
        pytest.skip("FastAPI only")
    response, body = server.request("GET", "/sync")
    answer = json.loads(body)
    assert answer["greeting"] == "hello from the lifespan"
    assert answer["thread"] != "MainThread"  # anyio's worker thread: sniffio found asyncio


def test_fastapi_websocket(server):
    if server.framework != "fastapi":
        pytest.skip("FastAPI only")
    if importlib.util.find_spec("websockets") is None:
        pytest.skip("the websockets client is not installed")
    from websockets.sync.client import connect

    host, port = server.host_port
    with connect(f"ws://{host}:{port}/ws", open_timeout=10, close_timeout=5) as websocket:
        for text in ("one", "två", "x" * 100_000):
            websocket.send(text)
            assert websocket.recv(timeout=10) == f"echo: {text}"
