"""The seed journal: every generated image's prompt, seed and settings, so a good one can be made again.

The seed: "In those instances it yields good images, I save combinations of the prompt, parameters, and
seed to refine and explore the latent space." One JSON object per line in `<user dir>/seed_journal.jsonl`,
append-only (a crash never loses earlier lines): `{"type": "image", ...}` records an image's settings,
`{"type": "favourite", "id", "favourite"}` flips the favourite flag later. Any sampler can write it: the
local FLUX sampler (`sampler` "euler", `stack` of LoRAs) and a Replicate sampler (its model version and
cost in `extra`).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import InputError

log = logging.getLogger("likeness")
JOURNAL_FILE = "seed_journal.jsonl"
_LOCK = threading.Lock()


@dataclass
class JournalEntry:
    prompt: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    sampler: str = "euler"
    scheduler: str = "simple"
    max_shift: float = 1.15
    base_shift: float = 0.5
    stack: list[dict[str, Any]] = field(default_factory=list)   # [{"lora", "strength", "clip_strength"}]
    trigger_words: str = ""
    source: str = "local"              # which sampler wrote it: "local", "replicate", ...
    favourite: bool = False
    images: list[str] = field(default_factory=list)
    replay_of: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JournalEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def settings(self) -> dict[str, Any]:
        """What makes the image: everything but the bookkeeping (id, time, favourite, images)."""
        skip = {"id", "time", "favourite", "images", "replay_of"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def summary(self) -> str:
        loras = ", ".join(f"{s['lora']} {s['strength']:.2f}" for s in self.stack) or "no LoRA"
        star = " ★" if self.favourite else ""
        return (f"{self.id}{star}: seed {self.seed}, {self.steps} steps, guidance {self.guidance:g}, "
                f"{self.width}×{self.height}, {self.sampler}/{self.scheduler}, {loras}")


class SeedJournal:
    def __init__(self, user_dir: str | os.PathLike):
        self.path = Path(user_dir) / JOURNAL_FILE

    def record(self, entry: JournalEntry) -> JournalEntry:
        self._append({"type": "image", **entry.to_dict()})
        return entry

    def set_favourite(self, entry_id: str, favourite: bool = True) -> JournalEntry:
        entry = self.find(entry_id)
        self._append({"type": "favourite", "id": entry.id, "favourite": bool(favourite),
                      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        entry.favourite = bool(favourite)
        return entry

    def entries(self) -> list[JournalEntry]:
        """All image entries, oldest first, with favourite flags applied."""
        entries: dict[str, JournalEntry] = {}
        for record in self._records():
            kind = record.get("type", "image")
            if kind == "image":
                entry = JournalEntry.from_dict(record)
                entries[entry.id] = entry
            elif kind == "favourite" and record.get("id") in entries:
                entries[record["id"]].favourite = bool(record.get("favourite", True))
        return list(entries.values())

    def favourites(self) -> list[JournalEntry]:
        return [e for e in self.entries() if e.favourite]

    def find(self, which: str = "") -> JournalEntry:
        """An entry by id (or a unique id prefix); "" or "last": the newest; "favourite": the newest favourite."""
        which = (which or "").strip()
        entries = self.entries()
        if which.lower() in ("", "last", "latest"):
            pool, what = entries, "entry"
        elif which.lower() in ("favourite", "favorite", "last favourite", "last favorite"):
            pool, what = [e for e in entries if e.favourite], "favourite"
        else:
            pool = [e for e in entries if e.id.startswith(which)]
            if len(pool) > 1:
                raise InputError(f"Journal id {which!r} matches {len(pool)} entries; give more characters")
            what = f"entry {which!r}"
        if not pool:
            raise InputError(f"The seed journal ({self.path}) has no {what}; generate an image first, or "
                             f"copy an id from the sampler's report")
        return pool[-1]

    # --- the file ---------------------------------------------------------------------------------
    def _append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)        # one write of one line: readers never see half a record
            finally:
                os.close(fd)

    def _records(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        records = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("likeness: %s line %d is not JSON and was skipped", self.path.name, n)
        return records


def put_trigger_first(prompt: str, trigger_words: str) -> str:
    """The prompt with the personal trigger word (the first of `trigger_words`) at its start.

    The seed: "Put trigger word at the beginning of the prompt." A prompt that already starts with it
    (any case) is kept as it is; one that mentions it later gets it in front as well.
    """
    words = [w.strip() for w in (trigger_words or "").split(",") if w.strip()]
    prompt = (prompt or "").strip()
    if not words:
        return prompt
    first = words[0]
    if prompt.lower().startswith(first.lower()):
        return prompt
    return f"{first}, {prompt}" if prompt else first
