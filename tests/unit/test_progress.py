"""ProgressRelay and run_parallel: workers report, one thread shows, and the user's interrupt reaches them all."""
from __future__ import annotations

import threading

import pytest

from likeness.progress import ProgressRelay, run_parallel


class ComfyLikeProgress:
    """Like a ComfyUI node's progress: updating it while interrupted raises, and clears the interrupt."""

    def __init__(self):
        self.flag = False
        self.threads: set[int] = set()
        self.updates: list[tuple[int, int, str]] = []

    def update(self, done, total, text=""):
        self.threads.add(threading.get_ident())
        if self.flag:
            self.flag = False
            raise RuntimeError("interrupted (and the flag is gone)")
        self.updates.append((done, total, text))

    def interrupted(self):
        return self.flag


def test_only_the_calling_thread_updates_and_the_last_state_is_shown():
    progress = ComfyLikeProgress()
    relay = ProgressRelay(progress)
    done: list[int] = []
    lock = threading.Lock()

    def job(i):
        with lock:
            done.append(i)
        relay.poke()

    run_parallel([lambda i=i: job(i) for i in range(6)], relay, 3, lambda: (len(done), 6, f"{len(done)} done"))
    assert progress.threads == {threading.get_ident()}
    assert progress.updates[-1] == (6, 6, "6 done")


def test_an_interrupt_reaches_every_worker_even_though_the_progress_clears_it():
    progress = ComfyLikeProgress()
    relay = ProgressRelay(progress)
    started = threading.Barrier(4)
    stopped: list[int] = []

    def job(i):
        started.wait(timeout=30)
        while not relay.interrupted():          # a training being followed until the user stops it
            relay.stop.wait(0.01)
        stopped.append(i)

    def user_presses_cancel():
        started.wait(timeout=30)
        progress.flag = True

    threading.Thread(target=user_presses_cancel).start()
    run_parallel([lambda i=i: job(i) for i in range(3)], relay, 3, lambda: (0, 1, "running"))
    assert sorted(stopped) == [0, 1, 2]


def test_a_workers_error_is_raised_after_the_others_ended():
    relay = ProgressRelay(ComfyLikeProgress())
    ended = []

    def bad():
        raise ValueError("broken")

    def good():
        ended.append(True)

    with pytest.raises(ValueError, match="broken"):
        run_parallel([bad, good, good], relay, 2, lambda: (0, 1, ""))
    assert ended == [True, True]


class RaisingBar(ComfyLikeProgress):
    """A host whose bar raises the interrupt with no flag to read before (the user pressed Cancel just now)."""

    def interrupted(self):
        return False


def test_an_interrupt_the_host_raises_from_its_bar_stops_every_worker_and_is_raised_before_their_errors():
    progress = RaisingBar()
    progress.flag = True                          # the next update raises, once
    relay = ProgressRelay(progress)
    stopped: list[int] = []

    def job(i):
        while not relay.interrupted():            # never true through the progress: only the raise tells
            relay.stop.wait(0.01)
        stopped.append(i)
        raise ValueError("canceled on Replicate")

    run_parallel([lambda i=i: job(i) for i in range(2)], relay, 2, lambda: (0, 1, "running"))
    assert sorted(stopped) == [0, 1]
    assert isinstance(relay.stopped("stopped"), RuntimeError) and relay.stopped("stopped") is relay.stopped_by
