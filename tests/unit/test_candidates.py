"""Best of N on Replicate against the fake: candidates packed into predictions at the model's num_outputs limit,
their whole cost checked before the first is paid, never paid twice, and scored into the journal (real faces
behind the fake's outputs) most alike first."""
from __future__ import annotations

import pytest

from harness.progress import RecordingProgress
from fakes.replicate import FLUX_DEV_LORA
from likeness.errors import BudgetError
from likeness.generation.candidates import candidate_runs, generate_candidates, score_candidates
from likeness.generation.remote_generation import GenerationSettings, PollSettings
from likeness.generation.sampler_scores import Scorer
from likeness.generation.seed_journal import SEED_LIMIT, SeedJournal
from likeness.identity import load_backend, reference_from_photos
from likeness.money.prices import format_usd
from likeness.progress import Interrupted
from tools import real_faces

FAST = PollSettings(interval=0.001, check_every=0.001)
CREATE = rf"^/v1/models/{FLUX_DEV_LORA}/predictions$"
PER_IMAGE = 0.032


@pytest.fixture
def fake(replicate_fake, monkeypatch):
    monkeypatch.setenv("REPLICATE_BASE_URL", replicate_fake.url)
    monkeypatch.delenv("LIKENESS_MONTHLY_BUDGET_USD", raising=False)
    return replicate_fake


@pytest.fixture
def run(fake, replicate_api, tmp_path):
    def go(candidates: int, progress=None, **changes):
        settings = GenerationSettings("an analog portrait of a man", trigger_words="pelarbues", seed=100,
                                      lora_weights="someone/face", **changes)
        return generate_candidates(settings, candidates, user_dir=tmp_path / "user", api=replicate_api, poll=FAST,
                                   wait_s=10, progress=progress or RecordingProgress())
    return go


def test_candidates_fill_predictions_up_to_the_limit_with_the_next_seeds():
    settings = GenerationSettings("p", seed=SEED_LIMIT - 2)
    runs = candidate_runs(settings, 10, 4)
    assert [(r.seed, r.num_outputs) for r in runs] == [(SEED_LIMIT - 2, 4), (SEED_LIMIT - 1, 4), (0, 2)]
    assert [(r.seed, r.num_outputs) for r in candidate_runs(settings, 3, 1)] == [(SEED_LIMIT - 2, 1),
                                                                                  (SEED_LIMIT - 1, 1), (0, 1)]


def test_six_candidates_are_two_predictions_their_cost_said_before_and_a_requeue_pays_nothing(fake, run, tmp_path):
    progress = RecordingProgress()
    made = run(6, progress)
    assert fake.count("POST", CREATE) == 2
    assert [(p["input"]["seed"], p["input"]["num_outputs"]) for p in map(fake.prediction, fake.prediction_ids())] \
        == [(100, 4), (101, 2)]
    first_text = progress.texts[0]
    assert first_text.startswith("6 candidate FLUX images on Replicate") and \
        f"about {format_usd(6 * PER_IMAGE)} for 2 new" in first_text, "the whole cost, before the first prediction"
    assert made.estimate == pytest.approx(6 * PER_IMAGE) and made.cost == pytest.approx(6 * PER_IMAGE)
    entries = [SeedJournal(tmp_path / "user").find(i) for r in made.results for i in r.journal_ids]
    assert len(entries) == 6 and len({e.id for e in entries}) == 6, "every candidate is in the journal"

    again = run(6)
    assert fake.count("POST", CREATE) == 2 and again.stored == 2 and again.cost == 0
    assert f"(2 stored, nothing paid for them): cost {format_usd(0)} for 0 new" in again.summary()
    assert [r.journal_ids for r in again.results] == [r.journal_ids for r in made.results]


def test_a_budget_below_all_the_candidates_refuses_before_the_first_is_paid(fake, run, monkeypatch):
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", str(5 * PER_IMAGE))      # room for 5 of the 6
    with pytest.raises(BudgetError):
        run(6)
    assert fake.count("POST", CREATE) == 0


def test_an_interrupt_between_predictions_keeps_the_first_and_the_requeue_pays_only_the_rest(fake, run, tmp_path):
    class StopAfterOne(RecordingProgress):
        def interrupted(self) -> bool:                  # Cancel pressed once the first prediction is journaled
            return (tmp_path / "user" / "seed_journal.jsonl").exists()

    with pytest.raises(Interrupted, match="Stopped after 1 of 2 predictions"):
        run(5, StopAfterOne())
    assert fake.count("POST", CREATE) == 1
    made = run(5)
    assert fake.count("POST", CREATE) == 2 and made.stored == 1


def test_candidates_are_scored_into_the_journal_most_alike_first_and_not_scored_twice(fake, run, tmp_path):
    """The fake's images are real photos: prediction 100's are of the reference person, 101's of someone else."""
    people = {100: ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama.jpg"), 101: ("biden.jpg", "obama2.jpg")}
    fake.use_images(lambda model, version, inputs, i: real_faces.image(people[inputs["seed"]][i]))
    backend = load_backend("dlib")
    reference = reference_from_photos([real_faces.faces_dir() / n for n in ("obama2.jpg", "obama3.jpg")], backend)
    scorer = Scorer(reference, backend, "two photos")
    journal = SeedJournal(tmp_path / "user")

    made = run(6)
    scored = score_candidates(made, scorer, journal, RecordingProgress())
    assert scored.scored_now == 6
    order = scored.order()
    assert scored.entries[order[-1]].extra["output"] == 0 and scored.entries[order[-1]].seed == 101, \
        "the other person comes last"
    values = [scored.scores[i].likeness for i in order]
    assert values == sorted(values, reverse=True) and values[0] > 50 > values[-1]
    assert [journal.find(scored.entries[i].id).score for i in order] == values, "each score is in its entry"
    assert scored.order(keep=2) == order[:2]
    text = scored.report(made, scorer.describe(), keep=2)
    assert "Best of 6, most alike first (kept the best 2; all of them are in the seed journal):" in text
    assert "  6. seed 101 image 1 · " in text and "(not kept)" in text

    again = score_candidates(run(6), scorer, journal)
    assert again.scored_now == 0 and again.order() == order, "stored and scored before: nothing computed again"
