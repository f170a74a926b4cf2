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
