"""Every paid call the pack makes, in one append-only ledger, and the user's optional monthly budget.

The ledger is JSON lines in `<user dir>/likeness/spend.jsonl`. The budget comes from the environment
(`LIKENESS_MONTHLY_BUDGET_USD`) or from `<user dir>/likeness/config.json` (`{"monthly_budget_usd": 20}`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import BudgetError, InputError
from .prices import format_usd
from ..storage import append_json_line, read_json, read_json_lines

BUDGET_ENV = "LIKENESS_MONTHLY_BUDGET_USD"


@dataclass(frozen=True)
class SpendEntry:
    service: str        # "gemini", "replicate-training", "replicate-prediction"
    what: str           # what the money bought, in the user's words
    usd: float
    ref: str = ""       # the service's id for it (training id, prediction id, image hash)
    estimated: bool = False


class SpendLedger:
    def __init__(self, user_dir: str | Path):
        self.path = Path(user_dir) / "spend.jsonl"
        self.config_path = Path(user_dir) / "config.json"

    def monthly_budget(self) -> float | None:
        raw = os.environ.get(BUDGET_ENV)
        if raw is None:
            raw = (read_json(self.config_path, {}) or {}).get("monthly_budget_usd")
        if raw in (None, ""):
            return None
        try:
            return float(raw)
        except ValueError as exc:
            raise InputError(f"The monthly budget must be a number of US dollars, got {raw!r} "
                             f"(set {BUDGET_ENV} or monthly_budget_usd in {self.config_path})") from exc

    def month_total(self, now: float | None = None) -> float:
        month = time.strftime("%Y-%m", time.gmtime(now))
        return sum(_usd(e) for e in self._entries() if e.get("month") == month)

    def check(self, estimate_usd: float, what: str) -> None:
        """Refuse, before anything is paid, a call whose estimate would take the month over budget."""
        budget = self.monthly_budget()
        if budget is None:
            return
        spent = self.month_total()
        if spent + estimate_usd > budget:
            raise BudgetError(
                f"{what} would cost about {format_usd(estimate_usd)}, and {format_usd(spent)} of this month's "
                f"{format_usd(budget)} budget is already spent ({format_usd(spent + estimate_usd - budget)} over): "
                "refused before anything was paid. Raise "
                f"{BUDGET_ENV} (or monthly_budget_usd in {self.config_path}) to go ahead.")

    def record(self, entry: SpendEntry) -> None:
        append_json_line(self.path, {"time": time.time(), "month": time.strftime("%Y-%m", time.gmtime()),
                                     "service": entry.service, "what": entry.what, "usd": round(entry.usd, 6),
                                     "ref": entry.ref, "estimated": entry.estimated})

    def _entries(self) -> list[dict]:
        # a line torn by a crash is skipped with a warning: it must not block every paid node
        return read_json_lines(self.path)


def _usd(entry: dict) -> float:
    try:
        return float(entry.get("usd") or 0.0)
    except (TypeError, ValueError):
        return 0.0
