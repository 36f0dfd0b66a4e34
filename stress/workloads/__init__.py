"""The benchmark workloads of ``python -m stress.bench`` (one module per protocol).

Each entry of ``WORKLOADS`` is a ``Workload``: its name (the CLI's sub-command), a line
of help, ``configure(parser)`` adding its options, and ``run(args) -> benchreport.Report``.
Add a workload: a module here defining ``Workload`` objects, listed in ``_MODULES``.
"""
from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Callable

from stress.benchreport import Report


@dataclass(frozen=True)
class Workload:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Report]


def common_options(ap: argparse.ArgumentParser, *, duration: float, repeat: int, servers: str,
                   connections: int = 100) -> None:
    """Options every workload has (defaults per workload)."""
    ap.add_argument("-d", "--duration", type=float, default=duration, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run")
    ap.add_argument("--repeat", type=int, default=repeat, help="alternating rounds; figures are medians")
    ap.add_argument("-c", "--connections", type=int, default=connections)
    ap.add_argument("--servers", default=servers, help="comma-separated server names (see --list)")
    ap.add_argument("--list", action="store_true", help="list this workload's servers and exit")
    ap.add_argument("--gen-threads", type=int, default=1,
                    help="load generator threads (1 leaves the other core to the server)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 s, one round")
    ap.add_argument("--no-install", action="store_true",
                    help="do not create the peer virtualenv; skip the peers that need it")


def names(arg: str, known: dict) -> list[str]:
    wanted = [n.strip() for n in arg.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown servers {unknown}; known: {', '.join(known)}")
    return wanted


def apply_quick(a: argparse.Namespace) -> None:
    if getattr(a, "quick", False):
        a.duration, a.repeat, a.warmup = min(a.duration, 2.0), 1, min(a.warmup, 0.5)


_MODULES = ("echo", "http", "ws", "redis", "tasks", "serve")


def all_workloads() -> dict[str, Workload]:
    out: dict[str, Workload] = {}
    for mod_name in _MODULES:
        mod = importlib.import_module(f"stress.workloads.{mod_name}")
        for w in mod.WORKLOADS:
            out[w.name] = w
    return out
