"""Prices for cost estimates, from an editable JSON with an "as of" date (user copy first)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage import read_json

BUNDLED = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class PriceTable:
    data: dict[str, Any]
    source: Path

    @property
    def as_of(self) -> str:
        return str(self.data.get("as_of", "unknown date"))

    def gemini_per_million(self, model: str) -> tuple[float, float]:
        """(input, output) USD per million tokens for `model`, or the table's default."""
        table = self.data["gemini_per_million_tokens"]
        entry = table.get(model) or table.get(model.removeprefix("models/")) or table["default"]
        return float(entry["input"]), float(entry["output"])

    def hardware_per_second(self, sku: str) -> float:
        table = self.data["replicate_hardware_per_second"]
        return float(table.get(sku, table["gpu-h100"]))

    def training_seconds_per_step(self, trainer: str) -> float:
        table = self.data.get("replicate_training_seconds_per_step", {})
        return float(table.get(trainer, 1.05))

    def per_image(self, model: str) -> float | None:
        value = self.data.get("replicate_models_per_image", {}).get(model)
        return None if value is None else float(value)


def load_prices(user_dir: str | Path | None = None) -> PriceTable:
    """The user's `likeness/prices.json` when present, else the bundled table."""
    if user_dir is not None:
        user_file = Path(user_dir) / "prices.json"
        data = read_json(user_file)
        if data is not None:
            return PriceTable(data, user_file)
    return PriceTable(read_json(BUNDLED), BUNDLED)


def format_usd(amount: float) -> str:
    return f"${amount:.4f}" if amount < 0.1 else f"${amount:.2f}"
