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


def threshold(scenario: str, mode: str) -> dict[str, float | str]:
    """The thresholds for (scenario, mode); empty when that pair is informational only."""
    return THRESHOLDS.get(scenario, {}).get(mode, {})
