from __future__ import annotations

import pytest

from likeness.errors import BudgetError, InputError
from likeness.money.spend_ledger import BUDGET_ENV, SpendEntry, SpendLedger


def test_no_budget_allows_anything(tmp_path, monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    SpendLedger(tmp_path).check(1000.0, "a training")


def test_budget_refuses_before_paying_with_the_figures(tmp_path, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "5")
    ledger = SpendLedger(tmp_path)
    ledger.record(SpendEntry("replicate-training", "training abc", 4.0, ref="abc"))
    ledger.check(0.9, "captions")
    with pytest.raises(BudgetError) as err:
        ledger.check(1.83, "Training 26 images")
    message = str(err.value)
    assert "$1.83" in message and "$4.00" in message and "$5.00" in message and BUDGET_ENV in message


def test_budget_from_config_file_and_month_total(tmp_path, monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    (tmp_path / "config.json").write_text('{"monthly_budget_usd": 2.5}')
    ledger = SpendLedger(tmp_path)
    assert ledger.monthly_budget() == 2.5
    ledger.record(SpendEntry("gemini", "caption 1", 0.002))
    ledger.record(SpendEntry("gemini", "caption 2", 0.003))
    assert ledger.month_total() == pytest.approx(0.005)
    assert ledger.month_total(now=0) == 0  # January 1970 had no spending


def test_bad_budget_value_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "twenty")
    with pytest.raises(InputError, match="number of US dollars"):
        SpendLedger(tmp_path).monthly_budget()


def test_a_torn_line_in_the_ledger_is_skipped_with_a_warning_not_a_json_error(tmp_path, monkeypatch, caplog):
    """A crash mid-append leaves half a line: every paid node must still check the budget (issue 17, item 15)."""
    monkeypatch.setenv(BUDGET_ENV, "5")
    ledger = SpendLedger(tmp_path)
    ledger.record(SpendEntry("gemini", "caption 1", 1.5))
    with open(ledger.path, "a", encoding="utf-8") as f:
        f.write('{"time": 1, "month": "20')                       # torn by a crash, no newline
    ledger.record(SpendEntry("gemini", "caption 2", 2.0))        # appended after the torn part
    with open(ledger.path, "a", encoding="utf-8") as f:
        f.write('["not", "an", "entry"]\n{"usd": "a lot"}\n')
    with caplog.at_level("WARNING", logger="likeness"):
        assert ledger.month_total() == pytest.approx(3.5)        # the entry after the torn part is kept
        ledger.check(1.5, "a training")
        with pytest.raises(BudgetError):
            ledger.check(1.6, "a training")
    warned = [r.getMessage() for r in caplog.records if "spend.jsonl" in r.getMessage()]
    assert warned and all("skipped" in w for w in warned)
    assert any("line 2" in w for w in warned)
