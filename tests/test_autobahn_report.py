"""The Autobahn harness's verdict rule and report reading (conformance/autobahn/report.py).

The fixture tests/data/autobahn/ is a real wstest 25.10.1 run against websockets 15.0.1 with
compression off and max_size 64 KiB (agent renamed "reference", per-case reports trimmed to
the fields the harness reads), plus one hand-made entry in the same shape: 1.1.2, every echo
right but the TCP connection dropped without a closing handshake (close behavior UNCLEAN).
No network: this runs in the normal suite.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `pytest` alone (as tox runs it) puts only tests/ on sys.path
    sys.path.insert(0, ROOT)

from conformance.autobahn import report  # noqa: E402

FIXTURE = os.path.join(ROOT, "tests", "data", "autobahn")
INDEX = os.path.join(FIXTURE, "index.json")


@pytest.fixture
def results() -> dict[str, report.CaseResult]:
    index = report.load_index(INDEX)
    assert list(index) == ["reference"]
    return {result.case_id: result for result in index["reference"]}


@pytest.mark.parametrize("behavior, close, failure", [
    ("OK", "OK", None),
    ("NON-STRICT", "OK", None),
    ("INFORMATIONAL", "INFORMATIONAL", None),
    ("INFORMATIONAL", "OK", None),
    ("UNIMPLEMENTED", "OK", "behavior UNIMPLEMENTED"),
    ("FAILED", "OK", "behavior FAILED"),
    ("FAILED", "WRONG CODE", "behavior FAILED, close behavior WRONG CODE"),
    ("OK", "UNCLEAN", "close behavior UNCLEAN"),
    ("OK", "FAILED BY CLIENT", "close behavior FAILED BY CLIENT"),
    ("NON-STRICT", "WRONG CODE", "close behavior WRONG CODE"),
    ("OK", "INFORMATIONAL", "close behavior INFORMATIONAL"),  # only an INFORMATIONAL case may close so
    ("WRONG CODE", "OK", "behavior WRONG CODE"),  # an unknown verdict is not accepted
])
def test_verdict_rule(behavior, close, failure):
    assert report.case_failure(behavior, close) == failure


def test_index_is_read_in_numeric_case_order(results):
    ids = list(results)
    assert ids == ["1.1.1", "1.1.2", "2.1", "5.1", "6.4.1", "7.1.5", "7.1.6", "9.1.1", "9.1.3", "12.1.1", "13.1.1"]
    assert report.case_sort_key("12.2.10") > report.case_sort_key("12.2.9")
    entry = results["6.4.1"]
    assert (entry.behavior, entry.behavior_close, entry.remote_close_code, entry.duration_ms) == \
        ("NON-STRICT", "OK", 1007, 2005)
    assert entry.report_file == "reference_case_6_4_1.json"


def test_fixture_cases_get_the_right_verdicts(results):
    failing = {case_id: r.failure for case_id, r in results.items() if r.failure}
    assert failing == {
        "1.1.2": "close behavior UNCLEAN",
        "7.1.5": "behavior FAILED, close behavior WRONG CODE",
        "9.1.3": "behavior FAILED, close behavior FAILED",
        "12.1.1": "behavior UNIMPLEMENTED",
        "13.1.1": "behavior UNIMPLEMENTED",
    }
    for passing in ("1.1.1", "2.1", "5.1", "6.4.1", "7.1.6", "9.1.1"):
        assert results[passing].failure is None


def test_tally_counts_and_lists_failures(results):
    counts = report.tally("reference", results.values(), expected_cases=11)
    assert counts.cases == 11 and not counts.problems and not counts.passed
    assert dict(counts.behaviors) == {"OK": 5, "NON-STRICT": 1, "INFORMATIONAL": 1, "FAILED": 2, "UNIMPLEMENTED": 2}
    assert dict(counts.close_behaviors) == {"OK": 7, "UNCLEAN": 1, "WRONG CODE": 1, "FAILED": 1, "INFORMATIONAL": 1}
    assert counts.close_failures == 3
    assert [r.case_id for r in counts.failures] == ["1.1.2", "7.1.5", "9.1.3", "12.1.1", "13.1.1"]
    assert counts.duration_ms == sum(r.duration_ms for r in results.values())


def test_all_accepted_cases_pass(results):
    good = [r for r in results.values() if r.failure is None]
    counts = report.tally("reference", good, expected_cases=len(good))
    assert counts.passed and counts.failures == [] and counts.problems == []


def test_a_cut_off_or_missing_run_fails():
    index = report.load_index(INDEX)
    good = [r for r in index["reference"] if r.failure is None]
    short = report.tally("reference", good, expected_cases=517)
    assert not short.passed and short.problems == ["6 case results, wstest announced 517"]
    empty = report.tally("reference", [])
    assert not empty.passed and empty.problems == ["no case results"]
    tallies = report.tally_index(index, ["reference", "threadswoole-base"])
    assert [t.agent for t in tallies] == ["reference", "threadswoole-base"]
    assert tallies[1].problems == ["agent missing from index.json"] and not tallies[1].passed


def test_failing_case_details_show_expected_and_received(results):
    details = report.case_details(FIXTURE, results["7.1.5"])
    assert details["description"] == "Send message fragment1 followed by close then fragment"
    assert details["expected"] == {"OK": []} and details["received"] == []
    assert details["expectedClose"]["closeCode"] == [1000]
    assert details["resultClose"] == "The close code should have been 1000 or empty"
    assert report.case_details(FIXTURE, results["13.1.1"]) == {}  # its report file is not in the fixture


def test_format_tally_names_every_failing_case(results):
    counts = report.tally("reference", results.values(), expected_cases=11)
    text = report.format_tally(counts, FIXTURE)
    assert text.splitlines()[0].startswith("== reference: FAIL, 11 cases, 5 failing")
    assert "behavior:       OK 5, NON-STRICT 1, INFORMATIONAL 1, UNIMPLEMENTED 2, FAILED 2" in text
    for case_id in ("1.1.2", "7.1.5", "9.1.3", "12.1.1", "13.1.1"):
        assert f"FAIL {case_id}: " in text
    assert 'expected close: {"closeCode": [1000], "closedByMe": true, "requireClean": true}' in text
    assert "result: Did not receive message within 100 seconds." in text
    assert "(no case report reference_case_13_1_1.json)" in text
    assert "FAIL 6.4.1" not in text and "FAIL 7.1.6" not in text


def test_format_tally_limits_detail_but_not_the_list(results):
    many = [report.CaseResult("x", f"1.1.{n}", "FAILED", "OK", 1, 1000, "") for n in range(1, 61)]
    text = report.format_tally(report.tally("x", many), FIXTURE, max_details=3)
    assert sum(1 for line in text.splitlines() if line.startswith("   FAIL ")) == 60
    assert text.count("(no case report") == 3
    assert "57 more failing cases: details in the HTML report" in text


def test_long_payloads_are_clipped():
    clipped = report._clip({"OK": [["message", "*" * 5000, False]]})
    assert len(clipped) < report.DETAIL_LIMIT + 40 and clipped.endswith(" chars)")


def test_summary_table_is_markdown(results):
    good = report.tally("good", [r for r in results.values() if r.failure is None])
    bad = report.tally("reference", results.values())
    lines = report.summary_table([good, bad]).splitlines()
    assert lines[0].startswith("| agent | cases | OK | NON-STRICT | INFORMATIONAL | UNIMPLEMENTED | FAILED |")
    assert lines[2] == "| good | 6 | 4 | 1 | 1 | 0 | 0 | 0 | 0 | pass |"
    assert lines[3] == "| reference | 11 | 5 | 1 | 1 | 2 | 2 | 0 | 3 | FAIL |"


@pytest.mark.parametrize("content, message", [
    ("[]", "expected an object of agents"),
    ('{"a": []}', "agent 'a' holds list"),
    ('{"a": {"1.1.1": {"behavior": "OK"}}}', "case a/1.1.1 is malformed"),
])
def test_malformed_index_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "index.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        report.load_index(str(path))


def test_fixture_is_what_wstest_writes():
    with open(INDEX) as stream:
        raw = json.load(stream)
    for entry in raw["reference"].values():
        assert set(entry) == {"behavior", "behaviorClose", "duration", "remoteCloseCode", "reportfile"}
