"""A likeness Progress for library tests: records what the node would show, plays the user's stop or a crash."""
from __future__ import annotations

from collections.abc import Callable

When = Callable[[int, int, str], bool]


class RecordingProgress:
    """`interrupt_when(done, total, text)` plays ComfyUI's interrupt; `crash_when(...)` kills the process."""

    def __init__(self, interrupt_when: When | None = None, crash_when: When | None = None):
        self.updates: list[tuple[int, int, str]] = []
        self.texts: list[str] = []
        self.interrupt_when, self.crash_when, self.stop = interrupt_when, crash_when, False

    def update(self, done: int, total: int, text: str = "") -> None:
        self.updates.append((done, total, text))
        if self.interrupt_when and self.interrupt_when(done, total, text):
            self.stop = True
        if self.crash_when and self.crash_when(done, total, text):
            raise KeyboardInterrupt("ComfyUI died")

    def interrupted(self) -> bool:
        return self.stop

    def text(self, text: str) -> None:
        self.texts.append(text)
