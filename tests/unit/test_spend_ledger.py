from __future__ import annotations

import pytest

from likeness.errors import BudgetError, InputError
from likeness.spend_ledger import BUDGET_ENV, SpendEntry, SpendLedger


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
