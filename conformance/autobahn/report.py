"""Reading Autobahn|Testsuite results: index.json -> per-agent tally -> pass/fail verdict.

Pure functions over files wstest wrote, so the verdict rule is tested without a network
(tests/test_autobahn_report.py). The rule (issue 13): a case fails when its behavior is not
OK, NON-STRICT or INFORMATIONAL, or when its close behavior is not OK. wstest marks the close
of an INFORMATIONAL case INFORMATIONAL too (7.1.6, 7.13.x: the suite only records what the
server did), so that pair is accepted; any other close verdict (WRONG CODE, UNCLEAN, FAILED,
FAILED BY CLIENT, ...) fails the case.
"""
from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

ACCEPTED_BEHAVIORS = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
BEHAVIOR_ORDER = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
DETAIL_LIMIT = 300  # characters of expected/received shown per failing case (9.* payloads are MiBs)
DETAILED_FAILURES = 40  # failing cases shown with details; the rest by id (all are in the HTML report)


def case_sort_key(case_id: str) -> tuple[int, ...]:
    """'12.2.10' sorts after '12.2.9' (numeric, not text, order)."""
    return tuple(int(part) if part.isdigit() else 0 for part in case_id.split("."))


@dataclass(frozen=True)
class CaseResult:
    """One case of one agent as index.json records it."""

    agent: str
    case_id: str
    behavior: str
    behavior_close: str
    duration_ms: int
    remote_close_code: int | None
    report_file: str

    @property
    def failure(self) -> str | None:
        """Why this case fails the run, or None when it passes."""
        return case_failure(self.behavior, self.behavior_close)


def case_failure(behavior: str, behavior_close: str) -> str | None:
    """The verdict rule for one case: None = accepted, else the reason it is not."""
    reasons = []
    if behavior not in ACCEPTED_BEHAVIORS:
        reasons.append(f"behavior {behavior}")
    if not close_accepted(behavior, behavior_close):
        reasons.append(f"close behavior {behavior_close}")
    return ", ".join(reasons) or None


def close_accepted(behavior: str, behavior_close: str) -> bool:
    """OK, or INFORMATIONAL on an INFORMATIONAL case (wstest only records what happened there)."""
    return behavior_close == "OK" or behavior == behavior_close == "INFORMATIONAL"


def load_index(path: str) -> dict[str, list[CaseResult]]:
    """index.json -> {agent: [CaseResult, ...] in case order}. Raises ValueError if malformed."""
    with open(path, encoding="utf-8") as stream:
        raw = json.load(stream)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object of agents, got {type(raw).__name__}")
    agents: dict[str, list[CaseResult]] = {}
    for agent, cases in raw.items():
        if not isinstance(cases, dict):
            raise ValueError(f"{path}: agent {agent!r} holds {type(cases).__name__}, not cases")
        results = []
        for case_id, entry in cases.items():
            try:
                results.append(CaseResult(
                    agent=agent, case_id=case_id, behavior=str(entry["behavior"]),
                    behavior_close=str(entry["behaviorClose"]),
                    duration_ms=int(entry.get("duration") or 0),
                    remote_close_code=entry.get("remoteCloseCode"),
                    report_file=str(entry.get("reportfile") or "")))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: case {agent}/{case_id} is malformed: {exc!r}") from None
        agents[agent] = sorted(results, key=lambda r: case_sort_key(r.case_id))
    return agents


def case_details(report_dir: str, result: CaseResult) -> dict[str, Any]:
    """The per-case report's description, expected/received and close results ({} if absent)."""
    if not result.report_file:
        return {}
    try:
        with open(os.path.join(report_dir, result.report_file), encoding="utf-8") as stream:
            report = json.load(stream)
    except (OSError, ValueError):
        return {}
    keys = ("description", "expected", "received", "expectedClose", "result", "resultClose")
    return {key: report[key] for key in keys if key in report}


@dataclass
class AgentTally:
    """Counts for one agent (one server mode) and the cases that fail the run."""

    agent: str
    cases: int = 0
    behaviors: collections.Counter = field(default_factory=collections.Counter)
    close_behaviors: collections.Counter = field(default_factory=collections.Counter)
    failures: list[CaseResult] = field(default_factory=list)
    close_failures: int = 0  # cases whose close behavior alone would fail them
    duration_ms: int = 0
    problems: list[str] = field(default_factory=list)  # run-level: missing agent, too few cases

    @property
    def passed(self) -> bool:
        return not self.failures and not self.problems


def tally(agent: str, results: Iterable[CaseResult], expected_cases: int | None = None) -> AgentTally:
    """Count one agent's results; `expected_cases` (wstest's 'will run N') catches a cut-off run."""
    counts = AgentTally(agent)
    for result in results:
        counts.cases += 1
        counts.behaviors[result.behavior] += 1
        counts.close_behaviors[result.behavior_close] += 1
        counts.duration_ms += result.duration_ms
        if not close_accepted(result.behavior, result.behavior_close):
            counts.close_failures += 1
        if result.failure:
            counts.failures.append(result)
    if counts.cases == 0:
        counts.problems.append("no case results")
    elif expected_cases is not None and counts.cases != expected_cases:
        counts.problems.append(f"{counts.cases} case results, wstest announced {expected_cases}")
    return counts


def tally_index(index: Mapping[str, list[CaseResult]], agents: Iterable[str],
                expected_cases: int | None = None) -> list[AgentTally]:
    """One tally per expected agent, in the order given; an agent absent from the index fails."""
    tallies = []
    for agent in agents:
        if agent in index:
            tallies.append(tally(agent, index[agent], expected_cases))
        else:
            missing = AgentTally(agent)
            missing.problems.append("agent missing from index.json")
            tallies.append(missing)
    return tallies


def _counter_text(counter: Mapping[str, int]) -> str:
    ordered = [k for k in BEHAVIOR_ORDER if k in counter] + sorted(k for k in counter if k not in BEHAVIOR_ORDER)
    return ", ".join(f"{key} {counter[key]}" for key in ordered) or "-"


def _clip(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, sort_keys=True)
    return text if len(text) <= DETAIL_LIMIT else text[:DETAIL_LIMIT] + f"... ({len(text)} chars)"


def format_tally(counts: AgentTally, report_dir: str, max_details: int = DETAILED_FAILURES) -> str:
    """The human block for one agent: counts, every failing case, the first ones with details."""
    verdict = "PASS" if counts.passed else "FAIL"
    lines = [f"== {counts.agent}: {verdict}, {counts.cases} cases, {len(counts.failures)} failing, "
             f"{counts.duration_ms / 1000:.0f} s in cases",
             f"   behavior:       {_counter_text(counts.behaviors)}",
             f"   close behavior: {_counter_text(counts.close_behaviors)}"]
    lines += [f"   PROBLEM: {problem}" for problem in counts.problems]
    for number, result in enumerate(counts.failures):
        lines.append(f"   FAIL {result.case_id}: {result.failure} (remote close code {result.remote_close_code})")
        if number >= max_details:
            continue
        details = case_details(report_dir, result)
        if not details:
            lines.append(f"        (no case report {result.report_file or '-'})")
            continue
        if "description" in details:
            lines.append(f"        case: {details['description']}")
        lines.append(f"        expected: {_clip(details.get('expected'))}")
        lines.append(f"        received: {_clip(details.get('received'))}")
        lines.append(f"        result: {details.get('result')}")
        lines.append(f"        expected close: {_clip(details.get('expectedClose'))}; "
                     f"close result: {details.get('resultClose')}")
    if len(counts.failures) > max_details:
        lines.append(f"   ({len(counts.failures) - max_details} more failing cases: details in the HTML report)")
    return "\n".join(lines)


def summary_table(tallies: Iterable[AgentTally]) -> str:
    """A Markdown table, one row per agent, ready for the README's tally."""
    columns = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
    rows = ["| agent | cases | " + " | ".join(columns) + " | other | close not OK | verdict |",
            "|---|---:|" + "---:|" * len(columns) + "---:|---:|---|"]
    for counts in tallies:
        other = sum(n for key, n in counts.behaviors.items() if key not in columns)
        cells = [str(counts.behaviors.get(key, 0)) for key in columns]
        rows.append(f"| {counts.agent} | {counts.cases} | " + " | ".join(cells)
                    + f" | {other} | {counts.close_failures} | {'pass' if counts.passed else 'FAIL'} |")
    return "\n".join(rows)
