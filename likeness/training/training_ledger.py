"""The pack's memory of every Replicate training it started, so the same work is never paid for twice.

A training is identified by what it learns from and what it makes: the dataset's content hash, the trainer
inputs (all but the uploaded zip's URL), the destination model and the trainer version the user asked for
("" = latest). The ledger is one JSON file in the pack's user folder (`trainings.json`), rewritten atomically
at every change, so a ComfyUI restart (or a crash) finds the training again: re-queuing re-attaches to it
while it runs, or reuses the installed LoRA once it finished.

Statuses: `preparing` (zip/upload, nothing paid yet), `creating` (the create request was sent: it may exist
on Replicate even if we never saw its id), `refused` (Replicate refused the create outright — no credit,
throttled: nothing exists; the uploaded zip is used again by the next queue), then Replicate's own `starting |
processing | succeeded | failed | canceled | aborted`.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from ..storage import atomic_write_json, read_json

RUNNING = frozenset({"preparing", "creating", "starting", "processing"})
PAID_AND_DONE = frozenset({"succeeded"})
ENDED_WITHOUT_LORA = frozenset({"failed", "canceled", "aborted"})
_lock = threading.Lock()


def training_identity(dataset_hash: str, inputs: dict[str, Any], destination: str, trainer: str) -> str:
    """The key of a training: same dataset, same inputs, same destination, same trainer → same training."""
    canonical = json.dumps({"dataset": dataset_hash, "inputs": {k: v for k, v in inputs.items()
                                                                 if k != "input_images"},
                            "destination": destination.lower(), "trainer": trainer},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class TrainingLedger:
    def __init__(self, user_dir: str | Path):
        self.path = Path(user_dir) / "trainings.json"

    def get(self, identity: str) -> dict | None:
        entry = self._load().get(identity)
        return dict(entry) if entry else None

    def update(self, identity: str, **fields: Any) -> dict:
        """Merges `fields` into the entry (created if new) and saves the ledger atomically."""
        with _lock:
            entries = self._load()
            entry = entries.setdefault(identity, {"identity": identity, "created": time.time()})
            entry.update(fields)
            entry["updated"] = time.time()
            atomic_write_json(self.path, entries)
            return dict(entry)

    def relink_lora(self, old_sha256: str, new_sha256: str) -> int:
        """The installed LoRA file was rewritten (its metadata grew): entries that knew the old file know the new
        one. How many entries changed."""
        with _lock:
            entries = self._load()
            found = [e for e in entries.values() if e.get("lora_sha256") == old_sha256]
            for entry in found:
                entry["lora_sha256"] = new_sha256
            if found:
                atomic_write_json(self.path, entries)
            return len(found)

    def find(self, training_id: str) -> dict | None:
        for entry in self._load().values():
            if entry.get("training_id") == training_id:
                return dict(entry)
        return None

    def entries(self) -> list[dict]:
        return sorted((dict(e) for e in self._load().values()), key=lambda e: e.get("created", 0))

    def _load(self) -> dict[str, dict]:
        data = read_json(self.path, {}) or {}
        return data if isinstance(data, dict) else {}
