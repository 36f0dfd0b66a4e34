"""Row helper shared by the scenarios: every scenario returns a list of these dicts.

A row is ``{scenario, mode, figure, value, unit, passed, detail}``: ``figure``
is a short name ("req/cpu-s"), ``value`` a number (or None when the run
failed), ``detail`` free text (ratios, errors).
"""
from __future__ import annotations

from typing import Any, Optional


def make_row(scenario: str, mode: str, figure: str, value: Optional[float], unit: str,
             passed: bool, detail: str = "") -> dict[str, Any]:
    return {"scenario": scenario, "mode": mode, "figure": figure, "value": value,
            "unit": unit, "passed": bool(passed), "detail": detail}
