"""Checks a set of captions before training: forbidden identity traits, a missing trigger word, and a
caption whose structure differs from the rest of the set (the seed asks for a consistent structure)."""
from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .caption_cache import CaptionFiles
from .caption_template import DEFAULT_FORBIDDEN_TRAITS


@dataclass(frozen=True)
class LintFlag:
    image: str
    kind: str       # forbidden | trigger | structure | empty
    detail: str

    def text(self) -> str:
        return f"{self.image}: {self.detail}"


def parse_traits(text: str | None) -> list[str]:
    """Comma- or line-separated phrases; None means the default list, "" means none."""
    if text is None:
        text = DEFAULT_FORBIDDEN_TRAITS
    return [t.strip() for t in re.split(r"[,\n]", text) if t.strip()]


def lint_captions(captions: Iterable[tuple[str, str]], trigger_word: str,
                  forbidden: list[str] | None = None) -> list[LintFlag]:
    """Flags for (image, caption) pairs, in the order given."""
    pairs = list(captions)
    forbidden = parse_traits(None) if forbidden is None else forbidden
    flags: list[LintFlag] = []
    for image, caption in pairs:
        flags += lint_caption(image, caption, trigger_word, forbidden)
    flags += structure_outliers(pairs, trigger_word)
    return flags


def lint_caption(image: str, caption: str, trigger_word: str, forbidden: list[str]) -> list[LintFlag]:
    if not caption.strip():
        return [LintFlag(image, "empty", "no caption")]
    flags = []
    if not starts_with_trigger(caption, trigger_word):
        flags.append(LintFlag(image, "trigger", f"does not start with the trigger word {trigger_word!r}"))
    for trait in forbidden:
        if re.search(rf"(?i)(?<![\w-]){re.escape(trait)}(?![\w-])", caption):
            flags.append(LintFlag(image, "forbidden", f"mentions {trait!r} (an identity trait the trigger "
                                                      f"word should learn; remove it)"))
    return flags


def starts_with_trigger(caption: str, trigger_word: str) -> bool:
    return re.match(rf"\s*{re.escape(trigger_word)}(?![\w-])", caption, re.IGNORECASE) is not None


def structure_outliers(pairs: list[tuple[str, str]], trigger_word: str) -> list[LintFlag]:
    """Captions whose sentence count or length is far from the set's median (needs 3 captions or more)."""
    shaped = [(image, _shape(caption)) for image, caption in pairs if caption.strip()]
    if len(shaped) < 3:
        return []
    median_sentences = statistics.median(s for _, (s, _) in shaped)
    median_words = statistics.median(w for _, (_, w) in shaped)
    flags = []
    for image, (sentences, words) in shaped:
        if abs(sentences - median_sentences) >= 2:
            flags.append(LintFlag(image, "structure", f"has {sentences} sentences where the others have about "
                                                      f"{median_sentences:g}; keep one structure for the set"))
        elif words < median_words / 2 or words > median_words * 2:
            flags.append(LintFlag(image, "structure", f"has {words} words where the others have about "
                                                      f"{median_words:g}; keep one structure for the set"))
    return flags


def _shape(caption: str) -> tuple[int, int]:
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", caption.strip()) if s.strip()]
    return len(sentences), len(caption.split())


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def review_folder(folder: str | Path, trigger_word: str, forbidden: list[str],
                  files: CaptionFiles) -> list[dict]:
    """Each image of a prepared set with its caption, whether it is a hand edit, and its lint flags."""
    folder = Path(folder)
    images = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    captions = [(name, files.read(folder / Path(name).with_suffix(".txt"))) for name in images]
    flags = lint_captions(captions, trigger_word, forbidden) if trigger_word else []
    return [{"image": name, "caption": caption, "hand_edit": files.is_hand_edit(folder / Path(name).with_suffix(".txt")),
             "flags": [f.detail for f in flags if f.image == name]} for name, caption in captions]
