"""Registered stress scenarios, run in this order by ``python -m stress.run``.

Adding a scenario: drop a module in this package that defines

- ``NAME``: str (what ``--only`` matches),
- ``MAX_SECONDS``: int, a hard bound on its run time (the runner aborts it after that),
- ``run(quick: bool) -> list[dict]``: rows built with ``stress.scenarios.common.make_row``;
  bounded in count and time; ``quick`` = smoke-run durations; must not raise for an
  expected failure (a server that does not start is a failed row, not a crash),

then add the module to ``SCENARIOS`` below. Thresholds go in ``stress/thresholds.py``.
Each scenario covers the three modes (``common.MODES``; BASE, PROCESS and THREAD with two
workers each) one after the other; the runner checks after each scenario that no process
it started is left.
"""
from __future__ import annotations

from types import ModuleType

from stress.scenarios import capacity, churn, comparison, faults, soak, tasks, websocket

SCENARIOS: list[ModuleType] = [
    capacity,
    websocket,
    churn,
    soak,
    faults,
    tasks,
    comparison,
]
