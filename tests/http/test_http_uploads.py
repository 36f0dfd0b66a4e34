"""Uploads with real temp directories: files written, limits, errors, and always deleted afterwards."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from threadswoole.http import HttpOptions, RequestBuilder
from threadswoole.http.uploads import (
    TMP_PREFIX, UPLOAD_ERR_NO_FILE, UPLOAD_ERR_NO_TMP_DIR, UPLOAD_ERR_OK, UPLOAD_ERR_PARTIAL, UploadSink,
)
from threadswoole.protocol.http import HttpCodec

pytestmark = pytest.mark.timeout(60)

BOUNDARY = b"xYzZY"


def part(name: str, data: bytes, filename: str | None = None, content_type: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"Content-Disposition: {disposition}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return b"--" + BOUNDARY + b"\r\n" + head.encode() + b"\r\n" + data + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    body = b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"
    return (b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Type: multipart/form-data; boundary=" + BOUNDARY +
            b"\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


def events_of(raw: bytes, step: int = 0, **codec_options) -> list:
    codec = HttpCodec(**codec_options)
    if not step:
        return codec.feed(raw)
    return [e for i in range(0, len(raw), step) for e in codec.feed(raw[i:i + step])]


def build(events: list, options: HttpOptions) -> RequestBuilder:
    builder = RequestBuilder(events[0], options)
    for chunk in events[1:]:
        builder.feed(chunk)
    assert builder.complete
    return builder


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith(TMP_PREFIX))


@pytest.fixture
def options(tmp_path: Path) -> HttpOptions:
    return HttpOptions(upload_tmp_dir=str(tmp_path))


def test_files_and_fields_lazy(tmp_path: Path, options: HttpOptions) -> None:
    raw = multipart(part("title", "Grüße".encode()), part("doc", b"%PDF-1.4 data\r\n", "../../etc/re port.pdf", "application/pdf"))
    request = build(events_of(raw), options).build()
    assert leftovers(tmp_path) == []  # nothing written before files/post are read
    files = request.files
    entry = files["doc"]
    assert entry["name"] == "re port.pdf" and entry["type"] == "application/pdf"
    assert entry["error"] == UPLOAD_ERR_OK and entry["size"] == 15
    assert Path(entry["tmp_name"]).parent == tmp_path and Path(entry["tmp_name"]).name.startswith("swoole.upfile.")
    assert Path(entry["tmp_name"]).read_bytes() == b"%PDF-1.4 data\r\n"
    assert request.post == {"title": "Grüße"}
    assert request.raw_content().startswith(b"--" + BOUNDARY)
    request.cleanup()
    assert leftovers(tmp_path) == []
    request.cleanup()  # twice is fine


def test_temp_files_deleted_when_request_is_collected(tmp_path: Path, options: HttpOptions) -> None:
    request = build(events_of(multipart(part("f", b"abc", "a.txt"))), options).build()
    path = request.files["f"]["tmp_name"]
    assert os.path.exists(path)
    del request
    gc.collect()
    assert not os.path.exists(path) and leftovers(tmp_path) == []


def test_streamed_upload_is_written_as_it_arrives(tmp_path: Path, options: HttpOptions) -> None:
    data = os.urandom(50_000)
    raw = multipart(part("big", data, "big.bin", "application/octet-stream"), part("note", b"hi"))
    events = events_of(raw, step=4096, max_buffered_body=1024)
    builder = RequestBuilder(events[0], options)
    builder.feed(events[1])
    builder.feed(events[2])
    [partial] = leftovers(tmp_path)  # the file part is being written before the body is complete
    assert 0 < os.path.getsize(tmp_path / partial) < len(data)
    for chunk in events[3:]:
        builder.feed(chunk)
    request = builder.build()
    entry = request.files["big"]
    assert Path(entry["tmp_name"]).read_bytes() == data and entry["size"] == len(data)
    assert request.post == {"note": "hi"}
    request.cleanup()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("streamed", [False, True])
def test_upload_max_filesize_at_limit_and_one_over(tmp_path: Path, streamed: bool) -> None:
    options = HttpOptions(upload_tmp_dir=str(tmp_path), upload_max_filesize=1000)
    codec_options = {"max_buffered_body": 100} if streamed else {}
    ok = build(events_of(multipart(part("f", b"x" * 1000, "f.bin")), 300 if streamed else 0, **codec_options), options)
    assert ok.rejected is None
    accepted = ok.build()
    assert accepted.files["f"]["size"] == 1000
    accepted.cleanup()
    over = build(events_of(multipart(part("f", b"x" * 1001, "f.bin")), 300 if streamed else 0, **codec_options), options)
    assert over.rejected is not None and over.rejected.split(b" ", 2)[1] == b"413"
    assert b"\r\nConnection: close\r\n" in over.rejected
    with pytest.raises(ValueError):
        over.build()
    over.abort()
    assert leftovers(tmp_path) == []


def test_rejected_upload_leaves_no_temp_file(tmp_path: Path) -> None:
    options = HttpOptions(upload_tmp_dir=str(tmp_path), upload_max_filesize=10)
    builder = build(events_of(multipart(part("a", b"ok", "a"), part("b", b"y" * 50, "b")), 7, max_buffered_body=16), options)
    assert builder.rejected is not None
    assert leftovers(tmp_path) == []


def test_empty_file_input_and_missing_tmp_dir(tmp_path: Path) -> None:
    raw = multipart(part("empty", b"", ""), part("f", b"data", "f.txt"))
    request = build(events_of(raw), HttpOptions(upload_tmp_dir=str(tmp_path / "missing"))).build()
    assert request.files["empty"] == {"name": "", "type": "", "tmp_name": "", "error": UPLOAD_ERR_NO_FILE, "size": 0}
    assert request.files["f"]["error"] == UPLOAD_ERR_NO_TMP_DIR and request.files["f"]["tmp_name"] == ""


def test_parse_files_off_keeps_fields(tmp_path: Path) -> None:
    raw = multipart(part("f", b"data", "f.txt"), part("k", b"v"))
    request = build(events_of(raw), HttpOptions(upload_tmp_dir=str(tmp_path), http_parse_files=False)).build()
    assert request.files == {} and request.post == {"k": "v"} and leftovers(tmp_path) == []


def test_at_most_128_files(tmp_path: Path, options: HttpOptions) -> None:
    raw = multipart(*[part(f"f{i}", b"x", f"{i}.txt") for i in range(130)])
    request = build(events_of(raw), options).build()
    assert len(request.files) == 128 and len(leftovers(tmp_path)) == 128
    request.cleanup()
    assert leftovers(tmp_path) == []


def test_moved_file_and_abort(tmp_path: Path, options: HttpOptions) -> None:
    request = build(events_of(multipart(part("f", b"keep me", "k.txt"))), options).build()
    target = tmp_path / "kept.txt"
    os.rename(request.files["f"]["tmp_name"], target)  # the application's move_uploaded_file
    request.cleanup()
    assert target.read_bytes() == b"keep me"
    # a connection lost mid-upload: abort() deletes what was written
    raw = multipart(part("f", b"z" * 5000, "z"))
    events = events_of(raw[:-200], step=1000, max_buffered_body=100)
    builder = RequestBuilder(events[0], options)
    for chunk in events[1:]:
        builder.feed(chunk)
    assert not builder.complete and leftovers(tmp_path)
    builder.abort()
    assert leftovers(tmp_path) == []


def test_sink_marks_cut_short_part_partial(tmp_path: Path) -> None:
    sink = UploadSink(BOUNDARY, tmp_dir=str(tmp_path))
    sink.feed(b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="f"; filename="f"\r\n\r\npartial data')
    sink.finish()
    assert sink.files["f"]["error"] == UPLOAD_ERR_PARTIAL
    sink.cleanup()
    assert leftovers(tmp_path) == []
