"""run_sweep without ComfyUI: local images never generated twice (the journal), Replicate images through the
sampler's own generate() against the fake (real faces), progress per cell, and an interrupt — including one the
host raises from its progress bar — canceling every prediction in flight."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fakes.replicate import FLUX_DEV_LORA
from tools import real_faces
from harness.progress import RecordingProgress
from likeness.errors import BudgetError
from likeness.generation.seed_journal import JournalEntry, SeedJournal
from likeness.generation.strength_sweep import LoraRef, sweep_grid
from likeness.generation.sweep_runs import SweepRequest, run_sweep
from likeness.identity import load_backend, reference_from_photos
from likeness.loras.sweep_results import SweepResults

CREATE = rf"^/v1/models/{FLUX_DEV_LORA}/predictions$"
ME = LoraRef("likeness-tester/pelarbues")                                  # Replicate fetches these by name
FILM = LoraRef("https://civitai.com/api/download/models/99001")


@pytest.fixture(scope="module")
def scorer():
    backend = load_backend("dlib")
    folder = real_faces.faces_dir()
    return backend, reference_from_photos([folder / "obama2.jpg", folder / "obama3.jpg"], backend)


@pytest.fixture
def fake(replicate_fake, monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN", replicate_fake.token)
    for name, value in replicate_fake.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LIKENESS_MONTHLY_BUDGET_USD", raising=False)
    replicate_fake.use_images(lambda model, version, inputs, i: real_faces.styled_portrait(inputs, i))
    return replicate_fake


def request(where="replicate", personal=(0.8, 1.0, 2), style=(0.1, 0.3, 2), **kw) -> SweepRequest:
    return SweepRequest(ME, FILM, sweep_grid(personal, style), ("a portrait of pelarbues",), (1234,), where,
                        trigger_words="pelarbues", steps=28, **kw)


# --- local ---------------------------------------------------------------------------------------------------
class Render:
    """Stands in for the node's call into the FLUX sampler: an image made from the job, and its journal entry."""

    def __init__(self):
        self.calls = []

    def __call__(self, job):
        self.calls.append((job.personal, job.style))
        pixels = np.zeros((32, 48, 3), np.float32)
        pixels[..., 0], pixels[..., 1] = job.personal / 2, job.style
        return pixels, JournalEntry(prompt=job.prompt, seed=job.seed, steps=28, guidance=2.75, width=48, height=32)


def test_local_images_are_journaled_once_and_read_back_on_the_next_run(tmp_path, scorer):
    backend, reference = scorer
    render = Render()
    first = run_sweep(request("local", local_identity="tiny"), user_dir=tmp_path, reference=reference,
                      backend=backend, render=render)
    assert len(render.calls) == 6 and (first.generated, first.reused) == (6, 0)      # 2 × (personal-only + 2)
    entries = SeedJournal(tmp_path).entries()
    assert len(entries) == 6 and all(e.extra["sweep"] == first.id and e.images for e in entries)
    assert {c.label for c in first.cells} == {"no face"}

    second = run_sweep(request("local", local_identity="tiny"), user_dir=tmp_path, reference=reference,
                       backend=backend, render=render)
    assert len(render.calls) == 6 and (second.generated, second.reused) == (0, 6)
    assert second.id == first.id
    for a, b in zip(first.cells, second.cells):
        assert np.array_equal(a.images[0].image, b.images[0].image)               # the same stored pixels

    wider = run_sweep(request("local", personal=(0.8, 1.0, 3), local_identity="tiny"), user_dir=tmp_path,
                      reference=reference, backend=backend, render=render)
    assert render.calls[6:] == [(0.9, 0.0), (0.9, 0.1), (0.9, 0.3)] and wider.reused == 6

    run_sweep(request("local", local_identity="another model"), user_dir=tmp_path, reference=reference,
              backend=backend, render=render)
    assert len(render.calls) == 9 + 6                                   # another model: every image is new
    assert len(SweepResults(tmp_path).records()) == 4


def test_a_local_interrupt_stops_between_images_and_keeps_what_was_made(tmp_path, scorer):
    backend, reference = scorer
    render = Render()
    progress = RecordingProgress(interrupt_when=lambda done, total, text: done >= 2)
    with pytest.raises(Exception, match="stopped after 2 of 6 images"):
        run_sweep(request("local"), user_dir=tmp_path, reference=reference, backend=backend, render=render,
                  progress=progress)
    assert len(render.calls) == 2 and len(SeedJournal(tmp_path).entries()) == 2


# --- Replicate ---------------------------------------------------------------------------------------------
def test_replicate_images_are_scored_and_the_node_sees_every_cell(fake, tmp_path, scorer):
    backend, reference = scorer
    progress = RecordingProgress()
    result = run_sweep(request(), user_dir=tmp_path, reference=reference, backend=backend, progress=progress)
    assert fake.count("POST", CREATE) == 6 and result.generated == 6
    grid = result.likeness_grid()
    assert all(v is not None for row in grid for v in row)
    assert all(row[0] > row[2] for row in grid)                       # style 0.3 costs likeness
    assert result.cost_usd == pytest.approx(6 * 0.032) and result.estimate_usd == pytest.approx(6 * 0.032)
    first, last = progress.updates[0], progress.updates[-1]
    assert "6 images on Replicate (6 new, 0 stored), 4 at a time: about $0.19 and 23 s" in first[2]
    assert last[:2] == (6, 6) and "personal \\ style" in last[2]
    assert all(label in last[2] for label in (c.label for c in result.cells))
    assert any("·" in text for _, _, text in progress.updates)          # cells waiting their turn were shown

    again = run_sweep(request(), user_dir=tmp_path, reference=reference, backend=backend)
    assert fake.count("POST", CREATE) == 6 and again.reused == 6 and again.likeness_grid() == grid


def test_the_budget_is_checked_for_the_whole_sweep_before_any_request(fake, tmp_path, scorer, monkeypatch):
    backend, reference = scorer
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", "0.1")
    with pytest.raises(BudgetError, match=r"6 new FLUX images.*\$0\.19,"):
        run_sweep(request(), user_dir=tmp_path, reference=reference, backend=backend)
    assert fake.requests == []


class HostInterrupt(Exception):
    """What ComfyUI's progress bar raises once the user pressed Cancel (and it clears its flag as it does)."""


class RaisingProgress(RecordingProgress):
    def __init__(self, fake):
        super().__init__()
        self.fake, self.raised = fake, False

    def update(self, done, total, text=""):
        super().update(done, total, text)
        if not self.raised and self.fake.count("POST", CREATE) >= 2:
            self.raised = True
            raise HostInterrupt("interrupted")

    def interrupted(self):
        return False                                                  # the flag is gone once the bar raised


def test_an_interrupt_raised_by_the_hosts_progress_bar_cancels_every_prediction_in_flight(fake, tmp_path, scorer):
    backend, reference = scorer
    fake.prediction_plan = replace(fake.prediction_plan, sync=False, stall_at_tick=1)
    with pytest.raises(HostInterrupt):
        run_sweep(request(), user_dir=tmp_path, reference=reference, backend=backend,
                  progress=RaisingProgress(fake), in_flight=2)
    assert fake.count("POST", CREATE) == 2                            # two in flight, none started after
    assert fake.count("POST", r"/cancel$") == 2
    assert {fake.prediction(i)["status"] for i in fake.prediction_ids()} == {"canceled"}
