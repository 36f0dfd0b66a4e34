"""WSGI applications for tests/test_serve_wsgi.py: `app` is checked by wsgiref.validate on every
request (so the server's side of PEP 3333 is checked too); `bad` misbehaves on purpose."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from wsgiref.validate import validator

CLOSED = {"count": 0}
_lock = threading.Lock()


class Closing:
    """An iterable whose close() the server must call, however the response ended."""

    def __init__(self, chunks, fail_at=None):
        self.chunks = chunks
        self.fail_at = fail_at

    def __iter__(self):
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError("failing in the middle of the body, on purpose")
            yield chunk

    def close(self):
        with _lock:
            CLOSED["count"] += 1


def _read_all(stream, size=65536):
    chunks = []
    while True:
        data = stream.read(size)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _query(environ):
    return dict(part.split("=", 1) for part in environ["QUERY_STRING"].split("&") if "=" in part)


def raw(environ, start_response):
    path = environ["PATH_INFO"]
    query = _query(environ)
    pid = [("X-Pid", str(os.getpid())), ("X-Thread", threading.current_thread().name)]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")] + pid)
        return [b"Hello, World!"]
    if path == "/echo":
        body = _read_all(environ["wsgi.input"], int(query.get("size", "65536")))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(body)))] + pid)
        return [body]
    if path == "/lines":
        lines = list(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d lines, last %s" % (len(lines), lines[-1].strip() if lines else b"-")]
    if path.startswith("/environ"):
        keys = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int)) and not k.startswith("wsgi.input")}
        keys["wsgi.version"] = list(environ["wsgi.version"])
        body = json.dumps(keys).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        count = int(query.get("n", "5"))
        size = int(query.get("size", "10"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"%d" % (i % 10) * size for i in range(count)])
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        write(b"directly ")
        return [b"then returned"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        handle = open(query["path"], "rb")
        if "offset" in query:
            handle.seek(int(query["offset"]))
        return environ["wsgi.file_wrapper"](handle, 8192)
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("replaced before the head went out")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"the error page"]
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(CLOSED["count"]).encode()]
    if path == "/sleep":
        time.sleep(float(query.get("s", "0.2")))
        start_response("200 OK", [("Content-Type", "text/plain")] + pid)
        return [b"slept"]
    if path == "/cookies":
        start_response("302 Found", [("Location", "/hello"), ("Set-Cookie", "a=1; Path=/"),
                                     ("Set-Cookie", "b=2; Path=/"), ("Content-Type", "text/plain")])
        return [b"see /hello"]
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such page"]


app = validator(raw)


def create():
    """A factory (``wsgi_apps:create()`` or ``--factory``)."""
    return raw


def bad(environ, start_response):
    """What PEP 3333 forbids or what breaks: the server answers 500 or cuts, then carries on."""
    path = environ["PATH_INFO"]
    if path == "/raise-before":
        raise RuntimeError("failing before start_response, on purpose")
    if path == "/raise-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"first part, ", b"never sent"], fail_at=1)
    if path == "/non-iterable":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return 42
    if path == "/no-start-response":
        return [b"body without a status"]
    if path == "/hop-by-hop":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Keep-Alive", "timeout=5")])
        return [b"hop"]
    if path == "/connection-close":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [b"closing"]
    if path == "/overrun":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"12345", b"67890"]
    if path == "/underrun":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"12345"]
    if path == "/no-read":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
        return [b"did not read the body"]
    if path == "/bad-header":
        start_response("200 OK", [("Content-Type", "text/plain\r\nX-Injected: yes")])
        return [b"no"]
    if path == "/file":  # unwrapped (the validator would hide the file wrapper): sendfile(2)
        query = _query(environ)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        handle = open(query["path"], "rb")
        if "offset" in query:
            handle.seek(int(query["offset"]))
        return environ["wsgi.file_wrapper"](handle, 8192)
    if path == "/big-stream":
        size = int(_query(environ).get("mib", "8"))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size * 1024 * 1024)), ("X-Pid", str(os.getpid()))])
        return Closing([b"x" * 65536] * (size * 16))
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
    return [b"fine"]
