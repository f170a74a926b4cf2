"""Captioning: 30 images against the fake Gemini server answering after 1.5 s, through the real SDK and the
pack's own run (`likeness.captions.captioning.caption_dataset`).

Baseline, in the same command: the same run with concurrency 1 (one image after another). Targets: at least
3.5× faster at concurrency 4, and 0 API calls when the same set is captioned a second time (the cache).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from likeness.captions.caption_cache import CaptionFiles
from likeness.captions.captioning import CaptionSettings, caption_dataset_sync
from likeness.dataset import Dataset, DatasetItem
from likeness.storage import sha256_file
from tools.benchmarks import environment

NAME = "captioning"
DESCRIPTION = "30 images, fake Gemini at 1.5 s per request: concurrency 4 vs one after another; calls on re-run"
BENCH_KEY = "AIza" "LIKENESS-BENCH-key-0000000000000000"


def run(args) -> list[str]:
    count, latency = (8, 0.3) if args.quick else (30, 1.5)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from fakes.gemini import FakeGemini
    from fakes.gemini_fixtures import photo_color, write_photo

    fake = FakeGemini(api_keys={BENCH_KEY}).start()
    fake.latency = latency
    try:
        with environment({"GOOGLE_GEMINI_BASE_URL": fake.url, "GEMINI_API_KEY": BENCH_KEY, "GOOGLE_API_KEY": ""}), \
                tempfile.TemporaryDirectory(prefix="likeness-bench-caption-") as tmp:
            root = Path(tmp)
            sequential = _timed(lambda: caption_dataset_sync(
                _photos(root / "seq", count, write_photo, photo_color), CaptionSettings(concurrency=1, rpm=0),
                root / "user-seq"))
            dataset = _photos(root / "conc", count, write_photo, photo_color)
            settings = CaptionSettings(concurrency=4, rpm=0)
            concurrent = _timed(lambda: caption_dataset_sync(dataset, settings, root / "user-conc"))
            first_calls = len(fake.generate_calls())
            fake.requests.clear()
            for item in dataset.items:          # even with the .txt files gone, the cache answers
                dataset.caption_path(item).unlink()
            again = caption_dataset_sync(dataset, settings, root / "user-conc")
            second_calls = len(fake.generate_calls())
            restored = sum(1 for item in dataset.items if CaptionFiles(root / "user-conc").read(
                dataset.caption_path(item)))
    finally:
        fake.stop()
    ratio = sequential / concurrent
    return [
        f"{count} images, fake latency {latency:.1f} s per request ({first_calls} requests for both first runs)",
        f"one after another (concurrency 1): {sequential:6.2f} s",
        f"pack, concurrency 4:               {concurrent:6.2f} s",
        f"speed-up: {ratio:.2f}x (target >= 3.5x) {'OK' if ratio >= 3.5 else 'BELOW TARGET'}",
        f"second run: {second_calls} API calls (target 0) {'OK' if second_calls == 0 else 'FAILED'}; "
        f"{restored}/{count} captions restored from the cache; statuses: "
        f"{sorted({r.status for r in again.images})}",
    ]


def _photos(folder: Path, count: int, write_photo, photo_color) -> Dataset:
    folder.mkdir(parents=True)
    items = []
    for i in range(count):
        path = folder / f"{i:03d}.jpg"
        write_photo(path, photo_color(i), size=(512, 512), variant=i)
        items.append(DatasetItem(path.name, sha256_file(path), str(path), "", 512, 512))
    return Dataset(str(folder), "pelarbues", tuple(items))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
