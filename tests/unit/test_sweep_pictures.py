"""The sweep's contact sheet (its geometry, every cell's images and label, the pick framed) and its plot."""
from __future__ import annotations

import numpy as np

from likeness.generation.strength_sweep import recommend
from likeness.generation.sweep_pictures import (BAND, GAP, INNER, KEEP, LEFT, LOSE, MAX_WIDTH, NONE, PICK, TOP,
                                                cell_box, contact_sheet, likeness_plot, sheet_size)
from unit.test_strength_sweep import GRID, _result

LIKENESS = [[72, 70, 66, 60, 52],
            [73, 71, 68, 63, None],
            [74, 72, 70, 66, 60],
            [74, 73, 71, 69.5, 64]]


def result_with_images(per_cell=1, shape=(48, 64)):
    result = _result(recommend(GRID, LIKENESS, 5), LIKENESS)
    for cell in result.cells:
        template = cell.images[0]
        cell.images = [type(template)(n, 1234 + n, None if template.image is None else
                                      np.full((*shape, 3), (cell.row * 5 + cell.column) / 20, np.float32),
                                      template.score) for n in range(per_cell)]
    return result


def test_the_sheet_has_a_cell_per_strength_pair_with_its_images_and_label_colour():
    result = result_with_images()
    sheet = contact_sheet(result)
    width, height = sheet_size(result)
    assert sheet.shape == (height, width, 3)
    assert (width, height) == (LEFT + GAP + 5 * (256 + GAP), TOP + GAP + 4 * (192 + GAP))   # 64×48 → 256×192
    for cell in result.cells:
        left, top, right, bottom = cell_box(result, cell.row, cell.column)
        shade = (cell.row * 5 + cell.column) / 20
        if cell.images[0].image is not None:                            # the cell shows the image made for it
            assert np.allclose(sheet[top + 5:bottom - BAND - 5, left + 5:right - 5], shade, atol=2 / 255)
            under = np.full(3, shade * 255)
        else:
            under = np.array([60, 30, 30])                              # no image: a dark red tile
        colour = NONE if cell.likeness is None else KEEP if cell.likeness >= 69 else LOSE   # floor 74 − 5
        band = sheet[bottom - 3, left + 3] * 255
        assert np.abs(band - (0.8 * np.array(colour) + 0.2 * under)).max() < 3
    left, top, right, bottom = cell_box(result, 3, 3)                             # personal 1.0 + style 0.267
    assert (sheet[top - 2, left + 20] * 255).round().tolist() == list(PICK)


def test_several_images_per_cell_sit_side_by_side_and_the_sheet_keeps_to_its_width():
    result = result_with_images(per_cell=4, shape=(64, 64))
    width, height = sheet_size(result)
    assert width <= MAX_WIDTH
    left, top, right, bottom = cell_box(result, 0, 0)
    tile = bottom - top
    assert right - left == 4 * tile + 3 * INNER
    assert contact_sheet(result).shape == (height, width, 3)


def test_the_plot_draws_one_line_per_personal_strength():
    result = result_with_images()
    plot = likeness_plot(result)
    assert plot.shape == (500, 800, 3)
    pixels = (plot * 255).round().astype(int).reshape(-1, 3)
    tab10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]         # matplotlib's first colours
    for colour in tab10:
        assert (np.abs(pixels - colour).sum(axis=1) < 10).sum() > 200, colour
    assert (np.abs(pixels - (255, 215, 0)).sum(axis=1) < 10).sum() > 50            # the recommendation's star
