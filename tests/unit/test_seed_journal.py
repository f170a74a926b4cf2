"""The seed journal: records, favourites, replay lookup; and the trigger word put first."""
from __future__ import annotations

import json
import threading

import pytest

from likeness.errors import InputError
from likeness.seed_journal import JournalEntry, SeedJournal, put_trigger_first


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
