"""How long-running library work reports progress and learns of an interrupt, without knowing ComfyUI."""
from __future__ import annotations

from typing import Protocol

from .errors import LikenessError


class Progress(Protocol):
    def update(self, done: int, total: int, text: str = "") -> None:
        """Advance the progress bar to `done` of `total` and show `text` on the node."""

    def interrupted(self) -> bool:
        """True once the user asked to stop (ComfyUI's interrupt)."""


class Interrupted(LikenessError):
    """The user interrupted the run; what was finished is kept."""


class SilentProgress:
    """A Progress for callers that show nothing (benchmarks, unit tests)."""

    def update(self, done: int, total: int, text: str = "") -> None:
        pass

    def interrupted(self) -> bool:
        return False
