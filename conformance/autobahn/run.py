"""The Autobahn|Testsuite harness (`tox -e autobahn`): wstest's fuzzing client against echo servers.

For each target (a threadswoole mode, or the reference server of `--self-check`) it starts the
echo server on 127.0.0.1 with a free port, writes a spec.json for that one agent, runs
`wstest -m fuzzingclient -s spec.json` under a time bound, stops the server by its process
group, then reads the agent's index.json and prints a tally. See the package docstring for
the command line, the verdict rule and the exit statuses.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from conformance.autobahn import environments, report
from conformance.autobahn.echo_server import NOT_AVAILABLE, NOT_AVAILABLE_STATUS, websocket_server_class
from conformance.autobahn.processes import ServerProcess, ServerStartError, WstestRun, stop_group

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
MODES = ("base", "process", "thread")
REFERENCE_AGENT = "websockets-" + environments.REFERENCE_PINS[0].split("==")[1]
SETUP_FAILED = 2
INTERRUPTED = 130


@dataclass
class Target:
    """One agent: the server command to start and what the run found."""

    agent: str
    command: list[str]
    directory: str = ""
    problems: list[str] = field(default_factory=list)
    wstest: WstestRun | None = None


class Children:
    """Every wstest child, so an interrupted run stops them all (by PID, never by name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: list[subprocess.Popen] = []
        self.servers: list[ServerProcess] = []

    def add(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.append(process)

    def add_server(self, server: ServerProcess) -> None:
        with self._lock:
            self.servers.append(server)

    def stop_all(self) -> None:
        with self._lock:
            processes, servers = list(self._processes), list(self.servers)
        for process in processes:
            stop_group(process, 5)
        for server in servers:
            server.stop(5)


def _say(message: str) -> None:
    print(f"autobahn: {message}", flush=True)


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _spec(target: Target, port: int, cases: list[str], exclude: list[str]) -> str:
    spec = {"outdir": target.directory,
            "servers": [{"agent": target.agent, "url": f"ws://127.0.0.1:{port}"}],
            "cases": cases, "exclude-cases": exclude, "exclude-agent-cases": {}}
    path = os.path.join(target.directory, "spec.json")
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(spec, stream, indent=2)
    return path


def run_target(target: Target, wstest: str, args: argparse.Namespace, children: Children) -> None:
    """Server up -> wstest -> server down; problems of the run go to target.problems."""
    os.makedirs(target.directory, exist_ok=True)
    server = ServerProcess(target.command, os.path.join(target.directory, "server.log"), REPO, _server_env())
    children.add_server(server)
    try:
        port = server.start()
    except ServerStartError as exc:
        if exc.status == NOT_AVAILABLE_STATUS:
            target.problems.append(NOT_AVAILABLE)
        target.problems.append(f"server did not start: {exc}")
        return
    _say(f"{target.agent}: server on 127.0.0.1:{port} (pid {server.process.pid}), running wstest")
    spec = _spec(target, port, args.cases.split(","), [c for c in args.exclude_cases.split(",") if c])
    target.wstest = WstestRun([wstest, "-m", "fuzzingclient", "-s", spec],
                              os.path.join(target.directory, "wstest.log"), target.directory,
                              lambda line: _say(f"{target.agent}: {line}"))
    try:
        target.wstest.run(args.timeout, children.add)
    finally:
        early = server.exited_early()
        stopped = server.stop()
    if early is not None:
        target.problems.append(f"server exited during the run (status {early}): {server.log_tail(5)}")
    elif stopped:
        target.problems.append(f"server stop: {stopped}")
    if target.wstest.timed_out:
        target.problems.append(f"wstest exceeded --timeout {args.timeout:.0f} s and was killed "
                               f"after {target.wstest.cases_started} cases started")
    elif target.wstest.status != 0:
        target.problems.append(f"wstest exited with status {target.wstest.status} "
                               f"(log: {target.wstest.log_path})")
    _say(f"{target.agent}: wstest done in {target.wstest.seconds:.0f} s")


def _run_all(targets: list[Target], wstest: str, args: argparse.Namespace) -> None:
    children = Children()
    gate = threading.Semaphore(args.jobs)

    def job(target: Target) -> None:
        with gate:
            try:
                run_target(target, wstest, args, children)
            except Exception as exc:  # a harness bug must still end in a verdict, not a hang
                target.problems.append(f"harness error: {type(exc).__name__}: {exc}")

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    threads = [threading.Thread(target=job, args=(t,), name=t.agent, daemon=True) for t in targets]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    finally:
        signal.signal(signal.SIGTERM, previous)
        children.stop_all()


def _verdict(targets: list[Target]) -> tuple[bool, list[report.AgentTally]]:
    tallies = []
    for target in targets:
        index_path = os.path.join(target.directory, "index.json")
        announced = target.wstest.announced if target.wstest else None
        try:
            index = report.load_index(index_path) if os.path.exists(index_path) else {}
        except ValueError as exc:
            index, target.problems = {}, target.problems + [str(exc)]
        counts = report.tally_index(index, [target.agent], announced)[0]
        if not index:
            counts.problems = [f"no index.json at {index_path}"]
        counts.problems = target.problems + counts.problems
        print(report.format_tally(counts, target.directory))
        if os.path.exists(os.path.join(target.directory, "index.html")):
            print(f"   HTML report: {os.path.join(target.directory, 'index.html')}")
        logs = [os.path.join(target.directory, name) for name in ("server.log", "wstest.log")]
        print(f"   logs: {', '.join(path for path in logs if os.path.exists(path))}")
        tallies.append(counts)
    return all(t.passed for t in tallies), tallies


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.autobahn", description=__doc__.splitlines()[0],
        epilog="A case fails unless its behavior is OK, NON-STRICT or INFORMATIONAL and its close OK. "
               "Exit status: 0 pass, 1 fail, 2 could not run, 130 interrupted. "
               "Details: conformance/autobahn/__init__.py.")
    parser.add_argument("--modes", default=",".join(MODES), help="threadswoole modes to test (default: all three)")
    parser.add_argument("--self-check", action="store_true",
                        help=f"test the harness against the {REFERENCE_AGENT} echo server instead of threadswoole")
    parser.add_argument("--cases", default="*", help="wstest case patterns, comma-separated (default: *)")
    parser.add_argument("--exclude-cases", default="", help="wstest case patterns to skip, comma-separated")
    parser.add_argument("--jobs", type=int, default=3,
                        help="targets run at once (default 3: the three modes together; 1: one after another)")
    parser.add_argument("--timeout", type=float, default=2700.0, help="bound on each wstest run, seconds")
    parser.add_argument("--outdir", default="", help="where reports go (default: a new temporary directory)")
    parser.add_argument("--python27", default=None, help="a Python 2.7 interpreter (default: pyenv's 2.7.18)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.self_check and (not modes or set(modes) - set(MODES)):
        parser.error(f"--modes takes a comma-separated subset of {','.join(MODES)}")
    args.mode_list = modes
    args.jobs = max(1, args.jobs)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.self_check:
        try:
            python = environments.reference_environment()
        except environments.SetupError as exc:
            _say(f"SETUP FAILED: {exc}")
            return SETUP_FAILED
        targets = [Target(REFERENCE_AGENT, [python, os.path.join(HERE, "reference_server.py")])]
    else:
        server_class, reason = websocket_server_class()
        if server_class is None:
            _say(f"FAILED: {NOT_AVAILABLE} ({reason}); nothing to test")
            return SETUP_FAILED
        targets = [Target(f"threadswoole-{mode}",
                          [sys.executable, "-m", "conformance.autobahn.echo_server", "--mode", mode])
                   for mode in args.mode_list]
    try:
        wstest = environments.wstest_environment(environments.find_python27(args.python27))
    except environments.SetupError as exc:
        _say(f"SETUP FAILED: {exc}")
        return SETUP_FAILED
    outdir = os.path.abspath(args.outdir) if args.outdir else tempfile.mkdtemp(prefix="threadswoole-autobahn-")
    for target in targets:
        target.directory = os.path.join(outdir, target.agent)
    _say(f"{len(targets)} target(s), cases {args.cases!r}, reports in {outdir}")
    try:
        _run_all(targets, wstest, args)
    except KeyboardInterrupt as exc:
        _say(f"interrupted ({exc or 'SIGINT'}); every child stopped; partial reports in {outdir}")
        return INTERRUPTED
    if any(NOT_AVAILABLE in t.problems for t in targets):
        for target in targets:
            _say(f"{target.agent}: {'; '.join(target.problems) or 'ran'}")
        _say(f"FAILED: {NOT_AVAILABLE}")
        return SETUP_FAILED
    passed, tallies = _verdict(targets)
    print(report.summary_table(tallies))
    _say(f"{'PASS' if passed else 'FAIL'} in {time.monotonic() - started:.0f} s; reports in {outdir}")
    failed = sum(len(t.failures) for t in tallies)
    print(f"autobahn: {sum(t.cases for t in tallies) - failed} passed, {failed} failed")  # CI's closing line
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
