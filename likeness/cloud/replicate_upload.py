"""Uploading a file to Replicate's Files API without hanging the node: streamed from disk, with progress, a
stall timeout and Cancel noticed at once.

The SDK's `files.create` posts with `timeout=None`, so a link that stops moving blocks it for ever, and an
interrupt is not seen until it returns. Here the same multipart POST (one part named `content`, as the SDK
sends it) runs in a worker thread through the SDK's own authenticated client, while the caller watches it:
the bytes read so far show as progress; no progress for `stall_s` seconds (body stuck, or no answer after it)
is a stall; an interrupt stops waiting at once. Either way nothing was paid — a file costs nothing — and the
worker is left to end on its own socket timeouts.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from ..errors import ServiceError
from ..progress import Interrupted, Progress
from .replicate_client import ReplicateApi, json_answer

DEFAULT_STALL_S = 60.0
CHECK_EVERY_S = 0.1


def stall_seconds() -> float:
    """How long an upload may make no progress before it is given up (LIKENESS_UPLOAD_STALL_S)."""
    try:
        return max(0.1, float(os.environ.get("LIKENESS_UPLOAD_STALL_S", DEFAULT_STALL_S)))
    except ValueError:
        return DEFAULT_STALL_S


def upload(api: ReplicateApi, path: Path, filename: str, content_type: str, progress: Progress,
           *, stall_s: float | None = None, doing: str = "Uploading the dataset to Replicate") -> dict:
    """Posts `path` to the Files API; the file's JSON (its `urls.get` is what a model input takes). A transport
    error or a 5xx is retried (a file costs nothing); a stall or an interrupt is not."""
    stall = stall_seconds() if stall_s is None else stall_s
    return api.call(doing, lambda: _Attempt(api, path, filename, content_type, progress, stall, doing).run(),
                    idempotent=True)


@dataclass
class _Attempt:
    api: ReplicateApi
    path: Path
    filename: str
    content_type: str
    progress: Progress
    stall_s: float
    doing: str
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> dict:
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            body = _Watched(f)
            worker = threading.Thread(target=self._post, args=(body,), name="likeness-upload", daemon=True)
            worker.start()
            self._watch(body, size)
        if self.error is not None:
            raise self.error
        return self.result

    def _post(self, body: _Watched) -> None:
        # The watcher decides what a stall is; these only make sure an abandoned worker ends some day.
        timeout = httpx.Timeout(10.0, read=2 * self.stall_s + 10, write=2 * self.stall_s + 10, pool=10.0)
        try:
            resp = self.api.sdk._request("POST", "/v1/files", timeout=timeout,
                                         files={"content": (self.filename, body, self.content_type)})
            self.result = json_answer(resp)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which explains it
            self.error = exc
        finally:
            self.done.set()

    def _watch(self, body: _Watched, size: int) -> None:
        """Waits for the worker: progress, the stall timeout and the interrupt, checked every 0.1 s."""
        last_seen, last_moved = -1, time.monotonic()
        while not self.done.wait(CHECK_EVERY_S):
            if self.progress.interrupted():
                body.stop = True
                raise Interrupted("Interrupted while uploading the dataset: nothing was paid (no training was "
                                  "started). Queue again to upload it and start the training.")
            if body.bytes_read != last_seen:
                last_seen, last_moved = body.bytes_read, time.monotonic()
                sent = min(body.bytes_read, size)
                self.progress.update(sent, max(size, 1), f"Uploading the dataset to Replicate: "
                                     f"{sent / 1e6:.1f} of {size / 1e6:.1f} MB")
            elif time.monotonic() - last_moved > self.stall_s:
                body.stop = True
                where = "sending" if body.bytes_read < size else "waiting for Replicate's answer"
                raise ServiceError(f"{self.doing}: the upload stalled ({where}: nothing moved for "
                                   f"{self.stall_s:g} s). Nothing was paid (no training was started). Check the "
                                   "network, then queue again (LIKENESS_UPLOAD_STALL_S sets how long to wait).")


class _Watched:
    """The zip as the multipart encoder reads it: counts what was read, stops when the watcher gave up."""

    def __init__(self, f: IO[bytes]):
        self._f, self.bytes_read, self.stop = f, 0, False

    def read(self, size: int = -1) -> bytes:
        if self.stop:
            raise OSError("the upload was given up")
        chunk = self._f.read(size)
        self.bytes_read += len(chunk)
        return chunk

    def __getattr__(self, name: str) -> Any:      # seek, fileno, name: what httpx's multipart encoder uses
        return getattr(self._f, name)
