"""StaticFiles with real temp trees and symlinks: safe resolution, 304, ranges, index, autoindex."""

from __future__ import annotations

import os
from email.utils import formatdate
from pathlib import Path

import pytest
from http_fakes import RecordingTransport

from threadswoole.http import HttpOptions, StaticFiles
from threadswoole.http.static import parse_range
from threadswoole.protocol.http import HttpCodec, HttpRequest

pytestmark = pytest.mark.timeout(30)


def event(target: str, *headers: str, method: str = "GET", version: str = "1.1") -> HttpRequest:
    head = f"{method} {target} HTTP/{version}\r\nHost: a\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    [parsed] = HttpCodec().feed(head.encode("latin-1"))
    return parsed


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "css").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "empty").mkdir()
    (root / "index.html").write_bytes(b"<h1>home</h1>")
    (root / "css" / "site.css").write_bytes(b"body{}")
    (root / "docs" / "a b.txt").write_bytes(b"0123456789")
    (root / "docs" / "<script>.txt").write_bytes(b"x")
    (root / "zero.bin").write_bytes(b"")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"top secret")
    (root / "leak.txt").symlink_to(outside)
    (root / "leakdir").symlink_to(tmp_path)
    (root / "alias.css").symlink_to(root / "css" / "site.css")  # inside the root: fine
    return root


def serve(static: StaticFiles, ev: HttpRequest) -> tuple[bool, RecordingTransport]:
    transport = RecordingTransport()
    return static.serve(ev, transport, now=1_700_000_000), transport


def test_serves_file_with_type_and_last_modified(tree: Path) -> None:
    static = StaticFiles(tree)
    handled, t = serve(static, event("/css/site.css"))
    assert handled
    parsed = t.response()
    assert parsed.status == 200 and parsed.body == b"body{}"
    assert parsed.header("content-type") == "text/css" and parsed.header("accept-ranges") == "bytes"
    assert parsed.header("last-modified") == formatdate(int(os.stat(tree / "css/site.css").st_mtime), usegmt=True)
    assert parsed.header("date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    handled, t = serve(static, event("/docs/a%20b.txt"))
    assert t.response().body == b"0123456789"
    handled, t = serve(static, event("/zero.bin"))
    assert t.response().header("content-length") == "0" and [c[0] for c in t.calls] == ["send"]


@pytest.mark.parametrize("target", [
    "/leak.txt", "/leakdir/secret.txt", "/../secret.txt", "/css/../../secret.txt", "/%2e%2e/secret.txt",
    "/css/%2E%2E/%2e%2e/secret.txt", "/..%2fsecret.txt", "/index.html%00.txt", "/missing.txt", "/docs/",
    "/index.html/", "/css/site.css%2f", "/css/site.css/x",
])
def test_never_served(tree: Path, target: str) -> None:
    handled, t = serve(StaticFiles(tree), event(target))
    assert not handled and t.calls == []


def test_symlink_inside_root_is_served(tree: Path) -> None:
    handled, t = serve(StaticFiles(tree), event("/alias.css"))
    assert handled and t.response().body == b"body{}"


def test_only_get_and_head(tree: Path) -> None:
    static = StaticFiles(tree)
    assert not serve(static, event("/index.html", method="POST"))[0]
    handled, t = serve(static, event("/index.html", method="HEAD"))
    assert handled and t.response(head_only=True).header("content-length") == "13"
    assert t.wire.endswith(b"\r\n\r\n") and [c[0] for c in t.calls] == ["send"]


def test_if_modified_since(tree: Path) -> None:
    static = StaticFiles(tree)
    mtime = int(os.stat(tree / "index.html").st_mtime)
    handled, t = serve(static, event("/index.html", f"If-Modified-Since: {formatdate(mtime, usegmt=True)}"))
    parsed = t.response()
    assert parsed.status == 304 and parsed.body == b"" and parsed.header("last-modified")
    handled, t = serve(static, event("/index.html", f"If-Modified-Since: {formatdate(mtime - 10, usegmt=True)}"))
    assert t.response().status == 200
    handled, t = serve(static, event("/index.html", "If-Modified-Since: garbage"))
    assert t.response().status == 200


@pytest.mark.parametrize("header,status,body,content_range", [
    ("bytes=0-3", 206, b"0123", "bytes 0-3/10"),
    ("bytes=7-", 206, b"789", "bytes 7-9/10"),
    ("bytes=-2", 206, b"89", "bytes 8-9/10"),
    ("bytes=-20", 206, b"0123456789", "bytes 0-9/10"),
    ("bytes=5-100", 206, b"56789", "bytes 5-9/10"),
    ("bytes=10-", 416, b"", "bytes */10"),
    ("bytes=-0", 416, b"", "bytes */10"),
    ("bytes=3-1", 200, b"0123456789", None),
    ("bytes=0-1,4-5", 200, b"0123456789", None),
    ("items=0-1", 200, b"0123456789", None),
    ("bytes=x-1", 200, b"0123456789", None),
])
def test_ranges(tree: Path, header: str, status: int, body: bytes, content_range: str | None) -> None:
    handled, t = serve(StaticFiles(tree), event("/docs/a%20b.txt", f"Range: {header}"))
    parsed = t.response()
    assert (parsed.status, parsed.body, parsed.header("content-range")) == (status, body, content_range)


def test_if_range_mismatch_sends_whole_file(tree: Path) -> None:
    handled, t = serve(StaticFiles(tree), event("/docs/a%20b.txt", "Range: bytes=0-1", "If-Range: \"etag\""))
    assert t.response().status == 200


def test_parse_range_edges() -> None:
    assert parse_range("bytes=0-0", 1) == (0, 0)
    assert parse_range("bytes=0-", 0) is False
    assert parse_range("bytes=", 5) is None
    assert parse_range("bytes=-", 5) is None


def test_index_files_and_autoindex(tree: Path) -> None:
    static = StaticFiles(tree, index_files=["missing.html", "index.html"])
    handled, t = serve(static, event("/"))
    assert handled and t.response().body == b"<h1>home</h1>"
    assert not serve(StaticFiles(tree), event("/"))[0]  # no index files, no autoindex
    static = StaticFiles(tree, autoindex=True)
    handled, t = serve(static, event("/docs/"))
    parsed = t.response()
    assert parsed.status == 200 and parsed.header("content-type") == "text/html; charset=utf-8"
    page = parsed.body.decode()
    assert '<a href="/docs/a%20b.txt">a b.txt</a>' in page
    assert "&lt;script&gt;.txt" in page and "<script>" not in page
    handled, t = serve(static, event("/"))
    assert 'href="/css/">css/</a>' in t.response().body.decode()
    handled, t = serve(static, event("/empty"))
    assert handled and "<ul>\n\n</ul>" in t.response().body.decode()


def test_locations(tree: Path) -> None:
    static = StaticFiles(tree, locations=["/css", "/docs/"])
    assert serve(static, event("/css/site.css"))[0]
    assert serve(static, event("/docs/a%20b.txt"))[0]
    assert not serve(static, event("/index.html"))[0]
    assert not serve(StaticFiles(tree, locations=["/cs"]), event("/css/site.css"))[0]


def test_keep_alive_and_close(tree: Path) -> None:
    handled, t = serve(StaticFiles(tree), event("/index.html", version="1.0"))
    assert t.response().header("connection") == "close" and t.closed
    handled, t = serve(StaticFiles(tree), event("/index.html"))
    assert t.response().header("connection") == "keep-alive" and not t.closed


def test_unreadable_file_is_not_served(tree: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads everything")
    (tree / "index.html").chmod(0)
    try:
        assert not serve(StaticFiles(tree), event("/index.html"))[0]
    finally:
        (tree / "index.html").chmod(0o644)


def test_from_options(tree: Path) -> None:
    assert StaticFiles.from_options(HttpOptions()) is None
    assert StaticFiles.from_options(HttpOptions(document_root=str(tree))) is None
    static = StaticFiles.from_options(HttpOptions(enable_static_handler=True, document_root=str(tree),
                                                  http_index_files=("index.html",), http_autoindex=True))
    assert static is not None and static.index_files == ("index.html",) and static.autoindex
    options = HttpOptions.from_settings({"enable_static_handler": True, "document_root": tree,
                                         "static_handler_locations": ["/css"], "http_index_files": "index.html",
                                         "worker_num": 4})
    assert options.static_handler_locations == ("/css",) and options.http_index_files == ("index.html",)
