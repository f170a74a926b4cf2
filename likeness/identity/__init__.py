"""Face identity: find faces, embed them, and say how much an image looks like the person of a training set.

The public API (stable: the loader, the score node, the samplers, the strength sweep and the training battery
build on it). Images are PIL images or HxWx3 arrays (uint8, or floats 0–1 as ComfyUI's IMAGE holds them).

    faces = detect_faces(image)                   # list[Face], largest first; the pack's one face detector
    backend = load_backend("auto", models_dir)    # "dlib" (default, offline) | "arcface" | "auto"
    reference = reference_from_photos(dataset_or_folder_or_paths, backend, cache_dir)
    scores = score_images(images, reference, backend)        # list[ImageScore], in the images' order
    order = best_first(scores)                              # indices, most alike first

- `Face`: `box` (left, top, right, bottom), `landmarks` (dlib's five points), `confidence`, in the image's
  pixels. `detect_faces` looks at a small grey copy (640 px, then 1280 px when nothing was found).
- `Backend`: `name` ("dlib" or "arcface-<model>"), `description` (what computes the embeddings: dlib's ResNet
  runs in torch when it gives dlib's own numbers, see dlib_resnet.py), `same_person_below` and
  `near_identical_below` (distances), `embed(image, face) -> np.ndarray`, and for many faces `chip(image, face)`
  (the aligned face, cheap, on any thread) then `embed_chips(chips)` (one batch); `distance(a, b) -> float`.
  Thresholds and their sources: backends.py.
- `ReferenceIdentity`: per-photo `embeddings`, `centroid`, `spread` (mean distance between two of its photos),
  `content_hash`, `skipped` photos with the reason, and `embedded`/`reused` counts for this call (a re-run
  embeds nothing: embeddings are cached in `cache_dir` by photo sha256). `to_dict()`/`from_dict()`: a small
  JSON-safe dict, for a LoRA's metadata.
- `ImageScore`: `likeness` 0–100 (50 = the backend's same-person threshold) or None with a `reason`
  ("no face", "several faces (N)"), the raw `distance`, `backend`, `same_person`, the scored `face`.
  The mapping and why: scoring.py. `score_table()` is the text a node shows.
- `check_one_person(photo_faces, backend) -> IdentityCheck`: outliers (a different person in the set),
  several-face and no-face photos, near-identical faces; `EmbeddingCache` embeds a photo once per backend
  (`photo_faces([FacePhoto(path, sha256, image, faces, chip), ...], backend)`: what is known is reused).
"""
from .backends import BACKENDS, Backend, find_arcface_model, load_backend
from .consistency import IdentityCheck, check_one_person
from .faces import Face, detect_faces
from .reference import EmbeddingCache, FacePhoto, PhotoFace, ReferenceIdentity, reference_from_photos
from .scoring import ImageScore, best_first, likeness_from_distance, score_images, score_table

__all__ = ["BACKENDS", "Backend", "EmbeddingCache", "Face", "FacePhoto", "IdentityCheck", "ImageScore", "PhotoFace",
           "ReferenceIdentity", "best_first", "check_one_person", "detect_faces", "find_arcface_model",
           "likeness_from_distance", "load_backend", "reference_from_photos", "score_images", "score_table"]
