"""How long-running library work reports progress and learns of an interrupt, without knowing ComfyUI."""
from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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


class ProgressRelay:
    """Progress for work done in other threads. Workers record what they did (`poke` when it changed) and ask
    `interrupted()`; the thread that owns the real Progress shows it and reads the user's interrupt in `watch`.
    Only that thread may touch a ComfyUI node's progress: its bar raises the user's interrupt in whichever thread
    updates it, and clears it, so a worker that updated it would stop alone and leave the others running."""

    refresh_s = 0.25                     # how often the shown progress may change, and the interrupt is read

    def __init__(self, progress: Progress):
        self.progress = progress
        self.stop, self.changed = threading.Event(), threading.Event()
        self.stopped_by: BaseException | None = None     # the host's interrupt, raised from its progress bar

    def interrupted(self) -> bool:
        return self.stop.is_set()

    def poke(self) -> None:
        self.changed.set()

    def show(self, done: int, total: int, text: str = "") -> None:
        """On the owning thread: `text` and the count on the progress. An interrupt the host raises from its bar
        stops the workers and is kept for `stopped`, so it is raised once they ended."""
        try:
            self.progress.update(done, total, text)
        except BaseException as exc:  # noqa: BLE001 - raised again by the caller, through `stopped`
            self.stopped_by = self.stopped_by or exc
            self.stop.set()

    def stopped(self, message: str) -> BaseException:
        """What to raise once the user stopped the work: the host's own interrupt, or Interrupted(message)."""
        return self.stopped_by or Interrupted(message)

    def watch(self, futures: list[Future], show: Callable[[], tuple[int, int, str]]) -> None:
        """Until every future is done: `show()`'s (done, total, text) on the progress when it changed, and the
        user's interrupt passed on to the workers."""
        shown = None
        while True:
            ended = all(f.done() for f in futures)
            if not self.stop.is_set() and self.progress.interrupted():
                self.stop.set()
            if not self.stop.is_set() and (now := show()) != shown:
                shown = now
                self.show(*now)
            if ended:
                return
            self.changed.wait(self.refresh_s)
            self.changed.clear()


def run_parallel(work: list[Callable[[], None]], relay: ProgressRelay, workers: int,
                 show: Callable[[], tuple[int, int, str]]) -> None:
    """Runs `work` in at most `workers` threads while this thread shows their progress; returns when all ended
    (an exception of one is raised after all ended; an exception here stops them through the relay first). After
    the user's interrupt the caller raises `relay.stopped(message)`."""
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(work) or 1)),
                            thread_name_prefix="likeness-worker") as pool:
        futures = [pool.submit(_then_poke, job, relay) for job in work]
        try:
            relay.watch(futures, show)
        except BaseException:
            relay.stop.set()             # every worker stops (a paid job is canceled); leaving the pool waits
            raise
        if relay.stopped_by is None:            # else the host's interrupt goes first (relay.stopped)
            for future in futures:
                future.result()


def _then_poke(job: Callable[[], None], relay: ProgressRelay) -> None:
    try:
        job()
    finally:
        relay.poke()
