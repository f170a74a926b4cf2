"""The two pictures of a strength sweep: the contact sheet and the likeness-vs-style plot.

Contact sheet (`contact_sheet`): one cell per personal × style strength, personal strengths down the left,
style strengths along the top; a cell holds its images side by side (one per prompt × seed), each shrunk to fit
`tile` px, with the cell's likeness printed on a band across its foot — green when it keeps likeness (within the
tolerance of the reference), orange when it does not, grey when there is no number ("no face", "failed").
The recommended cell has a green frame. Geometry (`sheet_size`): LEFT px of row labels and TOP px of title and
column labels, then the cells with GAP px between and around them.

Plot (`likeness_plot`): likeness (0–100) against the style strength, one line per personal strength, with the
"keeps likeness" floor (reference − tolerance), the same-person line at 50 and the recommendation marked.
Drawn with matplotlib on its Agg canvas (no window, no global backend switch).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .strength_sweep import SweepResult, strength

TILE = 256                  # the longer side of one image on the sheet, at most
MIN_TILE = 64
MAX_WIDTH = 2560            # the sheet shrinks its tiles to stay this wide
LEFT, TOP, GAP, INNER, BAND = 150, 76, 8, 2, 30
KEEP, LOSE, NONE, PICK = (46, 160, 67), (214, 120, 20), (110, 110, 110), (46, 200, 90)


def tile_size(result: SweepResult, tile: int = TILE) -> tuple[int, int]:
    """(width, height) of one image on the sheet: its aspect kept, the longer side `tile`, shrunk to fit."""
    first = next((i.image for c in result.cells for i in c.images if i.image is not None), None)
    h, w = first.shape[:2] if first is not None else (1, 1)
    per_cell = max(len(c.images) for c in result.cells) or 1
    columns = result.grid.shape[1]
    room = (MAX_WIDTH - LEFT - GAP - columns * (GAP + (per_cell - 1) * INNER)) // (columns * per_cell)
    side = max(MIN_TILE, min(tile, room))
    return (side, max(1, round(side * h / w))) if w >= h else (max(1, round(side * w / h)), side)


def sheet_size(result: SweepResult, tile: int = TILE) -> tuple[int, int]:
    tw, th = tile_size(result, tile)
    per_cell = max(len(c.images) for c in result.cells) or 1
    rows, columns = result.grid.shape
    cell_w = per_cell * tw + (per_cell - 1) * INNER
    return LEFT + GAP + columns * (cell_w + GAP), TOP + GAP + rows * (th + GAP)


def cell_box(result: SweepResult, row: int, column: int, tile: int = TILE) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a cell on the sheet."""
    tw, th = tile_size(result, tile)
    per_cell = max(len(c.images) for c in result.cells) or 1
    cell_w = per_cell * tw + (per_cell - 1) * INNER
    left, top = LEFT + GAP + column * (cell_w + GAP), TOP + GAP + row * (th + GAP)
    return left, top, left + cell_w, top + th


def contact_sheet(result: SweepResult, tile: int = TILE) -> np.ndarray:
    """The sheet as H×W×3 float32 in 0..1 (ComfyUI's IMAGE layout for one image)."""
    sheet = Image.new("RGB", sheet_size(result, tile), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    tw, th = tile_size(result, tile)
    rec = result.recommendation
    floor = rec.reference - rec.tolerance if rec.reference is not None else None
    draw.text((GAP, 8), f"{result.personal.name} × {result.style.name} · likeness by {result.backend} "
                        "(50 = same person)", fill=(230, 230, 230), font=_font(18))
    for column, style in enumerate(result.grid.style):
        left, _, right, _ = cell_box(result, 0, column, tile)
        label = "alone (style 0)" if style == 0 else f"style {strength(style)}"
        _centred(draw, ((left + right) // 2, TOP - 20), label, _font(17), (220, 220, 220))
    for row, personal in enumerate(result.grid.personal):
        _, top, _, bottom = cell_box(result, row, 0, tile)
        draw.text((GAP, (top + bottom) // 2 - 10), f"personal {strength(personal)}", fill=(220, 220, 220), font=_font(17))
    for cell in result.cells:
        left, top, right, bottom = cell_box(result, cell.row, cell.column, tile)
        for n, image in enumerate(cell.images):
            x = left + n * (tw + INNER)
            if image.image is not None:
                sheet.paste(_thumbnail(image.image, tw, th), (x, top))
            else:
                draw.rectangle((x, top, x + tw - 1, bottom - 1), fill=(60, 30, 30))
        colour = NONE if cell.likeness is None else KEEP if floor is not None and cell.likeness >= floor else LOSE
        band = Image.new("RGB", (right - left, min(BAND, bottom - top)), colour)
        sheet.paste(Image.blend(sheet.crop((left, bottom - band.height, right, bottom)), band, 0.8),
                    (left, bottom - band.height))
        text = cell.label if len(cell.images) < 2 or cell.likeness is None else (
            f"{cell.label}  ({' · '.join(i.score.label() if i.score else 'failed' for i in cell.images)})")
        _centred(draw, ((left + right) // 2, bottom - band.height // 2), text, _font(18), (255, 255, 255))
        if rec.found and (cell.personal, cell.style) == (rec.personal, rec.style):
            draw.rectangle((left - 4, top - 4, right + 3, bottom + 3), outline=PICK, width=4)
    return np.asarray(sheet, dtype=np.float32) / 255.0


def likeness_plot(result: SweepResult, width: int = 800, height: int = 500) -> np.ndarray:
    """Likeness against style strength, one line per personal strength; H×W×3 float32 in 0..1."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = list(result.grid.style)
    for row, personal in enumerate(result.grid.personal):
        values = [result.cells[row * len(styles) + c].likeness for c in range(len(styles))]
        ax.plot(styles, [np.nan if v is None else v for v in values], marker="o", label=f"personal {strength(personal)}")
    rec = result.recommendation
    if rec.reference is not None:
        ax.axhline(rec.reference - rec.tolerance, color="tab:green", linestyle="--", linewidth=1,
                   label=f"keeps likeness (≥ {rec.reference - rec.tolerance:.0f})")
    ax.axhline(50, color="grey", linestyle=":", linewidth=1, label="same-person line (50)")
    if rec.found:
        ax.plot([rec.style], [rec.likeness], marker="*", markersize=20, color="gold", markeredgecolor="black",
                linestyle="none", label=f"recommended: {strength(rec.personal)} + {strength(rec.style)}")
    ax.set_xlabel(f"style strength ({result.style.name})")
    ax.set_ylabel("likeness (0–100)")
    ax.set_ylim(0, 100)
    ax.set_title(f"Sweep {result.id}: likeness vs style strength")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba(), dtype=np.float32)[..., :3] / 255.0


def _thumbnail(pixels: np.ndarray, width: int, height: int) -> Image.Image:
    image = Image.fromarray(np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image.resize((width, height), Image.LANCZOS)


def _centred(draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, font, fill) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((at[0] - (right - left) // 2, at[1] - (bottom - top) // 2 - top), text, fill=fill, font=font)


@lru_cache(maxsize=8)
def _font(size: int):
    """DejaVu Sans, which matplotlib ships; Pillow's own font if it cannot be found."""
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=True), size)
    except (ImportError, OSError, ValueError):
        return ImageFont.load_default()
