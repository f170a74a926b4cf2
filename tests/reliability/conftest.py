"""The reliability suite's tally: each test records the cases it proved, by category, and the session writes
a JSON summary (`test-artifacts/reliability-summary.json`) that `tools/reliability_report.py` prints as a table.

Categories:
  secrets     one place scanned for the canary key/token            (leaks: how many hits)
  faults      one injected fault survived                           (nothing lost, nothing paid twice)
  bad_inputs  one bad input answered with a clear message           (server still serving)
  routes      one request to a pack route refused or served right
  paid_calls  one paid operation counted on the fakes               (duplicates: extra paid calls)
  load        one load run                                          (prompts, RSS figures)

A case only counts as proved when the test that recorded it passed: the summary marks every case of a failed
test `ok: false`, whatever the test recorded before it failed.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

from harness.comfy_server import REPO

SUMMARY = Path(os.environ.get("LIKENESS_RELIABILITY_SUMMARY") or REPO / "test-artifacts" / "reliability-summary.json")
CATEGORIES = ("secrets", "faults", "bad_inputs", "routes", "paid_calls", "load")


@dataclass
class Case:
    category: str
    name: str
    test: str
    ok: bool = True
    detail: dict = field(default_factory=dict)


class Tally:
    def __init__(self) -> None:
        self.cases: list[Case] = []
        self.outcomes: dict[str, str] = {}

    def add(self, category: str, name: str, test: str, ok: bool = True, **detail) -> Case:
        if category not in CATEGORIES:
            raise ValueError(f"unknown reliability category {category!r}; one of {CATEGORIES}")
        case = Case(category, name, test, bool(ok), detail)
        self.cases.append(case)
        return case

    def summary(self) -> dict:
        cases = []
        for case in self.cases:
            passed = self.outcomes.get(case.test) == "passed"
            cases.append({**asdict(case), "ok": case.ok and passed, "test_outcome": self.outcomes.get(case.test)})
        totals = {}
        for category in CATEGORIES:
            mine = [c for c in cases if c["category"] == category]
            totals[category] = {"count": len(mine), "ok": sum(1 for c in mine if c["ok"]),
                                "failed": sum(1 for c in mine if not c["ok"])}
        totals["secrets"]["leaks"] = sum(int(c["detail"].get("leaks", 0)) for c in cases
                                         if c["category"] == "secrets")
        totals["paid_calls"]["duplicates"] = sum(int(c["detail"].get("duplicates", 0)) for c in cases
                                                 if c["category"] == "paid_calls")
        return {"written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "totals": totals,
                "tests": dict(sorted(self.outcomes.items())), "cases": cases}


_TALLY = Tally()


@pytest.fixture
def tally(request):
    """`tally(category, name, ok=True, **detail)` records one proved case for this test."""
    def record(category: str, name: str, ok: bool = True, **detail) -> Case:
        return _TALLY.add(category, name, request.node.nodeid, ok, **detail)
    return record


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        previous = _TALLY.outcomes.get(report.nodeid)
        if previous not in ("failed",):          # a teardown error after a pass still fails the test
            _TALLY.outcomes[report.nodeid] = "failed" if report.outcome == "failed" else report.outcome


def pytest_sessionfinish(session, exitstatus):
    if not _TALLY.cases and not _TALLY.outcomes:
        return
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(json.dumps(_TALLY.summary(), indent=2) + "\n", encoding="utf-8")
