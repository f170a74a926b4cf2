"""What the nodes take from the ComfyUI host: its folders, its progress bar and interrupt, its errors.

The only module of the pack (with the node schemas) that knows ComfyUI; `likeness/` gets plain values.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths

from ..likeness.money.credentials import redact
from ..likeness.errors import LikenessError
from ..likeness.identity.reference import CACHE_FOLDER
from ..likeness.progress import Interrupted
from ..likeness.storage import adopt_old_folder
from .users import may_send, prompt_client

log = logging.getLogger("likeness")
PACK_FOLDER = "likeness"


def user_dir() -> Path:
    """The pack's private folder (caches, ledgers, journal, key files): ComfyUI's system-user folder
    `user/__likeness`, which no HTTP route serves (ComfyUI refuses users named `__…`); on a host too old to
    have system users, `user/likeness`. What an earlier version kept in `user/likeness` is moved in."""
    root = Path(folder_paths.get_user_directory())
    system = getattr(folder_paths, "get_system_user_directory", None)
    path = Path(system(PACK_FOLDER)) if system else root / PACK_FOLDER
    if system:
        adopt_old_folder(root / PACK_FOLDER, path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def input_dir() -> Path:
    return Path(folder_paths.get_input_directory())


def output_dir() -> Path:
    return Path(folder_paths.get_output_directory())


def models_dir() -> Path:
    """ComfyUI's models folder (the identity backends look for `insightface/` in it)."""
    return Path(folder_paths.models_dir)


def identity_cache_dir() -> Path:
    """Where face embeddings are cached (by photo sha256, per backend)."""
    return user_dir() / CACHE_FOLDER


def loras_dir() -> Path:
    return Path(folder_paths.get_folder_paths("loras")[0])


class NodeProgress:
    """ComfyUI's progress bar and progress text for one node; safe to call from worker threads.

    Every change of the count reaches the page at once. ComfyUI 0.33's `ProgressBar` drops an update that
    comes within 100 ms (or 0.5 %) of the last one it sent, which suits a sampler's many steps but leaves a
    slow node's bar stale: captions finish in bunches and then the node waits, so the bar would show 1 of 12
    while 11 are done. The pack's slow nodes send few updates (one per photo, caption or poll), so each one
    goes to ComfyUI's progress hook directly — the hook ProgressBar itself calls, on every version. (A delayed
    "trailing" send could land after the node ended and mark it running again in 0.33's progress state.)
    """

    def __init__(self, node_id: str | None, total: int = 1):
        self.node_id = node_id
        self.bar = comfy.utils.ProgressBar(max(total, 1), node_id=node_id)
        self._interrupted = False
        self._sent: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def update(self, done: int, total: int, text: str = "") -> None:
        total = max(total, 1)
        done = min(max(done, 0), total)
        with self._lock:            # worker threads: a count and its text go out together, each count once
            if self._sent != (done, total):
                self._sent = (done, total)
                self._send(done, total)
            if text:
                self.text(text)

    def _send(self, done: int, total: int) -> None:
        self.bar.current, self.bar.total = done, total
        if self.bar.hook is None:
            return
        try:
            self.bar.hook(done, total, None, node_id=self.node_id)
        except comfy.model_management.InterruptProcessingException:
            # ComfyUI's progress hook raises an interrupt here (and clears it). Raised from here it would skip
            # the library's own check, which first cancels what it pays for (a prediction, a training).
            self._interrupted = True

    def text(self, text: str) -> None:
        from server import PromptServer  # the running server; absent when imported outside ComfyUI

        if PromptServer.instance is not None and self.node_id is not None and may_send():
            PromptServer.instance.send_progress_text(redact(text, user_dir()), self.node_id, prompt_client())

    def interrupted(self) -> bool:
        self._interrupted = self._interrupted or comfy.model_management.processing_interrupted()
        return self._interrupted


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns the library's errors into what ComfyUI shows: an interrupt, or one clear, redacted line."""
    try:
        yield
    except Interrupted:
        # ComfyUI's own interruption (the flag may be cleared already: the progress hook takes it)
        comfy.model_management.interrupt_current_processing(False)
        raise comfy.model_management.InterruptProcessingException() from None
    except LikenessError as exc:
        # same class, so the node shows "InputError: …"; the message is redacted, the traceback dropped
        raise type(exc)(redact(str(exc), user_dir())) from None


def executing_node_id() -> str | None:
    """The id of the node ComfyUI is asking now: a fingerprint gets no hidden inputs (ComfyUI 0.3.75)."""
    from comfy_execution.utils import get_executing_context

    context = get_executing_context()
    return str(context.node_id) if context is not None and context.node_id is not None else None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
