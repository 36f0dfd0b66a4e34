"""Pass/fail thresholds of the stress suite, all in one place.

Keyed by scenario, then mode. Ratios are against the peer named in the
entry, measured in the same run on the same machine. Change a number here,
not in a scenario module.
"""
from __future__ import annotations

THRESHOLDS: dict[str, dict[str, dict[str, float | str]]] = {
    "comparison": {
        # SWOOLE_BASE, worker_num=1, raw echo, vs stdlib asyncio Protocol echo
        "base": {
            "peer": "asyncio",
            "min_cpu_ratio": 1.1,   # requests per server CPU-second >= 1.1x the peer's
            "min_rps_ratio": 1.0,   # requests/s >= the peer's
        },
        # PROCESS / THREAD: figures are recorded and compared run to run, no threshold yet
    },
}

# capacity: 10,000 idle connections (measured here: 3.4-4.0 KiB each), echo on 1,000
_CAPACITY = {"max_rss_per_conn_kib": 8.0,   # server tree RSS growth / connections held
             "min_rps": 5000.0}             # echo on 1,000 of them (measured: 27k-42k req/s)
# churn: 50,000 connect/send/close cycles; anonymous RSS growth (see scenarios/churn.py)
_CHURN = {"rss_tolerance_mib": 15.0,        # anon RSS growth <= max(15 MiB, 20 % of baseline)
          "rss_tolerance_pct": 20.0}
# soak: 60 s of mixed verified traffic; any mismatch / failure / lost connection fails (no
# threshold: must be 0); anon RSS growth from the first to the last 5 s interval
_SOAK = {"max_rss_growth_mib": 10.0}          # measured: < 1 MiB
# faults: failed requests / lost connections are 0 for PROCESS (kill9, reload) and by design
# for BASE / THREAD (see scenarios/faults.py); the numeric thresholds:
_FAULTS = {"max_stalled_rss_growth_mib": 64.0}  # 4 stalled readers, socket_buffer_size 1 MiB
                                                # (measured: 11-19 MiB; they push GiBs)
# websocket: 10,000 idle WebSocket connections (upgraded), one push to all (every one must get
# it byte-exact: no threshold, must be all), all closed (connection_num and fds back: must be 0)
_WEBSOCKET = {"max_rss_per_conn_kib": 8.0}   # measured: 3.7-4.6 KiB (10,000), 3.6-5.7 (2,000)
_MODES = ("base", "process", "thread")
THRESHOLDS["capacity"] = {m: dict(_CAPACITY) for m in _MODES}
THRESHOLDS["churn"] = {m: dict(_CHURN) for m in _MODES}
THRESHOLDS["soak"] = {m: dict(_SOAK) for m in _MODES}
THRESHOLDS["faults"] = {m: dict(_FAULTS) for m in _MODES}
THRESHOLDS["websocket"] = {m: dict(_WEBSOCKET) for m in _MODES}


# Targets of the benchmark workloads (python -m stress.bench WORKLOAD), per workload:
# (server, peer, figure, min ratio, test pattern). Ratios are of the same-run medians;
# "req_per_cpu_s" = requests per server CPU-second (whole process tree), "rps" = requests/s.
# The test pattern (fnmatch) picks the phases a target applies to ("" = the only one).
# `bench` prints each as PASS / FAIL / SKIP (a side did not run); --check-targets makes a
# FAIL the exit status. Recorded from the issue; not met is information for the lead.
BENCH_TARGETS: dict[str, list[tuple[str, str, str, float, str]]] = {
    # saturated regime (C generator, 64-byte echo, 100 connections)
    "echo": [("threadswoole-base", "asyncio", "req_per_cpu_s", 1.1, ""),
             ("threadswoole-base", "uvloop", "req_per_cpu_s", 1.0, "")],
    # wrk, 100 keep-alive connections, GET / -> Hello, World!
    "http": [("threadswoole-base", "uvicorn", "req_per_cpu_s", 2.5, ""),
             ("threadswoole-base", "granian-asgi", "req_per_cpu_s", 1.6, ""),
             ("threadswoole-base", "granian-wsgi", "req_per_cpu_s", 1.6, ""),
             ("threadswoole-process", "threadswoole-base", "req_per_cpu_s", 0.5, "")],
    "wsgi": [("threadswoole-base", "gunicorn-gthread", "req_per_cpu_s", 10.0, ""),
             ("threadswoole-base", "granian-wsgi", "req_per_cpu_s", 1.0, "")],
    "asgi": [("threadswoole-base", "uvicorn", "req_per_cpu_s", 1.5, "")],
    # threadswoole serve where threads matter (stress/workloads/serve.py): requests/s
    # (the -ft pair: the same target on free-threaded python3.13t, GIL off, both servers)
    "serve-blocking": [("threadswoole-thread-32", "granian-wsgi-32", "rps", 1.0, ""),
                       ("threadswoole-thread-32-ft", "granian-wsgi-32-ft", "rps", 1.0, "")],
    "serve-cpu": [("threadswoole-thread-w2", "threadswoole-thread-w1", "rps", 1.7, "")],
    # C generator in WebSocket mode: 100 connections, 64-byte masked binary frames
    "ws": [("threadswoole-base", "aiohttp", "req_per_cpu_s", 1.3, ""),
           ("threadswoole-base", "websockets", "req_per_cpu_s", 2.0, "")],
    # one submitter, 16 tasks in flight to 2 workers, 64-byte echo (issue 11: 3x in PROCESS)
    "tasks": [("threadswoole-process", "executor-process", "req_per_cpu_s", 3.0, "")],
    # redis-benchmark -n 200000 -c 50, per test, without and with -P 16
    "redis": [("threadswoole-base", "redis-server", "req_per_cpu_s", 0.5, "* P1"),
              ("threadswoole-base", "redis-server", "req_per_cpu_s", 0.2, "* P16")],
}


def threshold(scenario: str, mode: str) -> dict[str, float | str]:
    """The thresholds for (scenario, mode); empty when that pair is informational only."""
    return THRESHOLDS.get(scenario, {}).get(mode, {})
