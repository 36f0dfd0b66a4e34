"""http.Server end to end, uploads (contract §8, §5.7 upload_max_filesize): multipart bodies
from curl -F and a raw socket, in every mode. Temp files live in `upload_tmp_dir`, are
written while the body streams in, and are gone after the request (or the connection).
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from http_server_helpers import RawConnection, curl, listing, module_server, needs_curl, wait_until

pytestmark = pytest.mark.timeout(60)
MIB = 1024 * 1024


def app(server, emit):
    def digest(path: str) -> str | None:
        try:
            with open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return None

    from threadswoole.http import Response

    kept = {}

    def answer_later(fd):  # a detached request kept by the application: its files must still be there
        request = kept.pop(fd)
        entry = request.files["f"]
        Response.create(fd).end(json.dumps({"exists": os.path.exists(entry["tmp_name"]), "sha256": digest(entry["tmp_name"])}))

    def on_request(request, response):
        path = request.server["request_uri"]
        if path == "/detach-keep":
            kept[response.fd] = request
            response.detach()
            server.after(50, answer_later, response.fd)
            return
        files = request.files
        seen = {"post": request.post, "files": files, "cookie": request.cookie, "sha256": {name: digest(entry["tmp_name"]) for name, entry in files.items()
                                                                   if entry["tmp_name"]}}
        if path == "/keep":  # the application moves a file away: it is left alone
            for name, entry in files.items():
                os.rename(entry["tmp_name"], os.path.join(server.setting["upload_tmp_dir"], "kept-" + name))
        if path == "/emit/upload":
            emit("request", path=path)
        response.header("Content-Type", "application/json")
        response.end(json.dumps(seen))

    server.on("request", on_request)
    unparsed = server.add_listener("127.0.0.1", 0)  # an HTTP port that parses no body, no cookie
    unparsed.set({"http_parse_post": False, "http_parse_files": False, "http_parse_cookie": False})


def settings(mode: str, directory: str) -> dict:
    uploads = os.path.join(directory, "uploads")
    os.mkdir(uploads)
    return {"worker_num": 1, "upload_tmp_dir": uploads, "upload_max_filesize": 4 * MIB, "package_max_length": 16 * MIB}


server = module_server(app, settings)


def uploads_dir(server) -> str:
    return os.path.join(server.tmpdir, "uploads")


def no_temp_files_left(server) -> bool:
    return wait_until(lambda: not listing(uploads_dir(server)), timeout=5)


@needs_curl
def test_several_files_and_fields_with_curl_then_the_temp_files_are_gone(server, tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes(b"small file\n")
    binary = tmp_path / "photo.png"
    binary.write_bytes(os.urandom(200_000))
    out = curl(f"http://127.0.0.1:{server.port}/upload", "-F", f"first=@{small}", "-F", f"second=@{binary};type=image/png",
               "-F", "field=value one", "-F", "other=ünïcode")
    seen = json.loads(out.stdout)
    assert seen["post"] == {"field": "value one", "other": "ünïcode"}
    first, second = seen["files"]["first"], seen["files"]["second"]
    assert (first["name"], first["type"], first["size"], first["error"]) == ("small.txt", "text/plain", 11, 0)
    assert (second["name"], second["type"], second["size"], second["error"]) == ("photo.png", "image/png", 200_000, 0)
    for entry in (first, second):
        assert os.path.dirname(entry["tmp_name"]) == uploads_dir(server)
        assert os.path.basename(entry["tmp_name"]).startswith("swoole.upfile.")
    assert seen["sha256"]["first"] == hashlib.sha256(small.read_bytes()).hexdigest()
    assert seen["sha256"]["second"] == hashlib.sha256(binary.read_bytes()).hexdigest()
    assert no_temp_files_left(server)


@needs_curl
def test_a_3_mib_file_is_streamed_to_disk(server, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * MIB))
    out = curl(f"http://127.0.0.1:{server.port}/upload", "-F", f"big=@{big}")
    seen = json.loads(out.stdout)
    assert seen["files"]["big"]["size"] == 3 * MIB
    assert seen["sha256"]["big"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert no_temp_files_left(server)


def multipart_head(length: int, boundary: str = "XyZ") -> bytes:
    return (f"POST /emit/upload HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def file_part(name: str, data: bytes, boundary: str = "XyZ") -> bytes:
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"


def test_the_temp_file_grows_while_the_body_arrives(server):
    data = os.urandom(2 * MIB)
    body = file_part("f", data) + b"--XyZ--\r\n"
    with RawConnection(server.port) as conn:
        conn.send(multipart_head(len(body)) + body[:MIB])  # half the file, then wait
        # the part is on disk before the request is complete: nothing holds the file in memory
        assert wait_until(lambda: [name for name in listing(uploads_dir(server))
                                   if os.path.getsize(os.path.join(uploads_dir(server), name)) > MIB // 2], timeout=10)
        conn.send(body[MIB:])
        seen = json.loads(conn.read_response().body)
    server.wait("request", path="/emit/upload")
    assert seen["sha256"]["f"] == hashlib.sha256(data).hexdigest()
    assert no_temp_files_left(server)


def test_a_connection_gone_mid_upload_leaves_no_temp_file(server):
    body = file_part("f", os.urandom(MIB)) + b"--XyZ--\r\n"
    with RawConnection(server.port) as conn:
        conn.send(multipart_head(len(body)) + body[:600_000])
        assert wait_until(lambda: listing(uploads_dir(server)), timeout=10)
    assert no_temp_files_left(server)  # the request never completed: on_request was not called
    with RawConnection(server.port) as conn:  # and the server serves the next one
        body = file_part("g", b"tiny") + b"--XyZ--\r\n"
        seen = json.loads(conn.request(multipart_head(len(body)) + body).body)
        assert seen["files"]["g"]["size"] == 4
    server.wait("request", path="/emit/upload")
    assert not server.events_named("request")


@needs_curl
def test_a_file_over_upload_max_filesize_is_413_without_on_request(server, tmp_path):
    big = tmp_path / "too-big.bin"
    big.write_bytes(b"\0" * (4 * MIB + 1))
    out = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{server.port}/emit/upload", "-F", f"f=@{big}", check=False)
    assert out.stdout == b"413"
    assert no_temp_files_left(server)
    with RawConnection(server.port) as conn:  # raw: the 413 comes before the body ends, then close
        body = file_part("f", b"\1" * (4 * MIB + 10)) + b"--XyZ--\r\n"
        conn.send(multipart_head(len(body)))
        try:
            conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before the client has written everything
        reply = conn.read_response()
        assert reply.status == 413 and reply.headers["connection"] == "close"
        assert conn.closed_by_server()
    assert no_temp_files_left(server)
    assert not server.events_named("request")


def test_an_empty_file_input_is_upload_err_no_file(server):
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\nContent-Type: application/octet-stream\r\n\r\n\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhello\r\n--XyZ--\r\n")
    with RawConnection(server.port) as conn:
        seen = json.loads(conn.request(multipart_head(len(body)) + body).body)
    server.wait("request", path="/emit/upload")
    assert seen["files"]["f"]["error"] == 4 and seen["files"]["f"]["size"] == 0
    assert seen["post"] == {"text": "hello"}


@needs_curl
def test_a_file_the_application_moved_away_is_left_alone(server, tmp_path):
    small = tmp_path / "keep.txt"
    small.write_bytes(b"kept")
    seen = json.loads(curl(f"http://127.0.0.1:{server.port}/keep", "-F", f"k=@{small}").stdout)
    kept = os.path.join(uploads_dir(server), "kept-k")
    try:
        assert seen["files"]["k"]["size"] == 4
        assert no_temp_files_left(server)
        with open(kept, "rb") as f:
            assert f.read() == b"kept"
    finally:
        os.unlink(kept)


def test_a_chunked_multipart_upload(server):
    body = file_part("c", b"chunked upload " * 10_000) + b"--XyZ--\r\n"
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 30_000]), body[i:i + 30_000]) for i in range(0, len(body), 30_000))
    head = (b"POST /emit/upload HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    with RawConnection(server.port) as conn:
        seen = json.loads(conn.request(head + chunks + b"0\r\n\r\n").body)
    server.wait("request", path="/emit/upload")
    assert seen["files"]["c"]["size"] == len(b"chunked upload " * 10_000)
    assert seen["sha256"]["c"] == hashlib.sha256(b"chunked upload " * 10_000).hexdigest()
    assert no_temp_files_left(server)


def test_a_port_with_parsing_switched_off(server):
    body = file_part("f", b"data") + b"--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhello\r\n--XyZ--\r\n"
    with RawConnection(server.ports[1]) as conn:
        head = multipart_head(len(body)).replace(b"Host: t\r\n", b"Host: t\r\nCookie: a=1\r\n")
        seen = json.loads(conn.request(head + body).body)
        assert seen == {"post": {}, "files": {}, "cookie": {}, "sha256": {}}
        form = b"a=1&b=2"
        reply = conn.request(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                             b"Content-Length: 7\r\n\r\n" + form)
        assert json.loads(reply.body)["post"] == {}
    assert not listing(uploads_dir(server))



@needs_curl
@pytest.mark.parametrize("size", [
    pytest.param(1000, id="small"),
    pytest.param(300_000, id="streamed"),
])
def test_a_detached_request_kept_by_the_application_keeps_its_files(server, tmp_path, size):
    upload = tmp_path / "kept.bin"
    upload.write_bytes(os.urandom(size))
    seen = json.loads(curl(f"http://127.0.0.1:{server.port}/detach-keep", "-F", f"f=@{upload}").stdout)
    assert seen == {"exists": True, "sha256": hashlib.sha256(upload.read_bytes()).hexdigest()}
    assert no_temp_files_left(server)  # and gone once the application let the Request go
