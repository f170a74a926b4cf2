"""Likeness scores on CPU: images scored per second at 1024² with the default backend (dlib), and what a second
run over the same reference costs (the training photos' embeddings come from the cache: 0 re-embedded).

The images are made from real faces the `face_recognition` and `insightface` sdists ship (and scikit-image's
astronaut): the reference person in other photos, other people, a group and a faceless scene, each on a
textured 1024² square at a random size and place. Baseline, in the same command: what a script built on
dlib's Python examples (or the face_recognition package's defaults) does per image: the HOG detector on the
full image upsampled once, 5-point landmarks, the descriptor; its verdicts must match the pack's.

The network alone: the same faces' chips embedded by the backend (dlib's ResNet in torch, a batch) against
dlib's own `compute_face_descriptor` one chip at a time, with the largest difference between the two.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from likeness.identity import load_backend, reference_from_photos, score_images
from tools import real_faces

NAME = "likeness_score"
DESCRIPTION = "images scored per second at 1024² on CPU (dlib) vs per-image full-size detection; cached reference"
SIDE = 1024
REFERENCE = ("obama.jpg", "obama2.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg")
SAME = ("obama3.jpg", "obama.jpg", "obama2.jpg")
OTHERS = ("biden.jpg", "Tom_Hanks_54745.png", "astronaut")


def run(args) -> list[str]:
    logging.getLogger("likeness").setLevel(logging.WARNING)
    count = 8 if args.quick else 30
    backend = load_backend("dlib")
    with tempfile.TemporaryDirectory(prefix="likeness-bench-score-") as tmp:
        root = Path(tmp)
        reference_dir = make_reference(root / "reference")
        images, truth = make_images(count)
        cache = root / "cache"
        first_t, reference = _timed(lambda: reference_from_photos(reference_dir, backend, cache))
        second_t, again = _timed(lambda: reference_from_photos(reference_dir, backend, cache))
        score_images(images[:1], reference, backend)                         # warm the detector pools
        pack_t, scores = _timed(lambda: score_images(images, reference, backend))
        naive_t, naive = _timed(lambda: naive_scores(images, reference, backend))
        network = compare_networks(images, scores, backend)
    scored = [i for i, s in enumerate(scores) if s.likeness is not None]
    right = sum(scores[i].same_person == truth[i] for i in scored if truth[i] is not None)
    known = sum(truth[i] is not None for i in scored)
    both = [i for i in scored if naive[i] is not None]
    agree = sum((naive[i] < backend.same_person_below) == scores[i].same_person for i in both)
    reasons = sorted({s.reason for s in scores if s.likeness is None})
    return [
        f"{count} images {SIDE}×{SIDE}, dlib backend ({backend.description}); the pack finds and cuts the faces "
        "of a batch on every core, then embeds them together; the baseline is one loop",
        f"pack:     {pack_t:6.2f} s, {count / pack_t:5.1f} images/s (target ≥ 5/s)",
        f"baseline: {naive_t:6.2f} s, {count / naive_t:5.1f} images/s (full-size detection, upsampled once); "
        f"ratio {naive_t / pack_t:.2f}×",
        f"verdicts: {right}/{known} right on images of known people; pack and baseline agree on "
        f"{agree}/{len(both)} images both scored; the baseline left {len(scored) - len(both)} more unscored "
        f"(extra faces: its upsampled pass finds false ones); not scored by the pack: {', '.join(reasons) or 'none'}",
        f"reference ({len(REFERENCE)} photos): first run {first_t:.2f} s, embedded {reference.embedded}; "
        f"second run {second_t * 1000:.0f} ms, re-embedded {again.embedded} training photos "
        f"({again.reused} from the cache)",
        *network,
    ]


def compare_networks(images: list[np.ndarray], scores, backend) -> list[str]:
    """The scored faces' chips through the backend's network (a batch) and through dlib's own descriptor."""
    import dlib

    from likeness.identity.faces import RECOGNITION_MODEL, model_file

    chips = np.stack([backend.chip(images[i], s.face) for i, s in enumerate(scores) if s.face is not None])
    model = dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL)))
    backend.embed_chips(chips[:2])                                          # warm up outside the timing
    ours_t, ours = _timed(lambda: backend.embed_chips(chips))
    dlib_t, theirs = _timed(lambda: np.asarray([model.compute_face_descriptor(c) for c in chips], np.float32))
    pairs = [(i, j) for i in range(len(chips)) for j in range(i + 1, len(chips))]
    same = sum((np.linalg.norm(ours[i] - ours[j]) < backend.same_person_below)
               == (np.linalg.norm(theirs[i] - theirs[j]) < backend.same_person_below) for i, j in pairs)
    return [f"network alone, {len(chips)} faces: backend {ours_t / len(chips) * 1000:.1f} ms/face, dlib's own "
            f"{dlib_t / len(chips) * 1000:.1f} ms/face ({dlib_t / ours_t:.1f}×); largest difference "
            f"{np.abs(ours - theirs).max():.1e}; same verdict on {same}/{len(pairs)} pairs"]


def make_reference(folder: Path) -> Path:
    """The reference person's photos as a prepared set would hold them: 1024 px squares."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(5)
    for name in REFERENCE:
        _placed(real_faces.image(name), rng, 0.9).save(folder / Path(name).with_suffix(".jpg").name, quality=95)
    return folder


def make_images(count: int) -> tuple[list[np.ndarray], list[bool | None]]:
    """`count` 1024² images cycling through the reference person, other people, a group and a scene; and for
    each whether it shows the reference person (None: no single face to judge)."""
    rng = np.random.default_rng(9)
    cycle = [(n, True) for n in SAME] + [(n, False) for n in OTHERS] + [(real_faces.GROUP, None), ("scene", None)]
    images, truth = [], []
    for i in range(count):
        name, same = cycle[i % len(cycle)]
        if name == "scene":
            picture = real_faces.scene_without_face(SIDE, SIDE, seed=i)
        else:
            source = real_faces.astronaut() if name == "astronaut" else real_faces.image(name)
            picture = _placed(ImageOps.mirror(source) if rng.random() < 0.5 else source, rng,
                              0.55 + 0.45 * rng.random())
        images.append(np.asarray(picture))
        truth.append(same)
    return images, truth


def _placed(source: Image.Image, rng, fill: float) -> Image.Image:
    """`source` scaled to `fill` of a textured SIDE² square, somewhere on it."""
    canvas = real_faces.scene_without_face(SIDE, SIDE, seed=int(rng.integers(1000)))
    scale = fill * SIDE / max(source.size)
    photo = source.resize((max(1, round(source.width * scale)), max(1, round(source.height * scale))),
                          Image.BICUBIC)
    canvas.paste(photo, (int(rng.random() * (SIDE - photo.width)), int(rng.random() * (SIDE - photo.height))))
    return canvas


def naive_scores(images: list[np.ndarray], reference, backend) -> list[float | None]:
    """Per image: dlib's detector on the full image upsampled once, landmarks, descriptor; mean distance."""
    import dlib

    from likeness.identity.faces import LANDMARKS_MODEL, RECOGNITION_MODEL, model_file

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_file(LANDMARKS_MODEL)))
    model = dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL)))
    distances: list[float | None] = []
    for image in images:
        faces = detector(image, 1)
        if len(faces) != 1:
            distances.append(None)
            continue
        vector = np.asarray(model.compute_face_descriptor(image, predictor(image, faces[0])), np.float32)
        distances.append(float(np.mean([backend.distance(vector, ref) for ref in reference.embeddings])))
    return distances


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
