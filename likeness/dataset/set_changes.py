"""Whether a prepared set changed on disk since a node last ran on it: a caption edited in the review editor
(or a text editor) after a run, a photo replaced by hand. The captioner's and the trainer's ComfyUI
fingerprints are made of this, so ComfyUI's cache never serves a LoRA trained on the old captions.

ComfyUI asks a node's fingerprint before it runs, with its widget values only (a linked input such as the
dataset is not there yet), and re-runs the node when the value differs from the one its cached output was made
with. So `SetWatch` remembers, per node, the set it last ran on, what it answered for that run and what the set
looked like after it: the same answer while the set is unchanged (ComfyUI's cache holds), a new one when it
changed (the node runs again). A run that left work undone (a caption that failed after its retries) asks to
run again: the user's "queue again to retry" must reach the node, not the cache. Memory only: after a restart
ComfyUI's cache is empty anyway.
"""
from __future__ import annotations

import hashlib
import os
import threading
import uuid
from dataclasses import dataclass

from . import Dataset


def set_fingerprint(dataset: Dataset) -> str:
    """What the set holds now: each photo's file (size, modification time) and each caption's text."""
    digest = hashlib.sha256(dataset.trigger_word.encode())
    for item in sorted(dataset.items, key=lambda i: i.image):
        digest.update(f"\0{item.image}\0{_stat(dataset.image_path(item))}\0".encode())
        try:
            digest.update(dataset.caption_path(item).read_bytes())
        except OSError:
            digest.update(b"\0no caption")
    return digest.hexdigest()


@dataclass(frozen=True)
class _Run:
    answered: str            # the fingerprint ComfyUI got for that run
    after: str               # the set's fingerprint once the run was done (the captioner writes captions)
    dataset: Dataset


class SetWatch:
    """One per node type: `fingerprint(node_id)` for ComfyUI, `ran(node_id, dataset)` at the end of a run."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}
        self._answered: dict[str, str] = {}
        self._lock = threading.Lock()

    def fingerprint(self, node_id: str | None) -> str:
        """The same value while the set the node last ran on is unchanged; a new one once it changed."""
        if not node_id:
            return ""
        with self._lock:
            run = self._runs.get(node_id)
        answer = "" if run is None else run.answered
        if run is not None:
            now = set_fingerprint(run.dataset)
            if now != run.after:
                answer = now
        with self._lock:
            self._answered[node_id] = answer
        return answer

    def ran(self, node_id: str | None, dataset: Dataset, unfinished: bool = False) -> None:
        """Remembers the set `node_id` has just run on, as it is now; `unfinished`: the next queue runs the node
        again even with the set unchanged."""
        if not node_id:
            return
        with self._lock:
            answered = f"again-{uuid.uuid4().hex}" if unfinished else self._answered.get(node_id, "")
            self._runs[node_id] = _Run(answered, set_fingerprint(dataset), dataset)


def _stat(path: os.PathLike) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"
