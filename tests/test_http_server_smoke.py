"""threadswoole.http.Server end to end in every mode: a real server, http.client and curl."""

from __future__ import annotations

import http.client
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.timeout(60)


def _hello(server, emit):
    def on_request(request, response):
        response.header("X-Worker", str(server.worker_id))
        response.end(b"hello " + request.server["request_uri"].encode() + b" " + request.raw_content())

    server.on("request", on_request)


def test_requests_keep_alive_and_post_bodies_in_every_mode(run_server, mode):
    from threadswoole import http as ts_http

    handle = run_server(_hello, mode=mode, settings={"worker_num": 1}, server_class=ts_http.Server)
    conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10)
    for index in range(3):  # one keep-alive connection
        conn.request("POST", f"/path/{index}", body=b"body%d" % index)
        reply = conn.getresponse()
        assert reply.status == 200 and reply.read() == b"hello /path/%d body%d" % (index, index)
        assert reply.getheader("X-Worker") == "0"
    conn.close()
    assert handle.stop() == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_gets_an_answer_and_a_handler_that_does_nothing_gets_an_empty_200(run_server, mode):
    from threadswoole import http as ts_http

    def setup(server, emit):
        server.on("request", lambda request, response: None)  # auto-end (contract 8)

    handle = run_server(setup, mode=mode, settings={"worker_num": 1}, server_class=ts_http.Server)
    out = subprocess.run(["curl", "-s", "-i", f"http://127.0.0.1:{handle.port}/"], capture_output=True, timeout=20)
    assert out.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and out.stdout.endswith(b"\r\n\r\n")
    assert b"Content-Length: 0\r\n" in out.stdout
    assert handle.stop() == 0
