"""A scored image with its verdict drawn on it: the face's box and landmarks, its rank and likeness."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .scoring import ImageScore

SAME = (60, 200, 90)          # green: above the same-person line
OTHER = (235, 150, 40)        # orange: below it
NONE = (200, 60, 60)          # red: no number


def annotated(image: Image.Image, score: ImageScore, rank: int) -> Image.Image:
    """A copy of `image` with the scored face boxed and a label "#rank  likeness 72 (same person)"."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    colour = NONE if score.likeness is None else SAME if score.same_person else OTHER
    line = max(2, round(min(out.size) / 256))
    if score.face is not None:
        draw.rectangle(score.face.box, outline=colour, width=line)
        for x, y in score.face.landmarks:
            draw.ellipse((x - line, y - line, x + line, y + line), fill=colour)
    verdict = ("same person" if score.same_person else "not the same person") if score.likeness is not None else ""
    label = f"#{rank}  " + (f"likeness {score.likeness:.0f} ({verdict})" if score.likeness is not None
                            else score.reason)
    font = _font(max(12, round(min(out.size) / 24)))
    left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
    pad = line * 2
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=(0, 0, 0))
    draw.text((pad - left, pad - top), label, fill=colour, font=font)
    return out


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:    # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()
