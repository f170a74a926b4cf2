"""Training upload: memory while zipping and uploading a 90 MB dataset, and HTTP requests for a 10-minute
training, through the real code path (likeness.training.training) against the fake Replicate server.

Memory is measured in a child process (peak RSS growth, /proc VmHWM after a reset of the high-water mark),
for the pack's streamed zip + upload and, as the baseline, the same upload read into memory first (what
`files.create(io.BytesIO(data))` or a base64 data URL would do). The limit scales with the file: growth below a
quarter of the zip (and never more than 30 MB), so an upload read into memory fails it in quick mode (9 MB)
as in the full run (90 MB); the baseline, in the same run, shows the measurement can see one. Requests are counted for a simulated
10-minute training on a virtual clock shared by the fake and the pack's poll loop (no waiting), against the
SDK's default poll interval (REPLICATE_POLL_INTERVAL = 0.5 s) as the baseline.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

NAME = "training_upload"
LIMIT_SHARE = 0.25                         # peak growth must stay below this share of the uploaded file
LIMIT_CAP = 30 * (1 << 20)                 # and below 30 MB whatever the file
DESCRIPTION = "peak memory growth uploading a 90 MB dataset zip; HTTP requests for a 10-minute training"
REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import io, json, sys
from pathlib import Path
import replicate
from likeness.dataset import Dataset, DatasetItem
from likeness.cloud.replicate_client import ReplicateApi
from likeness.training.training import upload_file, zip_dataset

folder, url, token, mode = sys.argv[1:5]
names = sorted(p.name for p in Path(folder).glob("*.jpg"))
ds = Dataset(folder, "tok", tuple(DatasetItem(n, "", n) for n in names))
api = ReplicateApi(replicate.Client(api_token=token, base_url=url))
api.sdk.files.create(io.BytesIO(b"warm-up"), filename="w.bin")      # load httpx, TLS-free pools, pydantic

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")                      # reset the peak-RSS high-water mark
before = status("VmRSS:")
zip_path = zip_dataset(ds, Path(folder) / "uploads")
size = zip_path.stat().st_size
if mode == "streamed":
    url = upload_file(api, zip_path, "dataset.zip")
else:
    data = zip_path.read_bytes()
    url = api.sdk.files.create(io.BytesIO(data), filename="dataset.zip").urls["get"]
zip_path.unlink()
print(json.dumps({"growth": status("VmHWM:") - before, "zip": size, "url": url}))
"""


def run(args) -> list[str]:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("likeness").setLevel(logging.WARNING)
    sys.path.insert(0, str(REPO / "tests"))
    from fakes.replicate import FakeReplicate

    token = "r8_" "BENCHMARKtoken00000000000000000000"
    fake = FakeReplicate(token).start()
    try:
        total_mb = 9 if args.quick else 90
        lines = _memory(fake, token, total_mb)
        lines += _server_memory(fake, token, total_mb)
        lines += _requests(fake, token)
    finally:
        fake.stop()
    return lines


def _memory(fake, token: str, total_mb: int) -> list[str]:
    results = {}
    with tempfile.TemporaryDirectory(prefix="likeness-bench-") as tmp:
        per_photo = 3_000_000
        for i in range(total_mb * 1_000_000 // per_photo):
            (Path(tmp) / f"{i:03d}.jpg").write_bytes(os.urandom(per_photo))   # incompressible, like JPEGs
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for mode in ("streamed", "in-memory"):
            out = subprocess.run([sys.executable, "-c", CHILD, tmp, fake.url, token, mode], env=env,
                                 capture_output=True, text=True, check=True, cwd=REPO)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    mb = 1 << 20
    pack, base = results["streamed"], results["in-memory"]
    limit = memory_limit(pack["zip"])
    return [f"dataset zip: {pack['zip'] / 1e6:.1f} MB (uploaded to the fake Files API)",
            f"peak RSS growth, pack (streamed zip + upload): {pack['growth'] / 1024:.0f} KiB  "
            f"{verdict(pack['growth'], limit)}",
            f"peak RSS growth, baseline (upload read into memory): {base['growth'] / mb:.1f} MiB  "
            f"{verdict(base['growth'], limit)} (the check can see an in-memory upload)",
            f"baseline minus pack: {(base['growth'] - pack['growth']) / mb:.1f} MiB less at peak"]


def memory_limit(file_bytes: int) -> float:
    """The most peak memory an upload of `file_bytes` may add: a quarter of the file, at most 30 MB."""
    return min(LIMIT_SHARE * file_bytes, LIMIT_CAP)


def verdict(growth: float, limit: float) -> str:
    word = "OK" if growth < limit else "OVER"
    return f"[{word}: < {limit / (1 << 20):.1f} MiB, a quarter of the file]"


def _server_memory(fake, token: str, total_mb: int) -> list[str]:
    """The same upload inside a real ComfyUI: the trainer node queued after the loader has run, with the
    server's peak-RSS high-water mark reset in between, so the growth is the trainer's alone."""
    import numpy as np
    from harness.client import ComfyClient
    from harness.comfy_server import ComfyServer
    from PIL import Image

    fake.reset()
    side, count = 2048, max(2, total_mb // 6)           # 2048 px noise JPEGs at the loader's quality: ~6 MB each
    with tempfile.TemporaryDirectory(prefix="likeness-bench-") as tmp:
        photos = Path(tmp) / "input" / "bench"
        photos.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(photos / f"{i:03d}.jpg",
                                                                                        quality=95)
            (photos / f"{i:03d}.txt").write_text(f"tok, photo {i}")
        server = ComfyServer(Path(tmp), env={"REPLICATE_API_TOKEN": token, "REPLICATE_BASE_URL": fake.url,
                                             "LIKENESS_REPLICATE_POLL_S": "0.05"}).start()
        client = ComfyClient(server.url)
        try:
            loader = {"class_type": "LikenessDatasetLoader",
                      "inputs": {"folder": "bench", "trigger_word": "tok", "crop": "none", "size": side,
                                 "convert": True, "output_folder": ""}}
            assert client.run({"1": loader}).status == "success"
            trainer = {"class_type": "LikenessReplicateTrainer", "inputs": {
                "dataset": ["1", 2], "destination": "likeness-tester/bench", "steps": 0, "lora_rank": 32,
                "learning_rate": 0.0004, "layers": "7/12/16/20", "custom_layers_regex": "",
                "optimizer": "adamw8bit", "batch_size": 1, "resolution": "1024", "caption_dropout_rate": 0.1,
                "autocaption": False, "trainer_version": "", "extra_inputs": "{}"}}
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")     # reset the server's high-water mark
            before = _proc_status(server.pid, "VmRSS:")
            result = client.run({"1": loader, "2": trainer})
            growth = _proc_status(server.pid, "VmHWM:") - before
        finally:
            client.close()
            server.stop()
    assert result.status == "success", result.error_message
    uploaded = max(r.body_bytes for r in fake.requests if r.method == "POST" and r.path == "/v1/files")
    mb = 1 << 20
    return [f"inside ComfyUI: trainer node zipped and uploaded {uploaded / 1e6:.1f} MB, trained and "
            f"installed; server peak RSS growth {growth / mb:.1f} MiB  {verdict(growth, memory_limit(uploaded))}"]


def _proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    return 0


class VirtualClock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _requests(fake, token: str) -> list[str]:
    import replicate

    from likeness.dataset import Dataset, DatasetItem
    from likeness.cloud.replicate_client import ReplicateApi
    from likeness.training.training import PollSettings, TrainingSettings, train_lora

    lines = []
    for label, interval in (("pack (5 s interval)", PollSettings().interval), ("baseline (SDK's 0.5 s)", 0.5)):
        fake.reset()
        clock = VirtualClock()
        fake.use_clock(clock.monotonic)
        fake.plan = fake.plan.__class__(queue_s=30.0, setup_s=120.0, seconds_per_step=1.05)
        steps = 429                                # 30 s queue + 120 s setup + 429 × 1.05 s ≈ 600 s
        with tempfile.TemporaryDirectory(prefix="likeness-bench-") as tmp:
            folder = Path(tmp) / "ds"
            folder.mkdir()
            for i in range(3):
                (folder / f"{i}.jpg").write_bytes(os.urandom(1000))
                (folder / f"{i}.txt").write_text(f"tok, photo {i}")
            ds = Dataset(str(folder), "tok", tuple(DatasetItem(f"{i}.jpg", "", "") for i in range(3)))
            api = ReplicateApi(replicate.Client(api_token=token, base_url=fake.url), sleep=clock.sleep)
            record = train_lora(ds, TrainingSettings("likeness-tester/bench", steps=steps),
                                user_dir=Path(tmp) / "user", loras_dir=Path(tmp) / "loras", api=api,
                                poll=PollSettings(interval=interval, check_every=interval), clock=clock)
        polls = fake.count("GET", r"^/v1/trainings/[a-z0-9]+$")
        lines.append(f"{label}: {len(fake.requests)} HTTP requests for a {clock.now / 60:.1f}-minute training "
                     f"({polls} status checks), LoRA {record.lora_file}")
    fake.use_clock(None)
    return lines
