"""http.Server end to end, static files (contract §8: enable_static_handler + document_root),
in every mode: files served without on_request, 304, Range 206/416, index files, autoindex,
nothing outside the root (`..`, %2e%2e, NUL, symlinks), static_handler_locations on a port.

Requests that static handling refuses reach on_request, which answers "dynamic <path>".
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
from email.utils import formatdate

import pytest

from http_server_helpers import RawConnection, curl, get, module_server, needs_curl

pytestmark = pytest.mark.timeout(60)
BIG = 3 * 1024 * 1024 + 7


def make_tree(directory: str) -> str:
    """document_root with files, an index in sub/, a listed dir, and symlinks leading out."""
    root = os.path.join(directory, "root")
    outside = os.path.join(directory, "outside")
    for path in (root, outside, f"{root}/sub", f"{root}/listed/inner", f"{root}/static"):
        os.makedirs(path)
    files = {
        "index.html": b"<h1>home</h1>", "a.txt": b"0123456789abcdefghij", "sub/index.htm": b"sub index",
        "listed/one.css": b"body{}", "listed/<two>&.txt": b"escaped", "static/s.js": b"var s;",
        "big.bin": hashlib.sha256(b"seed").digest() * (BIG // 32) + b"x" * (BIG % 32),
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    with open(os.path.join(outside, "secret.txt"), "wb") as f:
        f.write(b"SECRET")
    os.symlink(os.path.join(outside, "secret.txt"), os.path.join(root, "link-out.txt"))
    os.symlink(outside, os.path.join(root, "dir-out"))
    os.symlink(os.path.join(root, "a.txt"), os.path.join(root, "link-in.txt"))
    return root


def app(server, emit):
    from threadswoole.constants import SWOOLE_SOCK_TCP

    def on_request(request, response):
        response.end(b"dynamic " + request.server["request_uri"].encode())

    server.on("request", on_request)
    port = server.add_listener("127.0.0.1", 0, SWOOLE_SOCK_TCP)  # inherits HTTP and the static settings
    port.set({"static_handler_locations": ["/static", "/a.txt"], "http_autoindex": False})


def settings(mode: str, directory: str) -> dict:
    return {"worker_num": 1, "enable_static_handler": True, "document_root": make_tree(directory),
            "http_index_files": ["index.html", "index.htm"], "http_autoindex": True}


server = module_server(app, settings)


def root_of(server) -> str:
    return os.path.join(server.tmpdir, "root")


def test_a_file_is_served_with_type_and_last_modified(server):
    reply = RawConnection(server.port).request(get("/a.txt"))
    assert reply.status == 200 and reply.body == b"0123456789abcdefghij"
    assert reply.headers["content-type"].startswith("text/plain")
    mtime = os.stat(os.path.join(root_of(server), "a.txt")).st_mtime
    assert reply.headers["last-modified"] == formatdate(int(mtime), usegmt=True)
    assert reply.headers["accept-ranges"] == "bytes"


def test_if_modified_since_answers_304(server):
    with RawConnection(server.port) as conn:
        modified = conn.request(get("/a.txt")).headers["last-modified"]
        reply = conn.request(get("/a.txt", extra=f"If-Modified-Since: {modified}\r\n"))
        assert reply.status == 304 and reply.body == b""
        newer = formatdate(time.time() + 3600, usegmt=True)
        assert conn.request(get("/a.txt", extra=f"If-Modified-Since: {newer}\r\n")).status == 304
        mtime = os.stat(os.path.join(root_of(server), "a.txt")).st_mtime
        older = formatdate(mtime - 3600, usegmt=True)  # the file changed since: sent again
        assert conn.request(get("/a.txt", extra=f"If-Modified-Since: {older}\r\n")).status == 200
        assert conn.request(get("/a.txt", extra="If-Modified-Since: not a date\r\n")).status == 200
        assert conn.request(get("/a.txt")).body == b"0123456789abcdefghij"  # keep-alive after the 304s


@pytest.mark.parametrize("spec,status,body,content_range", [
    ("bytes=0-9", 206, b"0123456789", "bytes 0-9/20"),
    ("bytes=10-", 206, b"abcdefghij", "bytes 10-19/20"),
    ("bytes=-5", 206, b"fghij", "bytes 15-19/20"),
    ("bytes=5-500", 206, b"56789abcdefghij", "bytes 5-19/20"),
    ("bytes=20-", 416, b"", "bytes */20"),
    ("bytes=0-1,5-6", 200, b"0123456789abcdefghij", None),  # several ranges: the whole file
    ("items=0-1", 200, b"0123456789abcdefghij", None),
])
def test_range_requests(server, spec, status, body, content_range):
    reply = RawConnection(server.port).request(get("/a.txt", extra=f"Range: {spec}\r\n"))
    assert (reply.status, reply.body, reply.headers.get("content-range")) == (status, body, content_range)


@needs_curl
def test_a_large_file_and_a_range_of_it_with_curl(server, tmp_path):
    with open(os.path.join(root_of(server), "big.bin"), "rb") as f:
        data = f.read()
    out = tmp_path / "got"
    curl("-o", str(out), f"http://127.0.0.1:{server.port}/big.bin")
    assert out.read_bytes() == data
    part = curl("-r", "1000000-1000099", f"http://127.0.0.1:{server.port}/big.bin").stdout
    assert part == data[1000000:1000100]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("HEAD", "/big.bin")
    reply = conn.getresponse()
    assert reply.getheader("Content-Length") == str(BIG) and reply.read() == b""
    conn.close()


def test_index_files_in_order_and_autoindex(server):
    with RawConnection(server.port) as conn:
        assert conn.request(get("/")).body == b"<h1>home</h1>"
        assert conn.request(get("/sub/")).body == b"sub index"
        listing = conn.request(get("/listed/"))
        assert listing.status == 200 and listing.headers["content-type"].startswith("text/html")
        text = listing.body.decode()
        assert 'href="/listed/one.css"' in text and 'href="/listed/inner/"' in text
        assert "&lt;two&gt;&amp;.txt" in text and "%3Ctwo%3E%26.txt" in text  # escaped and percent-encoded
        assert conn.request(get("/listed/%3Ctwo%3E%26.txt")).body == b"escaped"


@pytest.mark.parametrize("target", [
    "/../outside/secret.txt", "/sub/../../outside/secret.txt", "/%2e%2e/outside/secret.txt", "/%2E%2E/outside/secret.txt",
    "/sub/%2e%2e/%2e%2e/outside/secret.txt", "/a.txt%00.html", "/link-out.txt", "/dir-out/secret.txt", "/..%2foutside/secret.txt",
])
def test_nothing_outside_the_root_is_served(server, target):
    reply = RawConnection(server.port).request(get(target))  # a raw socket: clients normalise these
    assert reply.body == b"dynamic " + target.encode()  # not served: on_request gets it, as a missing file


def test_a_symlink_inside_the_root_is_served_and_methods_other_than_get_head_are_dynamic(server):
    with RawConnection(server.port) as conn:
        assert conn.request(get("/link-in.txt")).body == b"0123456789abcdefghij"
        reply = conn.request(b"POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        assert reply.body == b"dynamic /a.txt"
        assert conn.request(get("/missing.txt")).body == b"dynamic /missing.txt"
        assert conn.request(get("/a.txt/")).body == b"dynamic /a.txt/"  # a trailing slash names a directory


@needs_curl
def test_curl_path_as_is_cannot_escape(server):
    out = curl("--path-as-is", f"http://127.0.0.1:{server.port}/../../outside/secret.txt", check=False)
    assert b"SECRET" not in out.stdout


def test_static_handler_locations_on_an_added_port(server):
    port = server.ports[1]
    with RawConnection(port) as conn:
        assert conn.request(get("/static/s.js")).body == b"var s;"
        assert conn.request(get("/a.txt")).body == b"0123456789abcdefghij"
        assert conn.request(get("/index.html")).body == b"dynamic /index.html"  # outside the locations
        assert conn.request(get("/listed/")).body == b"dynamic /listed/"  # and no autoindex here
        assert conn.request(get("/static")).body == b"dynamic /static"  # the location itself: a directory, no index
