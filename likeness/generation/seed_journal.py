"""The seed journal: every generated image's prompt, seed and settings, so a good one can be made again.

The seed: "In those instances it yields good images, I save combinations of the prompt, parameters, and
seed to refine and explore the latent space." One JSON object per line in `<user dir>/seed_journal.jsonl`,
append-only (a crash never loses earlier lines): `{"type": "image", ...}` records an image's settings,
`{"type": "favourite", "id", "favourite"}` flips the favourite flag later, and `{"type": "likeness", "id",
"likeness"}` gives an image its likeness score after the fact (an image stored before it was scored). Any
sampler can write it: the local FLUX sampler (`sampler` "euler", `stack` of LoRAs) and a Replicate sampler
(its model version and cost in `extra`).

An entry's likeness score lives in one place, `JournalEntry.likeness` (None: not scored, no reference was
known): `{"score": 0–100 or None, "backend", "reason" (why there is no number: "no face", "several faces
(2)"), "distance", "same_person", "reference" (which reference photos: their content hash), "against" (where
the reference came from, in words)}`; `JournalEntry.score` is the number.

Under ComfyUI's --multi-user each entry records the user whose prompt made it (`user`, from the lookup the
host registers with `set_owner_lookup`), and a journal opened for a user sees only that user's entries.
"""
from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..storage import append_json_line, read_json_lines

JOURNAL_FILE = "seed_journal.jsonl"
_owner_lookup: Callable[[], str] = lambda: ""      # noqa: E731 - replaced by the host (ComfyUI's user)


def set_owner_lookup(lookup: Callable[[], str]) -> None:
    """Who is generating right now, as the host knows it ("" for a single user); stamped on each new entry."""
    global _owner_lookup
    _owner_lookup = lookup


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
    likeness: dict[str, Any] | None = None     # the image's likeness score (see the module's docstring)
    user: str = ""                     # the ComfyUI user whose prompt made it (--multi-user); "" otherwise
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    time: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JournalEntry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def settings(self) -> dict[str, Any]:
        """What makes the image: everything but the bookkeeping (id, time, favourite, images, its score)."""
        skip = {"id", "time", "favourite", "images", "replay_of", "user", "likeness"}
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    @property
    def score(self) -> float | None:
        """The likeness score 0–100; None when the image was not scored or has no number (see `likeness`)."""
        value = (self.likeness or {}).get("score")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def score_label(self) -> str:
        """"likeness 72", "no face", or "" when not scored."""
        if self.score is not None:
            return f"likeness {self.score:.0f}"
        return (self.likeness or {}).get("reason", "")

    def summary(self) -> str:
        loras = ", ".join(f"{s['lora']} {s['strength']:.2f}" for s in self.stack) or "no LoRA"
        star = " ★" if self.favourite else ""
        scored = f", {self.score_label()}" if self.score_label() else ""
        return (f"{self.id}{star}: seed {self.seed}, {self.steps} steps, guidance {self.guidance:g}, "
                f"{self.width}×{self.height}, {self.sampler}/{self.scheduler}, {loras}{scored}")


class SeedJournal:
    def __init__(self, user_dir: str | os.PathLike, user: str | None = None):
        """`user`: see only that user's entries (under --multi-user); None or "": every entry."""
        self.path = Path(user_dir) / JOURNAL_FILE
        self.user = user or ""

    def record(self, entry: JournalEntry) -> JournalEntry:
        entry.user = entry.user or self.user or _owner_lookup()
        self._append({"type": "image", **entry.to_dict()})
        return entry

    def set_favourite(self, entry_id: str, favourite: bool = True) -> JournalEntry:
        entry = self.find(entry_id)
        self._append({"type": "favourite", "id": entry.id, "favourite": bool(favourite),
                      "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        entry.favourite = bool(favourite)
        return entry

    def set_likeness(self, entry_id: str, likeness: dict[str, Any]) -> None:
        """Gives an entry (by its exact id) its likeness score, after it was recorded."""
        self._append({"type": "likeness", "id": entry_id, "likeness": likeness})

    def entries(self) -> list[JournalEntry]:
        """All image entries, oldest first, with favourite flags and later scores applied."""
        entries: dict[str, JournalEntry] = {}
        for record in self._records():
            kind = record.get("type", "image")
            if kind == "image":
                entry = JournalEntry.from_dict(record)
                if self.user and entry.user != self.user:
                    continue
                entries[entry.id] = entry
            elif kind == "favourite" and record.get("id") in entries:
                entries[record["id"]].favourite = bool(record.get("favourite", True))
            elif kind == "likeness" and record.get("id") in entries and isinstance(record.get("likeness"), dict):
                entries[record["id"]].likeness = record["likeness"]
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
        append_json_line(self.path, record)      # one write of one line: readers never see half a record

    def _records(self) -> list[dict[str, Any]]:
        return read_json_lines(self.path)       # a torn or hand-broken line is skipped with a warning


SORTS = ("newest", "likeness")
SEED_LIMIT = 1 << 64               # seeds are 64-bit (ComfyUI's seed widgets)


def nth_seed(seed: int, n: int) -> int:
    """The n-th seed after `seed` (best-of-N candidates: seed, seed+1, …), wrapping past the top to 0."""
    return (int(seed) + n) % SEED_LIMIT


def select_entries(entries: list[JournalEntry], *, favourites: bool = False, min_score: float | None = None,
                   sort: str = "newest") -> list[JournalEntry]:
    """`entries` (oldest first, as `entries()` gives them) newest first, or most alike first (`sort` "likeness":
    scored images by score, then the others newest first); only favourites, only scores of `min_score` or more."""
    if sort not in SORTS:
        raise InputError(f"sort must be one of {', '.join(SORTS)}; got {sort!r}")
    picked = [e for e in reversed(entries) if (e.favourite or not favourites)
              and (min_score is None or (e.score is not None and e.score >= min_score))]
    if sort == "likeness":
        picked.sort(key=lambda e: (e.score is None, -(e.score or 0.0)))     # stable: ties stay newest first
    return picked


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
