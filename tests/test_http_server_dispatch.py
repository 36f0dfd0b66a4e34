"""http.Server with the stateless dispatch modes (1 round robin, 3 idle worker) and two
workers, in PROCESS and THREAD (BASE workers own their connections: nothing to dispatch).

Keep-alive requests may be answered by any worker, but HTTP still needs a request's body
to reach the worker that got its head, and pipelined requests answered in order (RFC 9112
§9.3.2). In PROCESS mode PipeSink.on_event keeps both: the rest of a message and an event
behind an unfinished one go to the same worker.
"""

from __future__ import annotations

import time

import pytest

from http_server_helpers import RawConnection, get, http_server_class

pytestmark = pytest.mark.timeout(60)



def app(server, emit):
    def on_request(request, response):
        if request.server["request_uri"].startswith("/slow"):
            time.sleep(0.2)  # the handler of the first pipelined request takes longest
        response.end(f"{request.server['request_uri']} {len(request.raw_content())} w{server.worker_id}".encode())

    server.on("request", on_request)


def start(run_server, mode: str, dispatch_mode: int):
    return run_server(app, mode=mode, settings={"worker_num": 2, "dispatch_mode": dispatch_mode}, server_class=http_server_class())


CASES = [pytest.param(mode, dispatch_mode, id=f"{mode}-dispatch{dispatch_mode}")
         for mode in ("process", "thread") for dispatch_mode in (1, 3)]


@pytest.mark.parametrize("mode,dispatch_mode", CASES)
def test_keep_alive_requests_are_served_whichever_worker_answers(run_server, mode, dispatch_mode):
    handle = start(run_server, mode, dispatch_mode)
    with RawConnection(handle.port) as conn:
        answers = [conn.request(get(f"/seq/{index}")).body for index in range(6)]
    assert [answer.rsplit(b" ", 1)[0] for answer in answers] == [b"/seq/%d 0" % index for index in range(6)]
    if mode == "process" and dispatch_mode == 1:  # round robin: both workers take part (idle: whichever is free)
        assert {answer.rsplit(b" ", 1)[1] for answer in answers} == {b"w0", b"w1"}
    assert handle.stop() == 0


@pytest.mark.parametrize("mode,dispatch_mode", CASES)
def test_a_streamed_body_reaches_one_worker_whole(run_server, mode, dispatch_mode, request):
    handle = start(run_server, mode, dispatch_mode)
    body = b"b" * 300_000  # over the codec's 64 KiB: it streams, in three reads at least
    with RawConnection(handle.port, timeout=2) as conn:  # the answer takes milliseconds
        conn.send(b"POST /stream HTTP/1.1\r\nHost: t\r\nContent-Length: 300000\r\n\r\n" + body[:100_000])
        for start_at in (100_000, 200_000):
            time.sleep(0.1)  # separate reads on the server side (not synchronisation: any delay works)
            conn.send(body[start_at:start_at + 100_000])
        assert conn.read_response().body.startswith(b"/stream 300000 w")
    assert handle.stop() == 0


@pytest.mark.parametrize("mode,dispatch_mode", CASES)
def test_pipelined_requests_are_answered_in_order(run_server, mode, dispatch_mode, request):
    handle = start(run_server, mode, dispatch_mode)
    with RawConnection(handle.port) as conn:
        conn.send(get("/slow/0") + get("/fast/1") + get("/fast/2"))
        paths = [conn.read_response().body.split(b" ")[0] for _ in range(3)]
    assert paths == [b"/slow/0", b"/fast/1", b"/fast/2"]
    assert handle.stop() == 0
