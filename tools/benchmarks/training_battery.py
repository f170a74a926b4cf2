"""Training battery: 4 trainings of a fixed duration on the fake Replicate, run by the battery in parallel against
the same battery one at a time (the baseline), through the real code path (likeness.training.battery → train_lora:
upload, create, follow, install), and the HTTP requests per minute while the 4 run.

The fake's trainings follow the real clock (`use_clock(time.monotonic)`): each takes the same fixed time from its
creation to its end, as if Replicate had four GPUs free. The requests are counted in the fake's log between the
moment the fourth training was created and the moment the first one ended, when all four were running; the pack's
poll interval is the real one (5 s) in the full run, so the figure is what a user's battery sends.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

NAME = "training_battery"
DESCRIPTION = "4 trainings of a fixed fake duration: battery in parallel vs one at a time; requests/min while 4 run"
TARGET = 3.5
VARIATIONS = "lora_rank: 8, 16, 32, 64"       # with the base rank 32 ... one factor at a time: base + 8, 16, 64


def run(args) -> list[str]:
    import sys

    from tools.benchmarks.training_upload import REPO

    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("likeness").setLevel(logging.WARNING)
    sys.path.insert(0, str(REPO / "tests"))
    from fakes.replicate import FakeReplicate

    token = "r8_" "BENCHMARKtoken00000000000000000000"
    duration, interval = (4.0, 0.25) if args.quick else (60.0, 5.0)
    fake = FakeReplicate(token).start()
    try:
        parallel = _battery(fake, token, duration, interval, concurrency=4)
        sequential = _battery(fake, token, duration, interval, concurrency=1)
    finally:
        fake.stop()
    ratio = sequential["wall"] / parallel["wall"]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    window = parallel["window"]
    per_minute = parallel["in_window"] / window * 60 if window > 0 else 0.0
    checks = ", ".join(str(n) for n in parallel["checks"])
    most = int(window / interval) + 1 if window > 0 else 0
    return [
        f"each training: {duration:.0f} s from creation to end on the fake's real clock; pack poll interval "
        f"{interval:g} s",
        f"parallel (4 at a time): {parallel['wall']:.1f} s wall, {parallel['created']} trainings created, at most "
        f"{parallel['most']} running at once, {parallel['loras']} LoRAs installed",
        f"sequential (1 at a time, the baseline): {sequential['wall']:.1f} s wall, {sequential['created']} trainings "
        f"created, at most {sequential['most']} running at once, {sequential['loras']} LoRAs installed",
        f"parallel vs sequential: {ratio:.2f}x faster (target >= {TARGET}: {verdict})",
        f"while all 4 ran ({window:.1f} s): {parallel['in_window']} HTTP requests = {per_minute:.1f} per minute; "
        f"status checks per training: {checks} (one per {interval:g} s allows at most {most})",
        f"a single training at this interval: {60 / interval:.0f} status checks per minute; 4 trainings: "
        f"{4 * 60 / interval:.0f}",
    ]


def _battery(fake, token: str, duration: float, interval: float, concurrency: int) -> dict:
    import replicate

    from likeness.cloud.replicate_client import ReplicateApi
    from likeness.dataset import Dataset, DatasetItem
    from likeness.storage import sha256_file
    from likeness.training.battery import BatterySettings, run_battery
    from likeness.training.training import PollSettings

    fake.reset()
    fake.use_clock(time.monotonic)
    steps = 3 * 40                                   # 3 photos × the seed's 40 steps per photo
    queue_s, setup_s = 0.1 * duration, 0.3 * duration
    fake.plan = fake.plan.__class__(queue_s=queue_s, setup_s=setup_s,
                                    seconds_per_step=(duration - queue_s - setup_s) / steps)
    with tempfile.TemporaryDirectory(prefix="likeness-bench-") as tmp:
        folder = Path(tmp) / "set"
        folder.mkdir()
        items = []
        for i in range(3):
            photo = folder / f"{i}.jpg"
            photo.write_bytes(os.urandom(20_000))
            (folder / f"{i}.txt").write_text(f"tok, photo {i}")
            items.append(DatasetItem(photo.name, sha256_file(photo), photo.name))
        dataset = Dataset(str(folder), "tok", tuple(items))
        api = ReplicateApi(replicate.Client(api_token=token, base_url=fake.url))
        start = time.monotonic()
        record = run_battery(dataset, BatterySettings("likeness-tester/bench", variations=VARIATIONS),
                             user_dir=Path(tmp) / "user", loras_dir=Path(tmp) / "loras", api=api,
                             poll=PollSettings(interval=interval, check_every=min(0.25, interval)),
                             concurrency=concurrency)
        wall = time.monotonic() - start
        loras = len(list((Path(tmp) / "loras").glob("*.safetensors")))
    fake.use_clock(None)
    spans = fake.training_spans()
    first_end, last_start = min(end for _, end in spans.values()), max(start for start, _ in spans.values())
    window = first_end - last_start
    requests = [r for r in fake.requests if last_start <= r.at <= first_end]
    checks = {tid: sum(1 for r in requests if r.method == "GET" and r.path == f"/v1/trainings/{tid}")
              for tid in spans}
    return {"wall": wall, "created": len(spans), "most": _most_running(spans), "loras": loras,
            "finished": len(record.finished), "window": window, "in_window": len(requests),
            "checks": list(checks.values())}


def _most_running(spans: dict) -> int:
    edges = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most
