"""What strength sweeps found, kept by LoRA file content, so the stack's `measured` mode can use it.

A sweep (likeness/generation/strength_sweep.py) appends one JSON line to `<user dir>/sweeps.jsonl` when it
ends: its id, the two LoRAs with the sha256 of their files, the grid of likeness scores and its
recommendation. `SweepResults.newest(personal_sha256, style_sha256)` is the newest sweep of that exact pair of
files — matched by content, not by name, so a renamed file keeps its sweep and a replaced file under the same
name does not inherit one. LoRAs given as URLs (Replicate rows) have no file; they are matched by name.

`lora_sha256(path)` hashes a file once per (path, size, mtime) in this process.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..storage import append_json_line, read_json_lines, sha256_file
from .lora_cache import FileKey, file_key

log = logging.getLogger("likeness")
SWEEPS_FILE = "sweeps.jsonl"
_HASHES: dict[FileKey, str] = {}


@dataclass
class SweepRecord:
    id: str
    personal_name: str
    personal_sha256: str                 # "" for a LoRA given by URL / Replicate name
    style_name: str
    style_sha256: str
    personal: list[float]                # the grid's rows
    style: list[float]                   # its columns
    likeness: list[list[float | None]]   # [row][column]
    recommended_personal: float | None   # None: no cell kept likeness
    recommended_style: float | None
    recommended_likeness: float | None
    reference_likeness: float | None
    tolerance: float
    text: str                            # the recommendation as the sweep said it
    where: str = ""
    backend: str = ""
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def found(self) -> bool:
        return self.recommended_personal is not None and self.recommended_style is not None

    def likeness_at(self, personal: float, style: float) -> float | None:
        """The sweep's likeness for the cell nearest (personal, style)."""
        if not self.personal or not self.style:
            return None
        r = min(range(len(self.personal)), key=lambda i: abs(self.personal[i] - personal))
        c = min(range(len(self.style)), key=lambda i: abs(self.style[i] - style))
        return self.likeness[r][c]


class SweepResults:
    def __init__(self, user_dir: str | os.PathLike):
        self.path = Path(user_dir) / SWEEPS_FILE

    def add(self, record: SweepRecord) -> SweepRecord:
        append_json_line(self.path, asdict(record))
        return record

    def relink(self, old_sha256: str, new_sha256: str) -> int:
        """A LoRA file was rewritten with more metadata (the same weights): its sweeps are appended again under the
        new file's sha256, so `newest` finds them for the new file. How many were."""
        moved = [replace(r, personal_sha256=new_sha256 if r.personal_sha256 == old_sha256 else r.personal_sha256,
                         style_sha256=new_sha256 if r.style_sha256 == old_sha256 else r.style_sha256)
                 for r in self.records() if old_sha256 in (r.personal_sha256, r.style_sha256)]
        for record in moved:
            self.add(record)
        return len(moved)

    def newest(self, personal_key: str, style_key: str) -> SweepRecord | None:
        """The newest sweep of this personal × style pair (keys: a file's sha256, or "name:<url>")."""
        found = None
        for record in self.records():
            if (_key(record.personal_sha256, record.personal_name), _key(record.style_sha256, record.style_name)) \
                    == (personal_key, style_key):
                found = record
        return found

    def records(self) -> list[SweepRecord]:
        records = []
        for n, fields in enumerate(read_json_lines(self.path), 1):
            try:
                records.append(SweepRecord(**fields))
            except TypeError:
                log.warning("likeness: %s record %d is not a sweep record and was skipped", self.path.name, n)
        return records


def lora_key(sha256: str, name: str) -> str:
    """How a sweep names a LoRA: its file's sha256, or its name when it has no local file."""
    return _key(sha256, name)


def _key(sha256: str, name: str) -> str:
    return sha256 or f"name:{name}"


def lora_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a LoRA file, computed once per (path, size, mtime) in this process."""
    key = file_key(path)
    digest = _HASHES.get(key)
    if digest is None:
        digest = sha256_file(key[0])
        _HASHES[key] = digest
    return digest
