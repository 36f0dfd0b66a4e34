"""``bench tasks``: task round trips, threadswoole task workers vs concurrent.futures.

One submitter keeps ``--inflight`` 64-byte echo tasks in flight to ``--task-workers``
workers and sends the next as each answer arrives, for ``--duration`` s after a warm-up.
Self-driven: each contender is one process tree that makes its own load and prints its
count (``RESULT``); the benchmark samples the tree's CPU over the measured window.

- ``executor-process`` / ``executor-thread``: ``ProcessPoolExecutor`` / ``ThreadPoolExecutor``
  with a done-callback that submits the next task (``stress/servers/executor_tasks.py``).
- ``threadswoole-base`` / ``-process`` / ``-thread``: one event worker, ``task_worker_num``
  task workers, ``on_task`` -> ``finish(data)``, ``on_finish`` sends the next task
  (``stress/servers/threadswoole_tasks.py``, written against api.md §7).

Target (issue 11): ``threadswoole-process`` >= 3x ``executor-process`` in round trips per CPU-second
of the whole process tree (stress/thresholds.py); the THREAD row is compared with the
``ThreadPoolExecutor`` row, the BASE row with the ``ProcessPoolExecutor`` one.
"""
from __future__ import annotations

import argparse
import json

from stress import benchkit, benchreport
from stress.benchkit import Phase
from stress.benchreport import Report
from stress.thresholds import BENCH_TARGETS
from stress.workloads import Workload, apply_quick, common_options, names


def _table(a: argparse.Namespace) -> dict:
    load = ("--inflight", str(a.inflight), "--size", str(a.size), "--duration", f"{a.duration:g}",
            "--warmup", f"{a.warmup:g}")
    tw = str(a.task_workers)
    specs = [
        benchkit.module_spec("executor-process", "executor_tasks", "--kind", "process", "--workers", tw, *load,
                             note=f"concurrent.futures.ProcessPoolExecutor({tw}), done-callback resubmits"),
        benchkit.module_spec("executor-thread", "executor_tasks", "--kind", "thread", "--workers", tw, *load,
                             note=f"concurrent.futures.ThreadPoolExecutor({tw}), done-callback resubmits"),
    ]
    for mode in ("base", "process", "thread"):
        specs.append(benchkit.module_spec(f"threadswoole-{mode}", "threadswoole_tasks", "--mode", mode,
                                          "--task-workers", tw, *load,
                                          note=f"threadswoole {mode.upper()}, worker_num=1, task_worker_num={tw}"))
    return {s.name: s for s in specs}


def configure(ap: argparse.ArgumentParser) -> None:
    common_options(ap, duration=5.0, repeat=3,
                   servers="executor-process,executor-thread,threadswoole-base,threadswoole-process,"
                           "threadswoole-thread")
    ap.add_argument("--task-workers", type=int, default=2)
    ap.add_argument("--inflight", type=int, default=16, help="tasks in flight")
    ap.add_argument("-s", "--size", type=int, default=64)


def _result(srv, timeout: float) -> dict:
    """The self-driven server's ``RESULT {json}`` line (it measured its own window)."""
    line = srv.wait_line("RESULT ", timeout=timeout)
    if line is None:
        raise RuntimeError(f"no RESULT line within {timeout:.0f} s: {srv.stderr_summary()}")
    return json.loads(line[len("RESULT "):])


def run(a: argparse.Namespace) -> Report:
    apply_quick(a)
    table = _table(a)
    wanted = names(a.servers, table)
    if a.list:
        for n, s in table.items():
            print(f"{n:<22} {s.note}")
        return None  # type: ignore[return-value]
    params = {k: getattr(a, k) for k in ("duration", "warmup", "repeat", "task_workers", "inflight", "size")}
    print("== tasks ...", flush=True)
    phase = Phase(lambda host, port, srv: _result(srv, a.duration + 60), "", None, self_driven=True)
    rows = benchkit.run_workload([table[n] for n in wanted], lambda s: [phase], repeat=a.repeat,
                                 install=False)
    peers_ = [p for p in ("executor-process", "executor-thread") if p in wanted]
    benchreport.add_ratios(rows, peers_)
    rep = Report("tasks", params)
    rep.sections.append((f"task round trips: {a.inflight} in flight to {a.task_workers} workers, "
                         f"{a.size}-byte echo", rows, peers_))
    rep.verdicts = benchreport.evaluate(rows, BENCH_TARGETS["tasks"])
    rep.notes += [f"{n}: {table[n].note}" for n in wanted]
    rep.notes.append("req/s = completed round trips per second; req/cpu-s over the whole process tree "
                     "(submitter + workers). No latency figures (p50/p99 '-').")
    return rep


WORKLOADS = [Workload("tasks", "task round trips: threadswoole task workers vs concurrent.futures",
                      configure, run)]
