"""The live status of each training, as the canvas shows it: phase, step/total, time, cost, Replicate page.

`train_lora(..., status=callback)` calls the callback with the whole picture every time something changes
(`TrainingStatus.as_dict()`); the trainer node keeps the latest one per node in a `StatusBoard` and sends it
to the page as a server event. The board lives in memory and in `<user dir>/training_status.json`
(rewritten atomically), so a page reload — or a ComfyUI restart — shows the last status again.

Phases: `estimating` → `uploading` → `starting` (waiting for a GPU) → `processing` (loading FLUX, then the
steps) → `downloading` → `succeeded`; or `reused` (the same work was already trained), `failed`,
`canceled`, `aborted`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..storage import atomic_write_json, read_json

STATUS_FILE = "training_status.json"
KEEP = 50                                  # statuses kept on the board (the newest)
ENDED = frozenset({"succeeded", "reused", "failed", "canceled", "aborted"})
_boards: dict[Path, StatusBoard] = {}
_boards_lock = threading.Lock()


@dataclass
class TrainingStatus:
    """What one training is doing now; every field the canvas shows."""

    phase: str = "estimating"
    message: str = ""
    training_id: str = ""
    web_url: str = ""                      # the training's page on Replicate
    step: int = 0
    total: int = 0
    percent: int = 0
    elapsed: str = ""                      # the trainer's own clock (tqdm), e.g. "05:12"
    remaining: str = ""
    started: float = 0.0                   # epoch seconds when this run started following the training
    started_at: str = ""                   # when Replicate started running it (billing starts): RFC 3339
    estimated_usd: float | None = None
    cost_usd: float | None = None          # the real cost, once the training ended
    lora_file: str = ""
    trigger_word: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ended": self.phase in ENDED}


def status_board(user_dir: str | Path) -> StatusBoard:
    """The one board of a user folder (shared by the node that writes it and the route that reads it)."""
    path = (Path(user_dir) / STATUS_FILE).resolve()
    with _boards_lock:
        if path not in _boards:
            _boards[path] = StatusBoard(path)
        return _boards[path]


class StatusBoard:
    """The latest status of each training, by key (the trainer node's id); in memory and on disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        data = read_json(self.path, {}) or {}
        self._statuses: dict[str, dict] = data if isinstance(data, dict) else {}

    def update(self, key: str, status: dict[str, Any]) -> dict[str, Any]:
        """Stores `status` as the latest for `key` (stamped with `updated`) and saves the board."""
        entry = {**status, "key": str(key), "updated": time.time()}
        with self._lock:
            self._statuses[str(key)] = entry
            newest = sorted(self._statuses.items(), key=lambda kv: kv[1].get("updated", 0))[-KEEP:]
            self._statuses = dict(newest)
            atomic_write_json(self.path, self._statuses)
        return dict(entry)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            entry = self._statuses.get(str(key))
            return dict(entry) if entry else None

    def all(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._statuses.items()}
