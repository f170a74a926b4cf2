"""Dataset preparation: 30 × 12 MP JPEGs → 1024 px squares through the loader's own path
(`likeness.dataset.dataset_prep.prepare_dataset`), against a naive Pillow loop run in the same command:
centre crop on synthetic photos, and the default face crop on photos with real faces (made from the photos the
`face_recognition` sdist ships, one of them a different person), without and with the identity check.

Baseline, one photo after another: open, exif_transpose, centre crop, LANCZOS resize, save (same JPEG quality
and subsampling as the pack, so encoding costs the same). The pack decodes JPEGs in draft mode (the DCT scales
to 1/2, 1/4 or 1/8 while keeping at least the target size), resizes with `reducing_gap`, and works on all
cores with threads (Pillow releases the GIL while decoding, resizing and encoding); it also runs its checks
(perceptual hash, sharpness), hashes and writes the set atomically: that work is inside its time.
Quality: PSNR and SSIM of each pack output against the baseline output of the same photo.

Face crop: each worker finds the faces once (dlib's detector lets go of the GIL) and crops on them; with the
identity check it also cuts the face's 150 px chip, and the set's chips are embedded in one batch at the end
(dlib's ResNet in torch, on one thread) with no cache, as a first run. The backend is loaded before the timing,
as it is once per ComfyUI process. The load average is printed: other jobs on a shared machine slow the pack's
two threads more than the baseline's one, so the ratios hold only when the machine is quiet.

Face detection: the loader's detector (dlib HOG on a small grey copy) against the OpenCV Haar cascade it
replaced (alt2 on a 640 px grey copy, as the loader ran it), one thread each, on the same decoded photos:
faces found on the real-face photos, false faces on the synthetic scenes, time per photo.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from likeness.dataset.dataset_prep import JPEG_QUALITY, MANIFEST, prepare_dataset
from likeness.photo_files import open_upright
from likeness.identity import detect_faces, load_backend
from tools import real_faces

NAME = "dataset_prep"
DESCRIPTION = ("30 × 12 MP JPEGs → 1024 px squares: the loader (centre crop; face crop on real faces, without and "
               "with the identity check) vs a naive Pillow loop (time ratio, PSNR/SSIM), dlib vs Haar faces")
ROUNDS = 3
ONE_PERSON = ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg")
STRANGER = "biden.jpg"


def run(args) -> list[str]:
    import cv2  # noqa: F401 - imported once per ComfyUI process; keep the import out of the first timing

    logging.getLogger("likeness").setLevel(logging.WARNING)   # the loader logs one line per run
    load_backend("auto")         # loaded once per ComfyUI process (torch is imported there already): not timed
    count, width, height, size = (6, 2000, 1500, 512) if args.quick else (30, 4000, 3000, 1024)
    rounds = 1 if args.quick else ROUNDS
    with tempfile.TemporaryDirectory(prefix="likeness-bench-prep-") as tmp:
        root = Path(tmp)
        sources = make_photos(root / "input" / "photos", count, width, height)
        load = _load()
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
        face_lines = face_crop(root, count, width, height, size, rounds, sources)
    (naive_t, naive_cpu), (pack_t, pack_cpu), (single_t, single_cpu) = (min(naive_times), min(pack_times),
                                                                        min(single_times))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ["-- centre crop, synthetic photos --",
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
        *face_lines,
    ]


def face_crop(root: Path, count: int, width: int, height: int, size: int, rounds: int,
              scenes: list[Path]) -> list[str]:
    """The default mode on photos with real faces: naive loop vs face crop alone vs face crop + identity check
    (embedded from scratch each round: no cache), then the detector comparison."""
    sources, truth = make_face_photos(root / "input" / "faces", count, width, height)
    load = _load()
    naive_times, crop_times, check_times = [], [], []
    for r in range(rounds):
        naive_times.append(_timed(lambda: naive(sources, root / f"naive-faces-{r}", size)))
        crop_times.append(_timed(lambda: _pack(root, root / f"faces-{r}", size, "face", folder="faces")))
        checked = {}
        check_times.append(_timed(lambda: checked.update(
            prepared=_pack(root, root / f"faces-checked-{r}", size, "face", folder="faces", check=True))))
    report = checked["prepared"].report
    flagged = [w.split(":")[0] for w in report.warnings if "does not match the others" in w]
    manifest = json.loads((Path(checked["prepared"].dataset.folder) / MANIFEST).read_text())
    fell_back = [item["image"] for item in manifest["items"] if item["face"] == "centre"]   # photos, not lines
    (naive_t, _), (crop_t, crop_cpu), (check_t, check_cpu) = min(naive_times), min(crop_times), min(check_times)
    lines = [
        f"-- face crop (the default), {count} photos with real faces, best of {rounds}; load average "
        f"{load:.1f} at start, {_load():.1f} at end --",
        f"naive Pillow loop:      {naive_t:6.2f} s wall",
        f"face crop:              {crop_t:6.2f} s wall  {crop_cpu:6.2f} s CPU  "
        f"ratio {naive_t / crop_t:.2f}× (target ≥ 4.5×)",
        f"face crop + identity:   {check_t:6.2f} s wall  {check_cpu:6.2f} s CPU  "
        f"ratio {naive_t / check_t:.2f}× (target ≥ 3.5×); identity check alone "
        f"{(check_t - crop_t) / count * 1000:.0f} ms/photo wall",
        f"identity report:        {report.identity} Embeddings: {load_backend('auto').description}.",
        f"flagged as another person: {', '.join(flagged) or 'none'} (planted: {STRANGER_NAME}); "
        f"face crops that fell back to the centre: {len(fell_back)}",
    ]
    return lines + compare_detectors(sources, truth, scenes, size, width)


STRANGER_NAME = "face-stranger.jpg"


def make_face_photos(folder: Path, count: int, width: int, height: int) -> tuple[list[Path], dict[str, tuple]]:
    """12 MP photos of one person made from the sdist's real photos (upscaled onto a textured scene, placed
    anywhere across, sometimes mirrored, with grain), the last one of a different person; every fifth stored
    sideways with EXIF orientation 6. Returns the files and each photo's true face box (upright pixels)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths, truth = [], {}
    for i in range(count):
        stranger = i == count - 1
        source = real_faces.image(STRANGER if stranger else ONE_PERSON[i % len(ONE_PERSON)])
        if rng.random() < 0.5 and not stranger:
            source = ImageOps.mirror(source)
        face = detect_faces(source)[0].box                      # found at the source's own resolution
        scale = 0.92 * height / source.height
        portrait = source.resize((round(source.width * scale), round(source.height * scale)), Image.BICUBIC)
        left = int(rng.random() * (width - portrait.width))
        top = height - portrait.height
        canvas = _scene(rng, xx, yy, width, height)
        canvas[top:, left:left + portrait.width] = np.asarray(portrait, np.float32)
        canvas += rng.normal(0, 4, (height, width, 1)).astype(np.float32)
        photo = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
        name = STRANGER_NAME if stranger else f"face{i:02d}.jpg"
        truth[name] = tuple(round(v) for v in (left + face[0] * scale, top + face[1] * scale,
                                               left + face[2] * scale, top + face[3] * scale))
        params = {"quality": 90}
        if i % 5 == 4:
            photo = photo.transpose(Image.ROTATE_90)
            exif = Image.Exif()
            exif[0x0112] = 6
            params["exif"] = exif.tobytes()
        photo.save(folder / name, **params)
        paths.append(folder / name)
    return paths, truth


def compare_detectors(faces: list[Path], truth: dict[str, tuple], scenes: list[Path], size: int,
                      width: int) -> list[str]:
    """dlib (the loader's) vs the Haar cascade (the loader's before), on the same draft-decoded photos."""
    decoded = [(p.name, open_upright(p, scale_to=size)[0]) for p in faces + scenes]
    results = {}
    for name, detect in (("dlib HOG", _dlib_boxes), ("Haar alt2", haar_faces)):
        detect(decoded[0][1])                                 # load the model outside the timing
        start = time.perf_counter()
        found = {photo: detect(img) for photo, img in decoded}
        per_photo = (time.perf_counter() - start) / len(decoded) * 1000
        hits = sum(_hit(found[n], truth[n], width / img.width) for n, img in decoded if n in truth)
        false = sum(len(found[n]) for n, _ in decoded if n not in truth)
        extra = sum(max(0, len(found[n]) - 1) for n, _ in decoded if n in truth)
        results[name] = (hits, false, extra, per_photo)
    lines = [f"face detection, one thread, on the {len(faces)} real-face photos and {len(scenes)} synthetic scenes "
             "(draft-decoded like the loader):"]
    for name, (hits, false, extra, per_photo) in results.items():
        lines.append(f"  {name:9}: found {hits}/{len(faces)} faces, {extra} extra faces on them, {false} false faces "
                     f"in the scenes, {per_photo:.0f} ms/photo")
    return lines


def _dlib_boxes(img: Image.Image) -> list[tuple[int, int, int, int]]:
    return [f.box for f in detect_faces(img)]


def haar_faces(img: Image.Image) -> list[tuple[int, int, int, int]]:
    """The loader's detector before this one: OpenCV's haarcascade_frontalface_alt2 on a 640 px grey copy."""
    import cv2

    scale = min(1.0, 640 / max(img.size))
    small = img.convert("L").resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                                    Image.BILINEAR)
    grey = cv2.equalizeHist(np.asarray(small))
    min_side = max(20, int(min(grey.shape) * 0.08))
    found = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    boxes = [tuple(int(round(v / scale)) for v in (x, y, x + w, y + h)) for x, y, w, h in found]
    largest = max((b[2] - b[0] for b in boxes), default=0)
    return [b for b in boxes if b[2] - b[0] >= 0.5 * largest]


@functools.lru_cache(maxsize=1)
def _cascade():
    import cv2

    return cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_alt2.xml")


def _hit(boxes: list[tuple], truth: tuple, scale: float) -> bool:
    """One face found, its centre inside the true face box (`truth` in full-size pixels, `scale` to get there)."""
    if len(boxes) != 1:
        return False
    cx, cy = (boxes[0][0] + boxes[0][2]) / 2 * scale, (boxes[0][1] + boxes[0][3]) / 2 * scale
    return truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]


def make_photos(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """Photo-like JPEGs with fine detail (smooth colour fields, edges, texture and sensor grain); every fifth
    is stored on its side with EXIF orientation 6, as phones do."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        img = _scene(rng, xx, yy, width, height)
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


def _scene(rng, xx: np.ndarray, yy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Smooth colour fields, a stripe pattern and discs: a photo-like picture with no face in it (float32)."""
    base = rng.random((height // 64, width // 64, 3)) * 255
    img = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((width, height), Image.BICUBIC), np.float32)
    angle, freq = rng.random() * np.pi, 0.01 + rng.random() * 0.05
    img += (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * freq * 2 * np.pi) * 20)[..., None]
    for _ in range(8):
        cx, cy, r = rng.random() * width, rng.random() * height, (0.03 + rng.random() * 0.15) * height
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
        img[disk] = img[disk] * 0.5 + rng.random(3) * 127
    return img


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


def _pack(root: Path, out: Path, size: int, crop: str = "center", workers: int | None = None,
          folder: str = "photos", check: bool = False):
    return prepare_dataset(folder, "bench", crop=crop, size=size, convert=True, input_root=root / "input",
                           output_root=out, workers=workers, check_identity=check)


def _load() -> float:
    """The 1-minute load average (other jobs on a shared machine), NaN where the OS has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


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
