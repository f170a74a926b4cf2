"""The battery report's comparison sheet: variants as rows, prompts as columns, the likeness on every image.

Left of each row: the variant, its mean likeness (and how many of its images showed one clear face), what its
training cost, how long it trained and how big its LoRA is. The best row is framed in green; the title says which
variant is best and by how much. Scores of 50 and above (the face model's same-person line) are green, below it
orange; images without a score say why ("no face").
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    from .battery_report import BatteryReport

CELL = 256
LEFT = 330
TITLE = 70
HEADER = 36
PAD = 8
BACKGROUND, INK, MUTED = (24, 24, 28), (235, 235, 235), (160, 160, 170)
SAME_PERSON, BELOW, NONE, BEST = (60, 170, 80), (220, 130, 40), (110, 110, 120), (90, 200, 110)


def draw_sheet(report: BatteryReport) -> np.ndarray:
    """The sheet as an H×W×3 float32 array in 0..1 (a ComfyUI IMAGE)."""
    rows, prompts = report.rows, report.prompts
    width = LEFT + CELL * len(prompts)
    height = TITLE + HEADER + CELL * len(rows)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    big, small = _font(20), _font(15)
    draw.text((PAD, 8), f"Battery {report.battery.id} · likeness to the training photos ({report.backend}; "
                        f"50 = same person) · generated on {report.generated_on}", fill=MUTED, font=small)
    draw.text((PAD, 32), report.best_line(), fill=INK, font=big)
    draw.text((PAD, TITLE + 8), "variant · mean · training · LoRA", fill=MUTED, font=small)
    for j, prompt in enumerate(prompts):
        draw.text((LEFT + j * CELL + PAD, TITLE + 8), f"{prompt.label} · seed {prompt.seed}", fill=INK, font=small)
    best, _ = report.best()
    for i, row in enumerate(rows):
        top = TITLE + HEADER + i * CELL
        mean = f"mean {row.mean:.1f}" if row.mean is not None else "mean —"
        draw.text((PAD, top + PAD), row.label, fill=INK, font=big)
        draw.text((PAD, top + PAD + 30), f"{mean} ({len(row.scored)} of {len(row.scores)} scored)", fill=INK,
                  font=small)
        draw.text((PAD, top + PAD + 52), row.figures(), fill=MUTED, font=small)
        draw.text((PAD, top + PAD + 74), _fit(row.run.record.lora_file, 38), fill=MUTED, font=small)
        for j, image in enumerate(row.images):
            left = LEFT + j * CELL
            sheet.paste(_thumbnail(image), (left, top))
            if j < len(row.scores):
                _badge(draw, left, top, row.scores[j], big)
        if row is best:
            draw.rectangle((1, top + 1, width - 2, top + CELL - 2), outline=BEST, width=4)
    return np.asarray(sheet, dtype=np.float32) / 255.0


def _thumbnail(image: np.ndarray) -> Image.Image:
    """The image fitted into a CELL square (letterboxed), from a float 0..1 or uint8 array."""
    array = image if image.dtype == np.uint8 else (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    picture = Image.fromarray(array[..., :3]).convert("RGB")
    picture.thumbnail((CELL - 4, CELL - 4), Image.LANCZOS)
    cell = Image.new("RGB", (CELL, CELL), BACKGROUND)
    cell.paste(picture, ((CELL - picture.width) // 2, (CELL - picture.height) // 2))
    return cell


def _badge(draw: ImageDraw.ImageDraw, left: int, top: int, score, font) -> None:
    text = f"{score.likeness:.0f}" if score.likeness is not None else score.reason
    colour = NONE if score.likeness is None else SAME_PERSON if score.likeness >= 50 else BELOW
    box = draw.textbbox((0, 0), text, font=font)
    w, h = box[2] - box[0] + 14, box[3] - box[1] + 12
    x, y = left + 6, top + CELL - h - 6
    draw.rectangle((x, y, x + w, y + h), fill=colour)
    draw.text((x + 7 - box[0], y + 6 - box[1]), text, fill=(255, 255, 255), font=font)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                      # Pillow before 10.1: one small bitmap font
        return ImageFont.load_default()


def _fit(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"
