from __future__ import annotations

import os

import pytest

from likeness.errors import InputError
from likeness.storage import atomic_write_bytes, atomic_write_json, confine, is_inside, read_json, sha256_file


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failed_write_keeps_old_file(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert read_json(target) == {"a": 1}
    assert len(list(tmp_path.iterdir())) == 1


def test_read_json_default_and_bad_json(tmp_path):
    assert read_json(tmp_path / "missing.json", default=[]) == []
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InputError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_confine_refuses_dotdot_and_symlinks_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (root / "ok").mkdir()
    os.symlink(outside, root / "link")
    assert confine(root / "ok", [root]) == (root / "ok").resolve()
    assert not is_inside(root / ".." / "outside", root)
    assert not is_inside(root / "link", root)
    assert not is_inside(str(root) + "-sibling", root)
    with pytest.raises(InputError, match="outside the folders"):
        confine(root / "link", [root], "dataset folder")


def test_the_old_data_folder_is_moved_into_the_new_one_and_nothing_is_lost(tmp_path, caplog):
    """Existing users' data in user/likeness stays readable: moved into the system-user folder user/__likeness
    (issue 17, item 14); a file already in the new folder wins and the old one is left, named in the log."""
    from likeness.storage import adopt_old_folder

    old, new = tmp_path / "likeness", tmp_path / "__likeness"
    (old / "caption_cache" / "ab").mkdir(parents=True)
    (old / "caption_cache" / "ab" / "abc.json").write_text("{}")
    (old / "spend.jsonl").write_text('{"usd": 1}\n')
    (old / "replicate_api_token").write_text("r8_" "x" * 30)
    adopt_old_folder(old, new)
    assert not old.exists()
    assert (new / "spend.jsonl").read_text() == '{"usd": 1}\n' and (new / "caption_cache" / "ab" / "abc.json").exists()
    assert (new / "replicate_api_token").exists()
    adopt_old_folder(old, new)                                       # nothing left to move: nothing happens
    old.mkdir()                                                      # someone follows an old note later
    (old / "gemini_api_key").write_text("AIza" "y" * 35)
    (old / "spend.jsonl").write_text("stale\n")
    with caplog.at_level("WARNING", logger="likeness"):
        adopt_old_folder(old, new)
    assert (new / "gemini_api_key").exists() and not (old / "gemini_api_key").exists()
    assert (new / "spend.jsonl").read_text() == '{"usd": 1}\n' and (old / "spend.jsonl").exists()
    assert "spend.jsonl" in caplog.text and "AIza" not in caplog.text
