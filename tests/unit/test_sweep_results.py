"""The sweep store the stack's `measured` mode reads: append-only, newest per pair of files, matched by content."""
from __future__ import annotations

import os

from likeness.loras.sweep_results import SweepRecord, SweepResults, lora_key, lora_sha256
from likeness.storage import sha256_file


def record(sweep_id="s1", personal="a" * 64, style="b" * 64, rec=(0.9, 0.2), time="2026-11-01T10:00:00+0000",
           **kw) -> SweepRecord:
    return SweepRecord(id=sweep_id, personal_name="me.safetensors", personal_sha256=personal,
                       style_name="film.safetensors", style_sha256=style, personal=[0.8, 0.9],
                       style=[0.0, 0.1, 0.2], likeness=[[72, 70, 66], [73, 71, 69]], recommended_personal=rec[0],
                       recommended_style=rec[1], recommended_likeness=69 if rec[0] else None,
                       reference_likeness=73, tolerance=5, text="...", time=time, **kw)


def test_the_newest_sweep_of_the_same_pair_wins(tmp_path):
    store = SweepResults(tmp_path)
    store.add(record("old", time="2026-11-01T10:00:00+0000"))
    store.add(record("other pair", style="c" * 64))
    store.add(record("new", rec=(0.8, 0.1), time="2026-11-02T10:00:00+0000"))
    found = SweepResults(tmp_path).newest("a" * 64, "b" * 64)
    assert found.id == "new" and (found.recommended_personal, found.recommended_style) == (0.8, 0.1)
    assert store.newest("a" * 64, "c" * 64).id == "other pair"
    assert store.newest("b" * 64, "a" * 64) is None                  # the personal row is the personal row
    assert len(store.path.read_text().splitlines()) == 3               # append-only


def test_a_sweep_that_found_nothing_is_stored_as_such(tmp_path):
    store = SweepResults(tmp_path)
    store.add(record(rec=(None, None)))
    found = store.newest("a" * 64, "b" * 64)
    assert not found.found and found.recommended_likeness is None


def test_rows_without_a_file_are_matched_by_name_and_cells_by_nearest_strength(tmp_path):
    store = SweepResults(tmp_path)
    store.add(record(personal="", style=""))
    assert store.newest(lora_key("", "me.safetensors"), lora_key("", "film.safetensors")).id == "s1"
    found = store.records()[0]
    assert found.likeness_at(0.9, 0.21) == 69 and found.likeness_at(0.78, 0.0) == 72


def test_a_line_torn_by_a_crash_is_skipped_and_the_next_record_kept(tmp_path):
    store = SweepResults(tmp_path)
    store.add(record("first"))
    with open(store.path, "a", encoding="utf-8") as f:
        f.write('{"id": "half a rec')
    store.add(record("second"))
    assert [r.id for r in store.records()] == ["first", "second"]
    assert len(store.path.read_text().splitlines()) == 3


def test_file_hashes_are_computed_once_per_file_version(tmp_path):
    path = tmp_path / "film.safetensors"
    path.write_bytes(b"one")
    first = lora_sha256(path)
    assert first == sha256_file(path)
    path.write_bytes(b"two!")                                          # replaced: another size and mtime
    os.utime(path, ns=(1, 1))
    assert lora_sha256(path) == sha256_file(path) != first
