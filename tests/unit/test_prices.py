from __future__ import annotations

from likeness.money.prices import format_usd, load_prices


def test_bundled_table_has_a_date_and_the_seed_hardware():
    prices = load_prices(None)
    assert prices.as_of.startswith("20")
    assert prices.hardware_per_second("gpu-h100") == 0.001525
    assert prices.gemini_per_million("models/gemini-2.5-flash") == (0.30, 2.50)
    assert prices.gemini_per_million("gemini-9-unknown") == prices.gemini_per_million("default")


def test_user_copy_wins(tmp_path):
    (tmp_path / "prices.json").write_text(
        '{"as_of": "2027-01-01", "gemini_per_million_tokens": {"default": {"input": 1, "output": 2}},'
        ' "replicate_hardware_per_second": {"gpu-h100": 0.002}}')
    prices = load_prices(tmp_path)
    assert prices.as_of == "2027-01-01" and prices.source == tmp_path / "prices.json"
    assert prices.hardware_per_second("gpu-h100") == 0.002


def test_format_usd():
    assert format_usd(0.0123) == "$0.0123"
    assert format_usd(1.834) == "$1.83"
