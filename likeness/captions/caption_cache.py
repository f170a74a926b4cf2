"""What the captioner remembers between runs, under the pack's user folder (it survives a restart):

- the caption cache: each answer keyed by image content hash + model + instructions + trigger word, so a
  re-run pays for nothing it already has;
- the side-car records: what the pack last wrote into each `.txt`, so a caption the user edited (or brought
  with the photos) is recognised and never overwritten unless they ask.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .caption_template import TEMPLATE_VERSION
from ..dataset.dataset_prep import read_caption
from ..storage import atomic_write_json, atomic_write_text, read_json, sha256_bytes


@dataclass(frozen=True)
class CachedCaption:
    caption: str
    fields: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    prompt_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    blocked: str = ""       # why Gemini gave no caption (kept so a re-run does not pay for the refusal again)


def cache_key(image_sha256: str, model: str, instructions: str, trigger_word: str) -> str:
    parts = [f"v{TEMPLATE_VERSION}", image_sha256, model.removeprefix("models/"), instructions, trigger_word]
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()


class CaptionCache:
    def __init__(self, user_dir: str | Path):
        self.root = Path(user_dir) / "caption_cache"

    def get(self, key: str) -> CachedCaption | None:
        data = read_json(self._path(key))
        if not data:
            return None
        return CachedCaption(**{k: v for k, v in data.items() if k in CachedCaption.__dataclass_fields__})

    def put(self, key: str, entry: CachedCaption) -> None:
        atomic_write_json(self._path(key), {**asdict(entry), "stored": time.time()})

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"


class CaptionFiles:
    """The `.txt` side-cars and what the pack last wrote into each of them."""

    def __init__(self, user_dir: str | Path):
        self.root = Path(user_dir) / "caption_writes"

    def read(self, txt: str | Path) -> str:
        """The caption in `txt` without surrounding white space ("" when there is none). A file saved by an
        editor in another encoding is read as the loader reads side-cars (UTF-16 or Windows-1252, control
        characters dropped), never an error."""
        try:
            return read_caption(Path(txt)).strip()
        except FileNotFoundError:
            return ""

    def is_hand_edit(self, txt: str | Path) -> bool:
        """True when the file holds a caption the pack did not write last (edited, or brought by the user)."""
        text = self.read(txt)
        if not text:
            return False
        record = read_json(self._record(txt)) or {}
        return record.get("hand_edit", False) or record.get("sha256") != sha256_bytes(text.encode("utf-8"))

    def write(self, txt: str | Path, caption: str) -> None:
        """Writes the pack's caption atomically and remembers it was the pack's."""
        self._write(txt, caption, hand_edit=False)

    def save_hand_edit(self, txt: str | Path, caption: str) -> None:
        """Writes a caption the user typed (the review editor); the captioner keeps it from now on."""
        self._write(txt, caption, hand_edit=True)

    def _write(self, txt: str | Path, caption: str, hand_edit: bool) -> None:
        # One line ending, as the dataset loader writes side-cars; compared without surrounding space.
        caption = caption.strip()
        atomic_write_text(txt, caption + "\n")
        atomic_write_json(self._record(txt), {"path": os.path.realpath(txt), "hand_edit": hand_edit,
                                              "sha256": sha256_bytes(caption.encode("utf-8"))})

    def _record(self, txt: str | Path) -> Path:
        name = hashlib.sha256(os.path.realpath(txt).encode("utf-8")).hexdigest()
        return self.root / f"{name}.json"
