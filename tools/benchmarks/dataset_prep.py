"""Dataset preparation: 30 synthetic 12 MP JPEGs → 1024 px squares (centre crop), through the loader's own path
(`likeness.dataset_prep.prepare_dataset`), against a naive Pillow loop run in the same command.

Baseline, one photo after another: open, exif_transpose, centre crop, LANCZOS resize, save (same JPEG quality
and subsampling as the pack, so encoding costs the same). The pack decodes JPEGs in draft mode (the DCT scales
to 1/2, 1/4 or 1/8 while keeping at least the target size), resizes with `reducing_gap`, and works on all
cores with threads (Pillow releases the GIL while decoding, resizing and encoding); it also runs its checks
(perceptual hash, sharpness), hashes and writes the set atomically: that work is inside its time.
Quality: PSNR and SSIM of each pack output against the baseline output of the same photo.
"""
from __future__ import annotations

import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from likeness.dataset_prep import JPEG_QUALITY, prepare_dataset

NAME = "dataset_prep"
DESCRIPTION = "30 × 12 MP JPEGs → 1024 px squares: the loader vs a naive Pillow loop (time ratio, PSNR/SSIM)"
ROUNDS = 3


def run(args) -> list[str]:
    import cv2  # noqa: F401 - imported once per ComfyUI process; keep the import out of the first timing

    logging.getLogger("likeness").setLevel(logging.WARNING)   # the loader logs one line per run
    count, width, height, size = (6, 2000, 1500, 512) if args.quick else (30, 4000, 3000, 1024)
    rounds = 1 if args.quick else ROUNDS
    with tempfile.TemporaryDirectory(prefix="likeness-bench-prep-") as tmp:
        root = Path(tmp)
        sources = make_photos(root / "input" / "photos", count, width, height)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        naive_times, pack_times, single_times = [], [], []
        for r in range(rounds):            # interleaved rounds: a busy shared machine hurts both sides alike
            naive_out = root / f"naive-{r}"
            naive_times.append(_timed(lambda: naive(sources, naive_out, size)))
            pack_out = root / f"output-{r}"
            pack_times.append(_timed(lambda: _pack(root, pack_out, size)))
            single_out = root / f"output-single-{r}"
            single_times.append(_timed(lambda: _pack(root, single_out, size, workers=1)))
        psnrs, ssims = compare(naive_out, pack_out / "likeness" / "datasets" / "bench", sources)
        parallel = parallel_capacity(sources[0])
    (naive_t, naive_cpu), (pack_t, pack_cpu), (single_t, single_cpu) = (min(naive_times), min(pack_times),
                                                                        min(single_times))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"{count} photos {width}×{height} → {size}×{size}, {cores} cores (load average {load:.1f} at start), "
        f"best of {rounds}; wall time, then CPU time of all threads",
        f"naive Pillow loop:      {naive_t:6.2f} s wall  {naive_cpu:6.2f} s CPU  ({naive_t / count * 1000:.0f} ms/photo)",
        f"loader, 1 worker:       {single_t:6.2f} s wall  {single_cpu:6.2f} s CPU  "
        f"({naive_t / single_t:.1f}× faster: draft decode, no copies)",
        f"loader, all cores:      {pack_t:6.2f} s wall  {pack_cpu:6.2f} s CPU  ({naive_t / pack_t:.1f}× faster)",
        f"ratio naive/loader:     {naive_t / pack_t:.2f}× wall (target ≥ 4×), {naive_cpu / pack_cpu:.2f}× CPU",
        f"parallel capacity now:  {parallel:.2f} cores (the same GIL-free Pillow resize on 1 thread vs {cores}); "
        f"with {cores} free cores the wall ratio would be ≈ {naive_t / (pack_cpu / cores):.1f}×",
        f"quality vs naive:       PSNR mean {statistics.mean(psnrs):.1f} dB, min {min(psnrs):.1f} dB; "
        f"SSIM mean {statistics.mean(ssims):.4f}, min {min(ssims):.4f}",
    ]


def make_photos(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """Photo-like JPEGs with fine detail (smooth colour fields, edges, texture and sensor grain); every fifth
    is stored on its side with EXIF orientation 6, as phones do."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        base = rng.random((height // 64, width // 64, 3)) * 255
        img = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((width, height), Image.BICUBIC), np.float32)
        angle, freq = rng.random() * np.pi, 0.01 + rng.random() * 0.05
        img += (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq * 2 * np.pi) * 20)[..., None]
        for _ in range(8):
            cx, cy, r = rng.random() * width, rng.random() * height, (0.03 + rng.random() * 0.15) * height
            disk = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img[disk] = img[disk] * 0.5 + rng.random(3) * 127
        img += rng.normal(0, 5, (height, width, 1)).astype(np.float32)
        photo = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        params = {"quality": 90}
        if i % 5 == 4:
            photo = photo.transpose(Image.ROTATE_90)          # stored sideways; orientation 6 turns it upright
            exif = Image.Exif()
            exif[0x0112] = 6
            params["exif"] = exif.tobytes()
        path = folder / f"photo{i:02d}.jpg"
        photo.save(path, **params)
        paths.append(path)
    return paths


def naive(sources: list[Path], out: Path, size: int) -> None:
    """What a script would do: full decode, upright, centre square, LANCZOS, save — one by one."""
    out.mkdir(parents=True)
    for path in sources:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            side = min(img.size)
            left, top = (img.width - side) // 2, (img.height - side) // 2
            img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
            img.save(out / path.name, quality=JPEG_QUALITY, subsampling=0)


def parallel_capacity(photo: Path) -> float:
    """How many cores this machine gives us right now: a Pillow resize (which releases the GIL) run on one
    thread, then on every core at once; a machine shared with other jobs gives fewer than it has."""
    from concurrent.futures import ThreadPoolExecutor

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    with Image.open(photo) as img:
        img.load()
        jobs = 4 * cores

        def work(_):
            img.resize((1024, 1024), Image.BICUBIC, box=(0, 0, min(img.size), min(img.size)))

        one, _ = _timed(lambda: [work(i) for i in range(jobs)])
        with ThreadPoolExecutor(cores) as pool:
            many, _ = _timed(lambda: list(pool.map(work, range(jobs))))
    return one / many


def _pack(root: Path, out: Path, size: int, workers: int | None = None) -> None:
    prepare_dataset("photos", "bench", crop="center", size=size, convert=True, input_root=root / "input",
                    output_root=out, workers=workers)


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process: every thread)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def compare(naive_out: Path, pack_out: Path, sources: list[Path]) -> tuple[list[float], list[float]]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnrs, ssims = [], []
    for path in sources:
        a = np.asarray(Image.open(naive_out / path.name).convert("RGB"))
        b = np.asarray(Image.open(pack_out / path.name).convert("RGB"))
        psnrs.append(float(peak_signal_noise_ratio(a, b, data_range=255)))
        ssims.append(float(structural_similarity(a, b, channel_axis=2, data_range=255)))
    return psnrs, ssims
