"""LoRA files read once: changing a strength, the balance mode or the order never re-reads a file.

A module-level LRU keyed by (real path, size, mtime): V3 nodes have no instance state, and a module lives
as long as the ComfyUI process. A file that is replaced (new size or mtime) is read again. The cache is
bounded by bytes (a FLUX LoRA weighs 5 MB to 1.3 GB, so a count of files says nothing about memory): an
entry weighs its file's size, which is what its tensors take in memory. LIKENESS_LORA_CACHE_MB sets the
budget (default 2048; 0 keeps nothing); a file larger than the budget is read every time and evicts nothing.
The LoRAs of the stack in use cost nothing extra: the patched model holds the same tensors.
The loader is passed in (ComfyUI's `comfy.utils.load_torch_file` in the node), so this module knows no host.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("likeness")

FileKey = tuple[str, int, int]
BUDGET_ENV = "LIKENESS_LORA_CACHE_MB"
DEFAULT_BUDGET_MB = 2048


@dataclass
class CacheStats:
    reads: int = 0
    hits: int = 0


class LoraCache:
    def __init__(self, max_bytes: int | None = None):
        self.max_bytes = budget_bytes() if max_bytes is None else max_bytes
        self.stats = CacheStats()
        self._entries: OrderedDict[FileKey, Any] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def size_bytes(self) -> int:
        return sum(key[1] for key in self._entries)

    def get(self, path: str | os.PathLike, loader: Callable[[str], Any]) -> tuple[Any, bool]:
        """(contents, read_from_disk) for the file at `path`; `loader(real_path)` runs only on a miss."""
        key = file_key(path)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return self._entries[key], False
        value = loader(key[0])
        with self._lock:
            self.stats.reads += 1
            for stale in [k for k in self._entries if k[0] == key[0]]:
                del self._entries[stale]               # an older version of the same file
            if key[1] <= self.max_bytes:
                self._entries[key] = value
                while self.size_bytes > self.max_bytes:
                    self._entries.popitem(last=False)
        log.info("likeness: read LoRA %s (%d bytes)", os.path.basename(key[0]), key[1])
        return value, True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def budget_bytes() -> int:
    raw = os.environ.get(BUDGET_ENV, "").strip()
    try:
        megabytes = float(raw) if raw else DEFAULT_BUDGET_MB
    except ValueError:
        log.warning("likeness: %s=%r is not a number of megabytes; using %d", BUDGET_ENV, raw, DEFAULT_BUDGET_MB)
        megabytes = DEFAULT_BUDGET_MB
    return max(0, int(megabytes * 1024 * 1024))


def file_key(path: str | os.PathLike) -> FileKey:
    real = os.path.realpath(path)
    st = os.stat(real)
    return real, st.st_size, st.st_mtime_ns


# The process-wide cache the LoRA stack node uses.
LORA_FILES = LoraCache()
