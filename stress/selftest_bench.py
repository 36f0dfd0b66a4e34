"""Self-checks of the benchmark workloads' tooling (run by ``python -m stress.selftest``).

That the C generator (``stress.cgen``: the shared loadgen.c or ``stress/cgen.c``) builds, counts
(exactly ``-n`` requests when asked) and refuses non-loopback targets; that the wrk and
redis-benchmark parsers read their tools' output; that a server saying ``SKIP`` is a skipped
row, a probe-started server is measured once it answers correctly and one answering wrongly
is an error row in bounded time; that a self-driven contender's CPU is charged; that targets
evaluate to PASS / FAIL / SKIP; and (with the peer virtualenv) that the fan-out pool sees
every pushed frame. About 20 s; loopback only.
"""
from __future__ import annotations

import shutil
import time
from typing import Callable

from stress import benchkit, benchreport, cgen, peers
from stress.benchkit import Phase, Spec
from stress.drivers import cgen_phase, http_probe, parse_redis_csv, parse_wrk, wrk_phase

Check = Callable[..., None]

WRK_SAMPLE = """Running 2s test @ http://127.0.0.1:8000/
  1 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  300.00us   9.00ms   90.00%
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    1.50ms
     99%    4.10ms
  123456 requests in 2.00s, 12.34MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  61728.00
Transfer/sec:      6.17MB
"""
REDIS_SAMPLE = ('"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
                '"p99_latency_ms","max_latency_ms"\n"GET","99009.90","0.287","0.080","0.271","0.439",'
                '"0.551","1.287"\n')


def _clean(rows: list[dict]) -> bool:
    return all("left behind" not in r.get("error", "") for r in rows)


def run(check: Check) -> None:
    w = parse_wrk(WRK_SAMPLE)
    check("parse_wrk reads rps, count, p50/p99, errors",
          w["rps"] == 61728.0 and w["requests"] == 123456 and w["p50_us"] == 812.0
          and w["p99_us"] == 4100.0 and w["errors"] == 10 and w["duration"] == 2.0, str(w))
    r = parse_redis_csv(REDIS_SAMPLE)
    check("parse_redis_csv reads a test row", r.get("GET", {}).get("rps") == 99009.9
          and abs(r["GET"]["p99_us"] - 551.0) < 1e-6, str(r))
    try:
        cgen.run("10.1.2.3", 9, duration=0.1)
        refused = False
    except ValueError:
        refused = True
    check("C generator refuses a non-loopback target", refused)

    why = cgen.missing_reason()
    if why:
        check("C generator builds (skipped: " + why + ")", True)
    else:
        rows = benchkit.measure(benchkit.module_spec("epoll", "epoll_echo"),
                                [cgen_phase(duration=1.0, warmup=0.2, connections=20)])
        x = rows[0]
        check("C generator drives the epoll echo (counts, no errors, CPU charged)",
              x["ok"] and x["requests"] > 1000 and x["errors"] == 0 and x["cpu_s"] > 0.05
              and abs(x["rps"] * x["duration"] - x["requests"]) < 0.02 * x["requests"] and _clean(rows),
              benchreport.format_brief(x) + f"; cpu {x.get('cpu_s')}")
        counted = Phase(lambda h, p: cgen.run(h, p, connections=20, max_requests=5000, duration=30))
        rows = benchkit.measure(benchkit.module_spec("epoll", "epoll_echo"), [counted])
        x = rows[0]
        check("C generator with -n 5000 makes exactly 5000 requests, no errors",
              x["ok"] and x["requests"] == 5000 and x["errors"] == 0 and _clean(rows),
              f"requests {x.get('requests')}, errors {x.get('errors')}, {x.get('error', '')}")

    skip = Spec("skipper", ("{python}", "-m", "stress.selftest", "serve-skip"))
    rows = benchkit.measure(skip, [Phase(lambda h, p: {"requests": 1})])
    check("a server printing SKIP is a skipped row, not a failure",
          rows[0]["skipped"] == "not here" and not rows[0]["error"] and _clean(rows), str(rows[0]["skipped"]))

    probed = Spec("asyncio-http", ("{python}", "-m", "stress.servers.asyncio_http", "--host", "{host}",
                                   "--port", "{port}"), probe=http_probe())
    if shutil.which("wrk"):
        rows = benchkit.measure(probed, [wrk_phase(duration=1.0, warmup=0, connections=20)])
        check("probe-started server measured with wrk", rows[0]["ok"] and rows[0]["requests"] > 100
              and rows[0]["errors"] == 0 and _clean(rows), benchreport.format_brief(rows[0]))
    wrong = Spec("wrong-body", probed.cmd, probe=http_probe(b"something else"), start_timeout=3.0)
    t0 = time.monotonic()
    rows = benchkit.measure(wrong, [Phase(lambda h, p: {"requests": 1})])
    check("a server answering wrongly is an error row, in bounded time",
          not rows[0]["ok"] and "want 200" in rows[0]["error"] and time.monotonic() - t0 < 15
          and _clean(rows), rows[0]["error"][:120])

    from stress.workloads.tasks import _result
    tasks = benchkit.module_spec("executor-thread", "executor_tasks", "--kind", "thread", "--duration", "1",
                                 "--warmup", "0.2")
    rows = benchkit.measure(tasks, [Phase(lambda h, p, srv: _result(srv, 30), self_driven=True)])
    x = rows[0]
    check("self-driven contender: RESULT read, its CPU charged", x["ok"] and x["requests"] > 100
          and (x["cpu_s"] or 0) > 0.2 and _clean(rows), benchreport.format_brief(x) + f"; cpu {x.get('cpu_s')}")

    fake = [{"name": "a", "test": "", "ok": True, "req_per_cpu_s": 150.0},
            {"name": "b", "test": "", "ok": True, "req_per_cpu_s": 100.0},
            {"name": "c", "test": "", "ok": False, "skipped": "absent"}]
    v = benchreport.evaluate(fake, [("a", "b", "req_per_cpu_s", 1.4, ""), ("a", "b", "req_per_cpu_s", 1.6, ""),
                                 ("c", "b", "req_per_cpu_s", 1.0, "")])
    check("targets evaluate to PASS / FAIL / SKIP", [x.status for x in v] == ["PASS", "FAIL", "SKIP"]
          and abs(v[0].ratio - 1.5) < 1e-9 and "absent" in v[2].detail, str([(x.status, x.ratio) for x in v]))

    if not peers.ready():
        check("fan-out pool (skipped: peer virtualenv not ready)", True)
        return
    from stress.wsfanout import run_fanout

    def fan(host: str, port: int) -> dict:
        res = run_fanout((host, port), 300, rounds=1, per_process=150)
        res["requests"] = res["received"]
        return res
    rows = benchkit.measure(benchkit.module_spec("websockets", "websockets_ws", "--fanout", venv=True),
                            [Phase(fan)])
    x = rows[0]
    check("fan-out pool gets every pushed frame, byte-exact", x["ok"] and x.get("received") == 300
          and x["rounds"][0]["mismatches"] == 0 and not x["errors"] and _clean(rows),
          f"received {x.get('received')}, last {x.get('last_ms')} ms, errors {x.get('errors')}")
