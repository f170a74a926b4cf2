"""The prepared training set: photos made square and upright, each with its caption side-car.

`Dataset` is the LIKENESS_DATASET value the nodes pass on (loader → captioner → trainer).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class DatasetItem:
    image: str                  # file name inside Dataset.folder, e.g. "003_beach.jpg"
    sha256: str                 # content hash of the prepared image file
    source: str                 # the user's original photo (never modified)
    caption: str = ""           # caption text as last known ("" when none)
    width: int = 0
    height: int = 0

    @property
    def caption_file(self) -> str:
        return str(Path(self.image).with_suffix(".txt"))


@dataclass(frozen=True)
class Dataset:
    folder: str                 # the prepared set: images + .txt side-cars, flat
    trigger_word: str
    items: tuple[DatasetItem, ...]
    warnings: tuple[str, ...] = field(default=())

    def image_path(self, item: DatasetItem) -> Path:
        return Path(self.folder) / item.image

    def caption_path(self, item: DatasetItem) -> Path:
        return Path(self.folder) / item.caption_file

    @property
    def captions(self) -> list[str]:
        return [item.caption for item in self.items]

    def content_hash(self) -> str:
        """Identity of the set as a trainer sees it: every image's bytes and every caption on disk."""
        digest = hashlib.sha256(self.trigger_word.encode())
        for item in sorted(self.items, key=lambda i: i.image):
            caption_file = self.caption_path(item)
            caption = caption_file.read_text(encoding="utf-8") if caption_file.exists() else ""
            digest.update(f"\0{item.image}\0{item.sha256}\0{caption}".encode())
        return digest.hexdigest()
