"""The seed journal: records, favourites, likeness scores, replay lookup, sorting and filtering; and the trigger
word put first."""
from __future__ import annotations

import json
import threading

import pytest

from likeness.errors import InputError
from likeness.generation.seed_journal import JournalEntry, SeedJournal, put_trigger_first, select_entries


def entry(seed=1, **kw):
    base = dict(prompt="pelarbues, a portrait", seed=seed, steps=35, guidance=2.75, width=1024, height=1024,
                stack=[{"lora": "me.safetensors", "strength": 0.9, "clip_strength": 0.9}])
    return JournalEntry(**{**base, **kw})


def test_records_round_trip_as_one_json_line_each(tmp_path):
    journal = SeedJournal(tmp_path)
    first = journal.record(entry(1))
    journal.record(entry(2, source="replicate", extra={"version": "owner/model:abc", "cost_usd": 0.03}))
    lines = journal.path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["type"] == "image"
    entries = journal.entries()
    assert [e.seed for e in entries] == [1, 2]
    assert entries[0].settings() == first.settings()
    assert entries[1].extra["version"] == "owner/model:abc"


def test_favourite_flag_is_appended_and_folded(tmp_path):
    journal = SeedJournal(tmp_path)
    a, b = journal.record(entry(1)), journal.record(entry(2))
    journal.set_favourite(a.id[:6])
    assert [e.id for e in journal.favourites()] == [a.id]
    journal.set_favourite(a.id, False)
    journal.set_favourite(b.id)
    assert [e.id for e in SeedJournal(tmp_path).favourites()] == [b.id]
    assert len(journal.path.read_text().splitlines()) == 5       # append-only


def test_find_by_id_prefix_last_and_favourite(tmp_path):
    journal = SeedJournal(tmp_path)
    with pytest.raises(InputError, match="no entry"):
        journal.find("")
    a, b = journal.record(entry(1, id="aaa111")), journal.record(entry(2, id="aab222"))
    assert journal.find("").id == b.id
    assert journal.find("last").id == b.id
    assert journal.find("aaa").id == a.id
    with pytest.raises(InputError, match="matches 2"):
        journal.find("aa")
    with pytest.raises(InputError, match="no favourite"):
        journal.find("favourite")
    journal.set_favourite(a.id)
    assert journal.find("favourite").id == a.id


def test_a_broken_line_is_skipped_not_fatal(tmp_path):
    journal = SeedJournal(tmp_path)
    journal.record(entry(1))
    with open(journal.path, "a") as f:
        f.write("{half a line\n")
    journal.record(entry(2))
    assert [e.seed for e in journal.entries()] == [1, 2]


def test_concurrent_writers_never_interleave(tmp_path):
    journal = SeedJournal(tmp_path)
    threads = [threading.Thread(target=lambda n=n: [journal.record(entry(n * 100 + i, prompt="x" * 5000))
                                                    for i in range(20)]) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(journal.entries()) == 80


def test_unknown_fields_from_newer_versions_are_ignored(tmp_path):
    journal = SeedJournal(tmp_path)
    with open(journal.path, "w") as f:
        f.write(json.dumps({"type": "image", **entry(5).to_dict(), "future_field": 1}) + "\n")
    assert journal.find().seed == 5


@pytest.mark.parametrize("prompt, words, expected", [
    ("a portrait of a man", "pelarbues, ink style", "pelarbues, a portrait of a man"),
    ("Pelarbues in a field", "pelarbues", "Pelarbues in a field"),
    ("An analog portrait of a Pelarbues man", "pelarbues", "pelarbues, An analog portrait of a Pelarbues man"),
    ("a portrait", "", "a portrait"),
    ("", "pelarbues", "pelarbues"),
])
def test_trigger_word_goes_first(prompt, words, expected):
    assert put_trigger_first(prompt, words) == expected


def test_an_entry_written_after_a_torn_line_is_kept(tmp_path):
    """A crash mid-append leaves half a line; the next image's entry starts a line of its own (issue 17, item 15)."""
    journal = SeedJournal(tmp_path)
    journal.record(entry(1))
    with open(journal.path, "a", encoding="utf-8") as f:
        f.write('{"type": "image", "seed": ')
    journal.record(entry(2))
    assert [e.seed for e in journal.entries()] == [1, 2]


def likeness(score, reason=""):
    return {"score": score, "backend": "dlib", "reason": reason, "distance": None, "same_person": None,
            "reference": "abc", "against": "the dataset"}


def test_a_score_given_later_is_appended_and_folded_and_is_not_a_setting(tmp_path):
    journal = SeedJournal(tmp_path)
    a, b = journal.record(entry(1)), journal.record(entry(2, likeness=likeness(None, "no face")))
    assert journal.find(a.id).likeness is None and journal.find(a.id).score is None
    journal.set_likeness(a.id, likeness(71.5))
    journal.set_likeness("not-an-entry", likeness(99.0))
    found = {e.id: e for e in SeedJournal(tmp_path).entries()}
    assert found[a.id].score == 71.5 and found[a.id].likeness["backend"] == "dlib"
    assert found[b.id].score is None and found[b.id].score_label() == "no face"
    assert "likeness 72" in found[a.id].summary() and "no face" in found[b.id].summary()
    assert "likeness" not in found[a.id].settings(), "a replay makes the image, not its score"
    assert len(journal.path.read_text().splitlines()) == 4       # append-only


def test_entries_sort_by_likeness_and_filter_favourites_by_score(tmp_path):
    journal = SeedJournal(tmp_path)
    made = [journal.record(entry(n, likeness=likeness(value) if value is not None else None))
            for n, value in enumerate([40.0, None, 80.0, 65.0, 80.0])]
    journal.set_favourite(made[0].id)
    journal.set_favourite(made[3].id)
    entries = journal.entries()
    assert [e.seed for e in select_entries(entries)] == [4, 3, 2, 1, 0]
    assert [e.seed for e in select_entries(entries, sort="likeness")] == [4, 2, 3, 0, 1], \
        "best first, a tie newest first, the unscored last"
    assert [e.seed for e in select_entries(entries, favourites=True, min_score=50)] == [3]
    assert [e.seed for e in select_entries(entries, min_score=80)] == [4, 2]
    with pytest.raises(InputError, match="sort must be one of newest, likeness"):
        select_entries(entries, sort="cost")
