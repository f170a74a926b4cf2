"""The sweep's grid and its recommendation, on made-up likeness grids: monotone, noisy, flat, all below the
tolerance, and nothing measurable — the strongest style that keeps likeness, or a plain "no"."""
from __future__ import annotations

import pytest

from likeness.errors import InputError
from likeness.generation.strength_sweep import (Cell, CellImage, LoraRef, SweepGrid, SweepResult, axis, recommend,
                                                sweep_grid)
from likeness.identity import ImageScore

STYLE = (0.0, 0.1, 0.183, 0.267, 0.35)          # the default grid with its personal-only column
GRID = SweepGrid((0.7, 0.8, 0.9, 1.0), STYLE, True)


def test_the_default_grid_is_4x4_plus_the_personal_only_column():
    grid = sweep_grid((0.7, 1.0, 4), (0.10, 0.35, 4))
    assert grid.personal == (0.7, 0.8, 0.9, 1.0)
    assert grid.style == STYLE and grid.baseline_added
    assert grid.shape == (4, 5) and len(grid.cells()) == 20
    assert grid.cells()[6] == (1, 1, 0.8, 0.1)


def test_an_axis_can_be_fixed_and_zero_is_not_added_twice_or_for_best_cell():
    assert axis(0.9, 0.9, 4, "personal") == (0.9,)
    assert axis(0.7, 1.0, 1, "personal") == (0.7,)
    assert sweep_grid((0.9, 0.9, 1), (0.0, 0.3, 4)).style == (0.0, 0.1, 0.2, 0.3)
    assert sweep_grid((0.9, 0.9, 1), (0.1, 0.3, 3), "best cell").style == (0.1, 0.2, 0.3)


def test_bad_axes_are_refused_with_what_to_do():
    with pytest.raises(InputError, match="at least 1"):
        axis(0.1, 0.3, 0, "style")
    with pytest.raises(InputError, match="closer than 0.001"):
        axis(0.1, 0.102, 4, "style")
    with pytest.raises(InputError, match="above 0"):
        sweep_grid((0.0, 1.0, 3), (0.1, 0.3, 3))
    with pytest.raises(InputError, match="tolerance_of"):
        sweep_grid((0.7, 1.0, 4), (0.1, 0.3, 3), "median")


def test_monotone_grid_picks_the_strongest_style_that_stays_within_tolerance():
    # likeness falls as style rises, less so for a stronger personal LoRA
    likeness = [[72, 70, 66, 60, 52],
                [73, 71, 68, 63, 56],
                [74, 72, 70, 66, 60],
                [74, 73, 71, 69.5, 64]]
    rec = recommend(GRID, likeness, tolerance=5)
    assert rec.reference == 74 and rec.found
    assert (rec.personal, rec.style, rec.likeness) == (1.0, 0.267, 69.5)
    assert "personal 1.0 + style 0.267" in rec.text and "0.35 and above lose it" in rec.text


def test_a_noisy_cell_beyond_a_failing_one_is_not_trusted():
    likeness = [[72, 70, 61, 71, 50],          # 0.267 passes by chance after 0.183 failed
                [72, 71, 69, 64, 70],          # 0.35 passes after 0.267 failed
                [72, 70, 68, 60, 58],
                [72, 69, 67, 62, 60]]
    rec = recommend(GRID, likeness, tolerance=5)
    assert (rec.personal, rec.style) == (0.8, 0.183)


def test_missing_numbers_keep_nothing():
    likeness = [[72, None, 71, 71, 71],         # no face in one cell: the row cannot vouch beyond it
                [72, 71, None, 70, 70],
                [72, 70, 66, 50, 70],
                [72, 60, 70, 70, 70]]
    rec = recommend(GRID, likeness, tolerance=5)
    assert (rec.personal, rec.style) == (0.8, 0.1)


def test_flat_grid_takes_the_strongest_style_and_the_seeds_personal_strength():
    likeness = [[70] * 5 for _ in range(4)]
    rec = recommend(GRID, likeness, tolerance=5)
    assert (rec.personal, rec.style, rec.likeness) == (0.9, 0.35, 70)
    assert rec.text.endswith("keeps your likeness.")


def test_ties_on_style_go_to_the_higher_likeness():
    likeness = [[72, 71, 70, 69, 68],
                [72, 71, 70, 69, 70.5],
                [72, 71, 70, 69, 68],
                [72, 71, 70, 69, 68]]
    assert recommend(GRID, likeness, tolerance=5).personal == 0.8


def test_all_below_tolerance_says_so_and_picks_nothing():
    likeness = [[72, 60, 55, 50, 45],
                [73, 61, 55, 50, 45],
                [74, 62, 56, 51, 46],
                [74, 66, 60, 55, 50]]
    rec = recommend(GRID, likeness, tolerance=5)
    assert not rec.found and rec.personal is rec.style is rec.likeness is None
    assert rec.reference == 74
    assert rec.text.startswith("No cell keeps likeness")
    assert "0.1–0.35" in rec.text and "nothing is recommended" in rec.text
    result = _result(rec, likeness)
    assert result.lora_stack() == []
    assert "Recommended" not in result.text()


def test_no_personal_only_face_means_nothing_to_measure_against():
    likeness = [[None, 70, 70, 70, 70] for _ in range(4)]
    rec = recommend(GRID, likeness)
    assert not rec.found and rec.reference is None
    assert rec.text.startswith("Nothing to recommend: none of the personal-only images")


def test_best_cell_measures_from_the_best_cell_of_the_grid():
    grid = SweepGrid((0.8, 1.0), (0.1, 0.2, 0.3))
    likeness = [[70, 68, 62],
                [80, 76, 74]]
    rec = recommend(grid, likeness, tolerance=5, tolerance_of="best cell")
    assert rec.reference == 80 and (rec.personal, rec.style) == (1.0, 0.2)
    assert "the best cell" in rec.text


def test_a_larger_tolerance_allows_a_stronger_style():
    likeness = [[72, 70, 66, 60, 52]] * 4
    picks = [recommend(GRID, likeness, tolerance=t).style for t in (3, 7, 13, 21)]
    assert picks == [0.1, 0.183, 0.267, 0.35]


def test_the_grid_must_match_the_sweep():
    with pytest.raises(ValueError, match="does not match"):
        recommend(GRID, [[70, 70]] * 4)


def test_the_result_gives_the_recommended_stack_personal_first_and_the_scores_as_data():
    likeness = [[72, 70, 66, 60, 52]] * 4
    rec = recommend(GRID, likeness, tolerance=5)
    result = _result(rec, likeness)
    assert result.lora_stack() == [("me.safetensors", rec.personal, rec.personal),
                                   ("film.safetensors", rec.style, rec.style)]
    data = result.data()
    assert data["likeness"] == [[float(v) for v in row] for row in likeness]
    assert data["style"] == list(STYLE) and data["recommendation"]["style"] == rec.style
    assert len(data["cells"]) == 20 and data["cells"][1]["images"][0]["likeness"] == 70
    assert "personal \\ style" in result.text() and "20 images" in result.text()


def _result(rec, likeness) -> SweepResult:
    cells = []
    for r, c, p, s in GRID.cells():
        value = likeness[r][c]
        score = ImageScore(value, "" if value is not None else "no face", None, "dlib", None)
        cells.append(Cell(r, c, p, s, [CellImage(0, 1234, None if value is None else _pixels(), score)]))
    return SweepResult("abc123", LoraRef("me.safetensors", "a" * 64), LoraRef("film.safetensors", "b" * 64), GRID,
                       cells, rec, "local", ("a portrait",), (1234,), "dlib")


def _pixels():
    import numpy as np

    return np.full((32, 32, 3), 0.5, np.float32)
