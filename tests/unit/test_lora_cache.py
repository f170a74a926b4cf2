"""The LoRA file cache: a file is read once until it changes on disk."""
from __future__ import annotations

import os

from likeness.loras.lora_cache import LoraCache


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


def _files(tmp_path, sizes: dict[str, int]):
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)


def test_the_cache_is_bounded_by_bytes_least_recently_used_first(tmp_path):
    """FLUX LoRAs weigh 100 MB–1.3 GB: the cache holds bytes, not a count of files (issue 17, item 17)."""
    _files(tmp_path, {"a": 400, "b": 400, "c": 400})
    cache = LoraCache(max_bytes=1000)
    for name in "ab":
        cache.get(tmp_path / name, lambda p: p)
    cache.get(tmp_path / "a", lambda p: p)                       # a is now the most recently used
    cache.get(tmp_path / "c", lambda p: p)                       # 1200 bytes > 1000: b goes, not a
    assert len(cache) == 2 and cache.size_bytes == 800
    assert cache.get(tmp_path / "a", lambda p: "again")[1] is False
    assert cache.get(tmp_path / "b", lambda p: "again")[1] is True


def test_many_small_loras_stay_and_one_larger_than_the_budget_is_never_kept(tmp_path):
    _files(tmp_path, {f"small{i}": 10 for i in range(12)} | {"huge": 5000})
    cache = LoraCache(max_bytes=1000)
    for i in range(12):
        cache.get(tmp_path / f"small{i}", lambda p: p)
    assert len(cache) == 12                                       # twelve small files fit: no count limit
    assert cache.get(tmp_path / "huge", lambda p: "huge") == ("huge", True)
    assert cache.get(tmp_path / "huge", lambda p: "huge again") == ("huge again", True)
    assert len(cache) == 12 and cache.size_bytes == 120           # the huge one evicted nothing


def test_the_budget_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LIKENESS_LORA_CACHE_MB", "3")
    assert LoraCache().max_bytes == 3 * 1024 * 1024
    monkeypatch.setenv("LIKENESS_LORA_CACHE_MB", "0")
    _files(tmp_path, {"a": 10})
    cache = LoraCache()
    cache.get(tmp_path / "a", lambda p: p)
    assert len(cache) == 0                                       # 0: nothing is kept
