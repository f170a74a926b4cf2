"""What the nodes take from the ComfyUI host: its folders, its progress bar and interrupt, its errors.

The only module of the pack (with the node schemas) that knows ComfyUI; `likeness/` gets plain values.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths

from ..likeness.credentials import redact
from ..likeness.errors import LikenessError
from ..likeness.progress import Interrupted

log = logging.getLogger("likeness")


def user_dir() -> Path:
    """The pack's private folder in ComfyUI's user directory (caches, ledgers, journal, key files).

    It sits beside `user/default`, so ComfyUI's /userdata routes (scoped to `user/<user>/`) never serve it.
    """
    path = Path(folder_paths.get_user_directory()) / "likeness"
    path.mkdir(parents=True, exist_ok=True)
    return path


def input_dir() -> Path:
    return Path(folder_paths.get_input_directory())


def output_dir() -> Path:
    return Path(folder_paths.get_output_directory())


def loras_dir() -> Path:
    return Path(folder_paths.get_folder_paths("loras")[0])


class NodeProgress:
    """ComfyUI's progress bar and progress text for one node; safe to call from worker threads."""

    def __init__(self, node_id: str | None, total: int = 1):
        self.node_id = node_id
        self.bar = comfy.utils.ProgressBar(max(total, 1), node_id=node_id)

    def update(self, done: int, total: int, text: str = "") -> None:
        self.bar.update_absolute(done, max(total, 1))
        if text:
            self.text(text)

    def text(self, text: str) -> None:
        from server import PromptServer  # the running server; absent when imported outside ComfyUI

        if PromptServer.instance is not None and self.node_id is not None:
            PromptServer.instance.send_progress_text(redact(text, user_dir()), self.node_id)

    def interrupted(self) -> bool:
        return comfy.model_management.processing_interrupted()


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns the library's errors into what ComfyUI shows: an interrupt, or one clear, redacted line."""
    try:
        yield
    except Interrupted:
        comfy.model_management.throw_exception_if_processing_interrupted()
        raise
    except LikenessError as exc:
        # same class, so the node shows "InputError: …"; the message is redacted, the traceback dropped
        raise type(exc)(redact(str(exc), user_dir())) from None


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
