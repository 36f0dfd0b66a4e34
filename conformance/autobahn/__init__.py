"""Autobahn|Testsuite against threadswoole's WebSocket server (issue 13): `tox -e autobahn`.

What it does: for each of BASE, PROCESS and THREAD it starts an echo server written against
the documented API (`echo_server.py`: `websocket.Server("127.0.0.1", 0, mode)`,
`websocket_compression` on, `on("message")` pushes the frame back with its opcode), runs
Autobahn's fuzzing client (`wstest -m fuzzingclient`, all 517 cases 1.* to 13.*) against it
on 127.0.0.1, stops it, and judges the agent's `index.json`. Only the fuzzing client is used:
wstest's own servers listen on every interface.

    python -m conformance.autobahn                         # all three modes, all cases
    python -m conformance.autobahn --modes base --cases '1.*,2.*' --exclude-cases '12.*,13.*'
    python -m conformance.autobahn --self-check            # the harness vs a known-good server
    tox -e autobahn [-- OPTIONS]                           # the same, project installed

Options: `--jobs N` runs N targets at once (default 3: the three modes together, which on 2
cores took 29.5 min where one mode alone took 20), `--timeout S` bounds each wstest run
(default 2700 s), `--outdir DIR` (default: a new temporary directory, kept and printed),
`--python27 PATH`. `--self-check` runs the same pipeline against the `websockets` library's
echo server (a throw-away venv, not a project dependency) to show the harness is right.

Verdict: a case fails when its behavior is not OK, NON-STRICT or INFORMATIONAL, or its close
behavior is not OK (an INFORMATIONAL case's close is INFORMATIONAL too; that pair passes). The
run also fails when an agent has no results, fewer than wstest announced, wstest timed out
or failed, or a server died during the run or left processes behind. Output: per agent the
counts by behavior and close behavior, every failing case (the first 40 with expected /
received), the HTML report's path, then a Markdown table (one row per agent).
Exit status: 0 pass, 1 fail, 2 could not run (no `threadswoole.websocket.Server` yet: the
message says "threadswoole.websocket.Server is not available yet"; no Python 2.7; an
environment that would not build), 130 interrupted.

Reports: `<outdir>/<agent>/` holds spec.json, index.json, index.html and one JSON + HTML
per case, server.log and wstest.log (about 21 MB per agent).

Environments (`environments.py`): wstest needs Python 2.7. The first run builds a virtualenv
from pyenv's 2.7.18 (or `--python27` / `$THREADSWOOLE_PYTHON27`) with the pins of issue 13
(about 40 s; needs PyPI), cached under `$THREADSWOOLE_AUTOBAHN_CACHE` (default
`~/.cache/threadswoole/autobahn`) in a directory named after a hash of the pins, so a pin
change rebuilds it. Without Python 2.7 the run stops with a message saying how to get one.

Time: the compression cases (12.*, 13.*: 216 cases of 1000 messages each) take about 97% of
a run, and a run is CPU-bound in wstest and the server alike. Against websockets 15.0.1 on this
2-core machine (load average 3-6 from other work): one target alone 20 min (830 CPU-seconds,
wstest and server together); three targets at once (`--jobs 3`) 29.5 min in all.
"""
