"""Likeness scores on real faces: the same person above the threshold line, others below, no made-up numbers."""
from __future__ import annotations

import pytest

from tools import real_faces
from likeness.errors import InputError
from likeness.identity import (ReferenceIdentity, best_first, likeness_from_distance, load_backend,
                               reference_from_photos, score_images, score_table)
from likeness.identity.scoring import SCORE_BATCH


@pytest.fixture(scope="module")
def backend():
    return load_backend("dlib")


@pytest.fixture(scope="module")
def reference(backend):
    folder = real_faces.faces_dir()
    return reference_from_photos([folder / "obama.jpg", folder / "obama2.jpg"], backend)


def test_the_same_person_scores_above_the_line_and_others_below(reference, backend):
    images = [real_faces.image("biden.jpg"), real_faces.image("obama3.jpg"), real_faces.astronaut(),
              real_faces.image("Tom_Hanks_54745.png")]
    scores = score_images(images, reference, backend)
    same, others = scores[1], [scores[0], scores[2], scores[3]]
    assert same.likeness > 50 and same.same_person is True
    assert all(s.likeness < 50 and s.same_person is False for s in others)
    assert same.likeness > max(s.likeness for s in others) + 20
    assert best_first(scores)[0] == 1
    assert {s.backend for s in scores} == {"dlib"} and same.face is not None


def test_no_face_and_several_faces_are_reported_not_scored(reference, backend):
    scores = score_images([real_faces.scene_without_face(), real_faces.image(real_faces.GROUP),
                           real_faces.image("obama3.jpg")], reference, backend)
    assert (scores[0].likeness, scores[0].reason, scores[0].faces) == (None, "no face", 0)
    assert scores[1].likeness is None and scores[1].reason == f"several faces ({scores[1].faces})"
    assert scores[1].faces >= 3
    assert best_first(scores) == [2, 0, 1]


def test_the_number_is_100_at_zero_50_at_the_threshold_and_0_at_twice_it():
    assert likeness_from_distance(0.0, 0.6) == 100
    assert likeness_from_distance(0.6, 0.6) == pytest.approx(50)
    assert likeness_from_distance(0.3, 0.6) == pytest.approx(75)
    assert likeness_from_distance(1.5, 0.6) == 0


def test_a_reference_of_another_backend_is_refused(reference, backend):
    other = ReferenceIdentity.from_dict({**reference.to_dict(), "backend": "arcface-glintr100"})
    with pytest.raises(InputError, match="arcface-glintr100"):
        score_images([real_faces.image("obama3.jpg")], other, backend)


def test_the_table_ranks_best_first_and_explains_the_number(reference, backend):
    scores = score_images([real_faces.image("biden.jpg"), real_faces.image("obama3.jpg"),
                           real_faces.scene_without_face()], reference, backend)
    table = score_table(scores, reference, backend).splitlines()
    assert "50 = same-person threshold" in table[0]
    assert table.pop(1) == "Reference faces: 2 embedded now, 0 from the cache."
    assert table[2].split()[:2] == ["1", "2"] and table[2].endswith("same person")
    assert table[3].split()[:2] == ["2", "1"] and table[3].endswith("not the same person")
    assert table[4].endswith("no face")
    assert "reference photos score" in table[5]


def test_an_interrupt_stops_scoring_and_progress_counts_the_images(reference, backend):
    from likeness.progress import Interrupted

    class StopAfterOne:
        updates: list = []

        def update(self, done, total, text=""):
            self.updates.append((done, total, text))

        def interrupted(self):
            return bool(self.updates)

    progress = StopAfterOne()
    count = SCORE_BATCH + 2                     # images are scored a batch at a time: it stops after the first
    with pytest.raises(Interrupted, match=f"after {SCORE_BATCH} of {count} images"):
        score_images([real_faces.image("obama3.jpg")] * count, reference, backend, progress)
    assert progress.updates == [(SCORE_BATCH, count, f"scored {SCORE_BATCH} of {count} images")]
