"""The server side of the bad-input corpus (tests/corpus/http/invalid, issue 12): every case
against a real http.Server in every mode, the whole input in one write.

Each case must come back with its expected status (after the answers to any good requests
before the fault), the connection closed, one more stats()['protocol_error_count'], and a
connection opened before it -- with half a request in flight -- still served. How the codec
reacts to every split of the same bytes is tests/protocol/test_http_corpus.py's job.

Codec options map to settings: `max_body_size` is the listener's package_max_length (cases
that use it go to a second port with package_max_length=10). `max_headers` has no setting
(the server keeps the codec's default of 100 fields), so its one case stays codec-only.
"""

from __future__ import annotations

import json

import pytest

from http_server_helpers import RawConnection, echo_app, get, module_server, server_stats, wait_until
from protocol.test_http_corpus import CORPUS, load_http

pytestmark = pytest.mark.timeout(60)


def app(server, emit):
    from threadswoole.constants import SWOOLE_SOCK_TCP

    echo_app(server, emit)
    small = server.add_listener("127.0.0.1", 0, SWOOLE_SOCK_TCP)  # an HTTP port: inherited
    small.set({"package_max_length": 10})


server = module_server(app, {"worker_num": 1})

# In PROCESS mode the good requests before a fault are still in the worker when the reactor
# finds it: the error answer goes through that worker, behind theirs (T_PROTOCOL_FAILURE).


def cases() -> list:
    found = []
    for path in sorted((CORPUS / "invalid").glob("*.http")):
        expect = json.loads(path.with_suffix(".expect").read_text())
        options = expect.get("options", {})
        marks = []
        if set(options) - {"max_body_size"}:
            marks.append(pytest.mark.skip(reason=f"codec option(s) {sorted(options)} have no server setting"))
        elif options and options["max_body_size"] != 10:
            raise AssertionError(f"{path.name}: the small port has package_max_length=10")
        found.append(pytest.param(path, expect, id=path.stem, marks=marks))
    return found


def test_the_corpus_is_big_enough():
    assert len(cases()) >= 100


def protocol_errors(port: int) -> int:
    return server_stats(port)["protocol_error_count"]


@pytest.mark.parametrize("http_file,expect", cases())
def test_invalid_input_against_a_real_server(server, http_file, expect, request):
    data = load_http(http_file)
    port = server.ports[1] if expect.get("options") else server.port
    before = protocol_errors(server.port)
    with RawConnection(server.port) as bystander:
        assert bystander.request(get("/bystander/1")).status == 200
        bystander.send(b"POST /bystander/2 HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nhal")  # half of it
        with RawConnection(port) as bad:
            bad.send(data)
            replies = []
            while True:  # every answer until the server closes (asserted after the count below)
                try:
                    replies.append(bad.read_response())
                except EOFError:
                    break
            leftover = bad.buffer
        bystander.send(b"f!!")
        answer = bystander.read_response()
        assert answer.status == 200 and json.loads(answer.body)["server"]["request_uri"] == "/bystander/2"
    counted = wait_until(lambda: protocol_errors(server.port) == before + 1, timeout=5)
    wanted = [200] * expect.get("events", 0) + [expect["status"]]  # good requests before the fault are answered
    assert [reply.status for reply in replies] == wanted, [reply.head for reply in replies]
    assert replies[-1].headers["connection"] == "close" and leftover == b""
    assert counted, f"protocol_error_count {protocol_errors(server.port)} != {before} + 1"
