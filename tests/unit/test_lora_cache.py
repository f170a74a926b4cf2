"""The LoRA file cache: a file is read once until it changes on disk."""
from __future__ import annotations

import os

from likeness.lora_cache import LoraCache


def test_second_get_is_a_hit_and_a_changed_file_is_read_again(tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"one")
    reads = []
    cache = LoraCache()

    def loader(p):
        reads.append(p)
        return open(p, "rb").read()

    assert cache.get(path, loader) == (b"one", True)
    assert cache.get(tmp_path / "." / "a.safetensors", loader) == (b"one", False)
    assert len(reads) == 1 and cache.stats.hits == 1
    path.write_bytes(b"three")
    assert cache.get(path, loader) == (b"three", True)
    assert len(cache) == 1                                   # the stale version was dropped


def test_same_size_and_mtime_counts_as_unchanged(tmp_path):
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"one")
    cache = LoraCache()
    cache.get(path, lambda p: b"one")
    st = os.stat(path)
    path.write_bytes(b"two")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.get(path, lambda p: b"two") == (b"one", False)


def test_least_recently_used_entries_are_evicted(tmp_path):
    cache = LoraCache(max_entries=2)
    for name in "abc":
        (tmp_path / name).write_bytes(name.encode())
        cache.get(tmp_path / name, lambda p: p)
    assert len(cache) == 2
    assert cache.get(tmp_path / "a", lambda p: "again")[1] is True
