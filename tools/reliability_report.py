"""Runs the reliability suite (tests/reliability) through the host and prints what it proved, as a table.

    python3 tools/reliability_report.py            # `make report`: run the suite, then print the table
    python3 tools/reliability_report.py --no-run   # print the table of the last run's summary

The suite's conftest writes `test-artifacts/reliability-summary.json`: every case each test proved, by category.
A case counts only when its test passed. The exit status is the suite's (1 also when a leak or a duplicate paid
call was counted, or when the summary is missing).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUMMARY = Path(os.environ.get("LIKENESS_RELIABILITY_SUMMARY") or REPO / "test-artifacts" / "reliability-summary.json")
log = logging.getLogger("reliability_report")


def run_suite(pytest_args: list[str]) -> int:
    SUMMARY.unlink(missing_ok=True)
    cmd = ["bash", str(REPO / "tools" / "host.sh"), "test", "tests/reliability", *pytest_args]
    log.info("running %s", " ".join(cmd))
    return subprocess.call(cmd, cwd=REPO)


def table(summary: dict) -> list[str]:
    totals, cases = summary["totals"], summary["cases"]
    load = next((c for c in cases if c["category"] == "load"), None)
    secrets, faults, bad = totals["secrets"], totals["faults"], totals["bad_inputs"]
    routes, paid = totals["routes"], totals["paid_calls"]
    rows = [
        ("secrets: places scanned for the canary", secrets["count"], f"leaks {secrets['leaks']}"
         + (f", {secrets['failed']} not proved" if secrets["failed"] else "")),
        ("fault cases", faults["count"], f"survived {faults['ok']}"),
        ("bad inputs", bad["count"], f"clear messages {bad['ok']}"),
        ("pack route requests (confinement, shapes)", routes["count"], f"answered right {routes['ok']}"),
        ("paid-call counts (both fakes, spend ledger)", paid["count"], f"duplicate paid calls {paid['duplicates']}"
         + (f", {paid['failed']} not proved" if paid["failed"] else "")),
    ]
    if load:
        d = load["detail"]
        rows.append((f"load: {d.get('prompts')} prompts (stack + local sampler)", d.get("completed", 0),
                     f"RSS after 20 → after all: {d.get('rss_after_20_mb')} → {d.get('rss_after_200_mb')} MB "
                     f"(×{d.get('ratio')}){'' if load['ok'] else ' NOT PROVED'}"))
    width = max(len(r[0]) for r in rows)
    outcomes = list(summary.get("tests", {}).values())
    lines = [f"Reliability report ({summary.get('written', '?')}; "
             f"{outcomes.count('passed')} tests passed, {outcomes.count('failed')} failed, "
             f"{outcomes.count('skipped')} skipped)", "",
             f"{'what':<{width}}  {'count':>5}  result", f"{'-' * width}  {'-' * 5}  {'-' * 30}"]
    lines += [f"{what:<{width}}  {count:>5}  {result}" for what, count, result in rows]
    failed = [c for c in cases if not c["ok"]]
    if failed:
        lines += ["", f"{len(failed)} case(s) not proved:"]
        lines += [f"  - [{c['category']}] {c['name']} ({c['test']}: {c['test_outcome']})" for c in failed[:40]]
    return lines


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[reliability] %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-run", action="store_true", help="print the last run's summary without running")
    args, pytest_args = parser.parse_known_args(argv)
    rc = 0 if args.no_run else run_suite(pytest_args)
    if not SUMMARY.exists():
        log.error("no summary at %s: the suite did not run its reliability tests", SUMMARY)
        return rc or 1
    summary = json.loads(SUMMARY.read_text(encoding="utf-8"))
    sys.stdout.write("\n".join(table(summary)) + "\n")
    bad = summary["totals"]["secrets"]["leaks"] or summary["totals"]["paid_calls"]["duplicates"]
    return rc or (1 if bad else 0)


if __name__ == "__main__":
    sys.exit(main())
