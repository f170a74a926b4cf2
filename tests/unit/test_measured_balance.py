"""The `measured` balance mode: strengths from the newest sweep of the same files; the anchor rule, with a note,
for everything a sweep did not measure; and which rule decided each row, for every mode."""
from __future__ import annotations

import pytest

from likeness.loras.measured_balance import balance_measured, row_decisions
from likeness.loras.strength_balance import StackRow, balance_strengths
from likeness.loras.sweep_results import SweepResults
from unit.test_sweep_results import record

ME, FILM, GRAIN = "a" * 64, "b" * 64, "c" * 64
ROWS = [StackRow("me.safetensors", 0.9), StackRow("film.safetensors", 0.2), StackRow("grain.safetensors", 0.2)]


def test_without_a_sweep_it_is_the_anchor_rule_with_a_note(tmp_path):
    balanced, decisions = balance_measured(ROWS, SweepResults(tmp_path), [ME, FILM, GRAIN])
    anchor = balance_strengths(ROWS, "anchor")
    assert balanced.strengths == anchor.strengths and balanced.mode == "measured"
    assert [d["decided_by"] for d in decisions] == ["typed", "anchor", "anchor"]
    assert sum("no sweep of me.safetensors with film.safetensors" in n for n in balanced.notes) == 1
    assert any("run Likeness Strength Sweep" in n for n in balanced.notes)


def test_a_sweep_sets_its_row_and_the_personal_strength_and_the_rest_follow_the_anchor_rule(tmp_path):
    store = SweepResults(tmp_path)
    store.add(record("s1", personal=ME, style=FILM, rec=(1.0, 0.3)))
    balanced, decisions = balance_measured(ROWS, store, [ME, FILM, GRAIN], target_total=1.2, clamp=(0.15, 0.25))
    assert balanced.strengths[0] == 1.0 and balanced.strengths[1] == 0.3
    assert balanced.strengths[2] == pytest.approx(0.2)          # anchor rule: typed inside the clamp range, kept
    assert balanced.total == pytest.approx(1.5)
    assert decisions[0] == {"decided_by": "measured", "mode": "measured", "sweep": "s1",
                            "sweep_time": "2026-11-01T10:00:00+0000", "sweep_likeness": 69}
    assert decisions[1]["decided_by"] == "measured" and decisions[2]["decided_by"] == "anchor"
    assert any("row 2 from sweep s1" in n and "likeness 69" in n for n in balanced.notes)
    assert any("no sweep of me.safetensors with grain.safetensors" in n for n in balanced.notes)


def test_a_sweep_that_kept_no_likeness_falls_back_to_anchor_and_says_so(tmp_path):
    store = SweepResults(tmp_path)
    store.add(record("s2", personal=ME, style=FILM, rec=(None, None)))
    balanced, decisions = balance_measured(ROWS[:2], store, [ME, FILM])
    assert balanced.strengths == balance_strengths(ROWS[:2], "anchor").strengths
    assert decisions[1]["decided_by"] == "anchor"
    assert any("sweep s2 found no strength of film.safetensors" in n for n in balanced.notes)


def test_the_newest_of_several_sweeps_decides_the_personal_strength(tmp_path):
    store = SweepResults(tmp_path)
    store.add(record("film", personal=ME, style=FILM, rec=(0.8, 0.25), time="2026-11-01T10:00:00+0000"))
    store.add(record("grain", personal=ME, style=GRAIN, rec=(1.0, 0.1), time="2026-11-03T10:00:00+0000"))
    balanced, decisions = balance_measured(ROWS, store, [ME, FILM, GRAIN])
    assert balanced.strengths == [1.0, 0.25, 0.1]
    assert decisions[0]["sweep"] == "grain"
    assert any("different personal strengths" in n and "(grain)" in n for n in balanced.notes)


def test_rows_off_and_an_unknown_file_are_left_alone(tmp_path):
    store = SweepResults(tmp_path)
    store.add(record("s1", personal=ME, style=FILM, rec=(1.0, 0.3)))
    rows = [ROWS[0], StackRow("film.safetensors", 0.2, on=False), ROWS[2]]
    balanced, decisions = balance_measured(rows, store, [ME, None, GRAIN])
    assert balanced.strengths[1] == 0.0 and decisions[1]["decided_by"] == "off"
    assert decisions[0]["decided_by"] == "typed"


def test_every_mode_says_which_rule_decided_each_row():
    def rules(mode, anchor=0):
        balanced = balance_strengths(ROWS, mode, anchor=anchor)
        return [d["decided_by"] for d in row_decisions(balanced, ROWS)]

    assert rules("off") == ["typed"] * 3
    assert rules("anchor") == ["typed", "anchor", "anchor"]
    assert rules("proportional") == ["proportional"] * 3
    assert rules("anchor", anchor=None) == ["proportional"] * 3
    assert rules("effect") == ["typed", "anchor", "anchor"]           # without the factors: the anchor rule
