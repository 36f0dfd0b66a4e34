"""``--metrics-bind``: /metrics (Prometheus text) and /stats (JSON) report the whole server in
every mode. The exposition is checked with prometheus_client's own parser when it is installed
(a test-only dependency: tox -e apps), and with a strict line check always."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re

import pytest

from serve_harness import ServeProcess, split_url

MODES = ["base", "process", "thread"]
_SAMPLE = re.compile(r'^(threadswoole_[a-z_]+)(\{[a-z]+="[^"]*"\})? (-?[0-9.e+]+)$')


def _get(url: str, path: str) -> tuple[int, str, bytes]:
    host, port = split_url(url)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def _samples(text: str) -> dict[tuple[str, str], float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        found = _SAMPLE.match(line)
        assert found, f"not a sample line: {line!r}"
        samples[(found.group(1), found.group(2) or "")] = float(found.group(3))
    return samples


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("app", ["wsgi_apps:app", "asgi_apps:app"])
def test_metrics_report_the_whole_server(mode, app):
    with ServeProcess([app, "--mode", mode, "--workers", "2", "--metrics-bind", "127.0.0.1:0"]) as server:
        assert server.metrics_url
        connections = [server.connection() for _ in range(4)]  # spread over the workers
        try:
            for connection in connections:
                for path, expected in (("/hello", 200), ("/nowhere", 404), ("/hello", 200)):
                    connection.request("GET", path)
                    response = connection.getresponse()
                    response.read()
                    assert response.status == expected
        finally:
            for connection in connections:
                connection.close()
        server.request("POST", "/echo", body=b"x" * 1000)
        deadline_text = ""
        for _ in range(50):  # the workers publish their rows every 20 ms (and when they go idle)
            status, kind, body = _get(server.metrics_url, "/metrics")
            deadline_text = body.decode()
            samples = _samples(deadline_text)
            if samples[("threadswoole_requests_total", '{code="2xx"}')] >= 9:
                break
        assert status == 200 and kind.startswith("text/plain; version=0.0.4")
        assert samples[("threadswoole_requests_total", '{code="2xx"}')] >= 9
        assert samples[("threadswoole_requests_total", '{code="4xx"}')] >= 4
        assert samples[("threadswoole_request_duration_seconds_count", "")] >= 13
        assert samples[("threadswoole_request_duration_seconds_bucket", '{le="+Inf"}')] == \
            samples[("threadswoole_request_duration_seconds_count", "")]
        assert samples[("threadswoole_request_body_bytes_total", "")] >= 1000
        assert samples[("threadswoole_workers", "")] == 2
        assert samples[("threadswoole_connections_accepted_total", "")] >= 5
        per_worker = [v for (name, label), v in samples.items() if name == "threadswoole_worker_requests_total"]
        assert len(per_worker) == 2 and sum(per_worker) >= 13
        status, kind, body = _get(server.metrics_url, "/stats")
        document = json.loads(body)
        assert kind == "application/json"
        assert document["server"]["worker_num"] == 2 and "connection_num" in document["server"]
        assert document["http"]["responses"]["2xx"] >= 9
        assert [w["worker_id"] for w in document["workers"]] == [0, 1]
        assert _get(server.metrics_url, "/nothing")[0] == 404
        if importlib.util.find_spec("prometheus_client") is not None:
            from prometheus_client.parser import text_string_to_metric_families

            families = {family.name: family for family in text_string_to_metric_families(deadline_text)}
            assert families["threadswoole_request_duration_seconds"].type == "histogram"
            assert families["threadswoole_requests"].type == "counter"
            assert families["threadswoole_connections"].type == "gauge"
            codes = {s.labels["code"]: s.value for s in families["threadswoole_requests"].samples if s.name.endswith("_total")}
            assert codes["2xx"] >= 9


def test_prometheus_client_parses_the_page():
    if importlib.util.find_spec("prometheus_client") is None:
        pytest.skip("prometheus_client is a test-only dependency (tox -e apps)")
    from prometheus_client.parser import text_string_to_metric_families

    with ServeProcess(["wsgi_apps:app", "--metrics-bind", "127.0.0.1:0"]) as server:
        server.request("GET", "/hello")
        _, _, body = _get(server.metrics_url, "/metrics")
        names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"threadswoole_connections", "threadswoole_requests", "threadswoole_request_duration_seconds",
            "threadswoole_worker_requests", "threadswoole_worker_restarts", "threadswoole_task_queue"} <= names
