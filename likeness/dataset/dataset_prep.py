"""A folder of photos → an upright, square, checked training set, written atomically beside the originals.

`prepare_dataset` is what LikenessDatasetLoader runs: it reads `.jpg/.jpeg/.png` (and converts other formats
when allowed), crops and resizes each photo, pairs `name.txt` captions, checks the set against the seed's
rules and writes it into its own folder: built in a temporary sibling, then swapped in, so a crash never
leaves half a set. A manifest in the set remembers how each photo was made, so a re-run re-processes only
the photos that changed. The user's originals are only ever read.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import unicodedata
import uuid
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import Dataset, DatasetItem
from ..errors import InputError
from .face_crop import CROP_MODES, choose_crop
from .identity_check import LoaderIdentity, identity_check
from .photo_checks import (PhotoFacts, check_copy, count_warnings, near_duplicates, perceptual_hash, photo_warnings,
                           sharpness, suggested_steps, too_small)
from ..photo_files import NATIVE, UnreadablePhoto, kind_of, open_upright, register_extra_formats
from ..progress import Interrupted, Progress, SilentProgress
from ..storage import atomic_write_json, is_inside, read_json, sha256_bytes, sha256_file
from ..identity import Face, FacePhoto
from ..identity.faces import usable_cores

log = logging.getLogger("likeness")

MANIFEST = ".likeness-dataset.json"
PIPELINE = 3                 # bump when the way a photo is prepared changes: cached photos are re-made
#                              (2: dlib faces; 3: photos too small to train on are refused, so none made before is reused)
JPEG_QUALITY = 95
RESAMPLE = Image.BICUBIC
MAX_WORKERS = 8              # threads (Pillow and OpenCV release the GIL); each holds one decoded photo
DATASETS = Path("likeness") / "datasets"
_TRIGGER = re.compile(r"[\w-]+")
_WRITTEN: set[str] = set()   # sets this process wrote: the fingerprint notices when one is deleted


@dataclass
class PrepReport:
    """What happened, for the node's text and the Dataset's warnings."""
    folder: str
    photos: int = 0
    processed: int = 0
    reused: int = 0
    converted: int = 0
    skipped: list[str] = field(default_factory=list)     # "name: why"
    warnings: list[str] = field(default_factory=list)
    identity: str = ""                                    # the identity check's summary line

    @property
    def suggested_steps(self) -> int:
        return suggested_steps(self.photos)

    def text(self) -> str:
        lines = [f"Prepared {self.photos} photo{'s' if self.photos != 1 else ''} in {self.folder} "
                 f"(processed {self.processed}, reused {self.reused}"
                 + (f", converted {self.converted} to JPEG" if self.converted else "") + ").",
                 f"Suggested training steps: {self.suggested_steps} (40 × {self.photos} photos)."]
        if self.identity:
            lines.append(self.identity)
        if self.skipped:
            lines.append(f"Skipped {len(self.skipped)} file{'s' if len(self.skipped) != 1 else ''}:")
            lines += [f"  - {s}" for s in self.skipped]
        if self.warnings:
            lines.append("Warnings:")
            lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclass
class PreparedDataset:
    dataset: Dataset
    images: list[Image.Image]          # in the dataset's item order, RGB
    report: PrepReport


@dataclass(frozen=True)
class _Photo:
    source: Path                       # resolved original
    name: str                          # output file name in the set
    caption_source: Path | None
    key: dict                          # what the prepared file depends on (the per-photo cache key)


@dataclass
class _Made:
    photo: _Photo
    sha256: str
    width: int
    height: int
    facts: PhotoFacts
    image: Image.Image | None = None   # kept when just made; reused photos are read back from the set
    caption_source: str = ""           # hash of the caption beside the original, as last read
    caption_written: str = ""          # hash of the caption the loader wrote into the set
    faces: list[Face] | None = None    # the faces in the prepared photo (None: not looked for, or reused)
    chip: np.ndarray | None = None     # its one face cut for the identity backend (None: none, several, cached)


def prepare_dataset(folder: str, trigger_word: str, *, crop: str = "face", size: int = 1024, convert: bool = True,
                    input_root: str | os.PathLike, output_root: str | os.PathLike,
                    output_folder: str | None = None, progress: Progress | None = None,
                    workers: int | None = None, check_identity: bool = True,
                    models_dir: str | os.PathLike | None = None,
                    identity_cache: str | os.PathLike | None = None,
                    output_anywhere: bool = False) -> PreparedDataset:
    """Prepares the photos in `folder` (absolute, or relative to `input_root`) as a training set.

    The set goes to `output_folder` (relative to `output_root`, or absolute inside it; anywhere only with
    `output_anywhere`, which the user sets outside the workflow), by default
    `<output_root>/likeness/datasets/<trigger_word>`. Raises InputError with advice for bad input.
    With `check_identity`, every prepared photo's face is embedded (ArcFace when its models are in
    `models_dir`/insightface, else dlib; cached in `identity_cache`) and the report names the photos that do
    not show the same person as the others.
    """
    progress = progress or SilentProgress()
    trigger = check_trigger_word(trigger_word)
    if crop not in CROP_MODES:
        raise InputError(f"Unknown crop mode {crop!r}: use one of {', '.join(CROP_MODES)}")
    if not 64 <= int(size) <= 8192:
        raise InputError(f"Size {size} is out of range: use 1024 for FLUX (between 64 and 8192)")
    register_extra_formats()
    source = resolve_source(folder, input_root)
    dest = resolve_destination(output_folder, trigger, output_root, source, anywhere=output_anywhere)
    report = PrepReport(folder=str(dest))
    photos = _scan(source, dest, crop, int(size), convert, report)
    previous = _previous_manifest(dest)
    identity = identity_check(check_identity, crop, models_dir, identity_cache)
    made = _build(photos, dest, crop, int(size), previous, report, progress, workers, identity)
    return _finish(made, dest, trigger, crop, int(size), previous, report, identity, progress)


# --- inputs ---------------------------------------------------------------------------------------

def check_trigger_word(word: str) -> str:
    """The trigger word, stripped; one word of letters, digits, '_' or '-' (it also names the set's folder)."""
    word = (word or "").strip()
    if not word:
        raise InputError("The trigger word is empty: choose a rare word that will stand for the person "
                         "(the seed used 'pelarbues')")
    if any(c.isspace() for c in word):
        joined = re.sub(r"\s+", "", word)
        raise InputError(f"The trigger word {word!r} contains spaces: use one word (e.g. {joined!r})")
    if "," in word:
        raise InputError(f"The trigger word {word!r} contains a comma: captions start with 'trigger, ...', so "
                         "the word itself must not contain one")
    if not _TRIGGER.fullmatch(word):
        raise InputError(f"The trigger word {word!r} may only contain letters, digits, '_' and '-'")
    return word


def resolve_source(folder: str, input_root: str | os.PathLike) -> Path:
    """The photo folder: an absolute path as typed, or a path inside ComfyUI's input folder."""
    text = (folder or "").strip().strip('"').strip("'")
    if not text:
        raise InputError(f"No photo folder given: type a folder path, absolute or relative to {input_root}")
    real = typed_folder(text, input_root, "folder", "input")
    if not real.exists():
        raise InputError(f"Photo folder not found: {real}. Create it and put your photos in it, or fix the path "
                         f"(relative paths start at {input_root})")
    if not real.is_dir():
        raise InputError(f"{real} is a file, not a folder: give the folder that holds the photos")
    return real


def typed_folder(text: str, root: str | os.PathLike, what: str, root_name: str) -> Path:
    """A folder the user typed, resolved: an absolute path as typed (without '..'), or a path that stays
    inside `root` (ComfyUI's input or output folder) even after '..' and links."""
    path = Path(os.path.expanduser(text))
    if path.is_absolute():
        if ".." in path.parts:
            raise InputError(f"The {what} {text} contains '..': type its full path without '..'")
        return Path(os.path.realpath(path))
    if not is_inside(Path(root) / path, root):
        raise InputError(f"The {what} {text} leads outside ComfyUI's {root_name} folder (through '..' or a "
                         f"link): use a folder inside {root}, or type the folder's absolute path")
    return Path(os.path.realpath(Path(root) / path))


OUTPUT_ANYWHERE_ENV = "LIKENESS_DATASET_OUTPUT_ANYWHERE"


def resolve_destination(output_folder: str | None, trigger: str, output_root: str | os.PathLike,
                        source: Path, anywhere: bool = False) -> Path:
    """Where the set goes: inside ComfyUI's output folder (a shared workflow must not write, or replace, a
    folder anywhere on the disk), unless the user allowed it outside the workflow (`anywhere`); never the
    photo folder, never inside it or around it, never someone else's folder."""
    root = Path(os.path.realpath(output_root))
    text = (output_folder or "").strip().strip('"').strip("'")
    if not text:
        dest = root / DATASETS / trigger
    else:
        dest = typed_folder(text, root, "output folder", "output")
        if not anywhere and not is_inside(dest, root):
            raise InputError(f"The output folder {text} is outside ComfyUI's output folder ({root}): give a folder "
                             f"inside it (relative paths start there). To let the loader write elsewhere, set "
                             f"{OUTPUT_ANYWHERE_ENV}=1 in the environment that starts ComfyUI, or "
                             f'"dataset_output_anywhere": true in the pack\'s config.json')
    if dest == source or is_inside(source, dest) or is_inside(dest, source):
        raise InputError(f"The output folder {dest} overlaps the photo folder {source}: the set must go to a "
                         "separate folder, so your originals are never touched")
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not (dest / MANIFEST).exists())):
        raise InputError(f"{dest} already exists and was not made by the Likeness loader: choose a new or empty "
                         "output folder (the loader replaces its folder's contents)")
    return dest


def folder_fingerprint(folder: str, input_root: str | os.PathLike, dest: str | os.PathLike | None = None) -> str:
    """Changes when a photo or caption in `folder` changes (names, sizes, modification times), or when a set
    this process wrote at `dest` has been deleted; ComfyUI re-runs the loader only then. (Writing the set
    does not change it, so the run after the first comes from ComfyUI's cache.)"""
    digest = hashlib.sha256()
    try:
        source = resolve_source(folder, input_root)
        entries = sorted(os.scandir(source), key=lambda e: e.name)
    except (InputError, OSError) as exc:
        return f"unusable:{exc}"
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        if not entry.is_dir():
            digest.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    if dest is not None and os.path.realpath(dest) in _WRITTEN and not (Path(dest) / MANIFEST).exists():
        digest.update(b"the prepared set was deleted")
    return digest.hexdigest()


def default_destination(trigger_word: str, output_folder: str | None, output_root: str | os.PathLike) -> Path:
    """The set's folder for the fingerprint (no checks: the run itself reports bad paths)."""
    text = (output_folder or "").strip().strip('"').strip("'")
    if not text:
        return Path(output_root) / DATASETS / (trigger_word or "").strip()
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else Path(output_root) / path


# --- which files ----------------------------------------------------------------------------------

def _scan(source: Path, dest: Path, crop: str, size: int, convert: bool, report: PrepReport) -> list[_Photo]:
    files = sorted((p for p in source.iterdir() if not p.name.startswith(".")), key=lambda p: (p.name.casefold(), p.name))
    if not files:
        raise InputError(f"The photo folder {source} is empty: put 20–30 photos of the person in it "
                         "(.jpg, .jpeg or .png)")
    texts = {p.stem: p for p in files if p.suffix.lower() == ".txt"}
    unconverted: dict[str, int] = {}
    others: dict[str, int] = {}
    chosen: list[Path] = []
    for path in files:
        if path.is_symlink() and not is_inside(path, source):
            report.skipped.append(f"{path.name}: a link to a file outside the photo folder (refused)")
            continue
        if path.is_dir() or path.suffix.lower() == ".txt":
            continue
        kind = kind_of(path)
        if kind == "native" or (kind == "convertible" and convert):
            chosen.append(path)
        elif kind == "convertible":
            unconverted[path.suffix.lower()] = unconverted.get(path.suffix.lower(), 0) + 1
        else:
            others[path.suffix.lower() or "(no extension)"] = others.get(path.suffix.lower() or "(no extension)", 0) + 1
    if unconverted:
        found = ", ".join(f"{n} {ext} file{'s' if n != 1 else ''}" for ext, n in sorted(unconverted.items()))
        report.warnings.append(f"found {found}: Replicate accepts only .jpg/.jpeg/.png; enable convert to "
                               "include them")
    if others:
        report.warnings.append("ignored files that are not photos: "
                               + ", ".join(f"{n} × {ext}" for ext, n in sorted(others.items())))
    if not chosen:
        advice = (f" (found {', '.join(f'{n} {e}' for e, n in sorted(unconverted.items()))}: enable convert to "
                  "use them)") if unconverted else ""
        raise InputError(f"No supported photos in {source}: the loader reads {', '.join(NATIVE)}"
                         f"{' and converts .webp/.heic/.tif/.bmp/.gif' if convert else ''}{advice}")
    names = _output_names(chosen)
    photos = []
    for path in chosen:
        try:
            st = path.stat()
        except OSError as exc:   # a dangling link, a file deleted meanwhile, no permission
            report.skipped.append(f"{path.name}: cannot be read ({exc.strerror or exc})")
            continue
        key = {"source": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
               "crop": crop, "size": size, "pipeline": PIPELINE}
        photos.append(_Photo(path, names[path], texts.get(path.stem), key))
    return photos


def _output_names(paths: list[Path]) -> dict[Path, str]:
    """Stable, safe, unique `.jpg` names from the originals' names (same folder → same names)."""
    names: dict[Path, str] = {}
    taken: set[str] = set()
    for path in paths:
        stem = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
        stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "photo"
        candidate, n = stem, 2
        while candidate.casefold() in taken:
            candidate, n = f"{stem}-{n}", n + 1
        taken.add(candidate.casefold())
        names[path] = candidate + ".jpg"
    return names


# --- making the photos ----------------------------------------------------------------------------

def _previous_manifest(dest: Path) -> dict:
    _recover_interrupted_swap(dest)
    manifest = read_json(dest / MANIFEST, default=None) if dest.exists() else None
    if not isinstance(manifest, dict):
        return {}
    return {item["source"]: item for item in manifest.get("items", []) if isinstance(item, dict) and "source" in item}


def _build(photos: list[_Photo], dest: Path, crop: str, size: int, previous: dict, report: PrepReport,
           progress: Progress, workers: int | None, identity: LoaderIdentity) -> tuple[Path, list[_Made]]:
    building = dest.parent / f".{dest.name}.building-{uuid.uuid4().hex[:8]}"
    building.mkdir(parents=True)
    try:
        made: dict[int, _Made] = {}
        todo = []
        for i, photo in enumerate(photos):
            reused = _reuse(photo, dest, building, previous.get(photo.key["source"]))
            if reused is not None:
                made[i] = reused
            else:
                todo.append(i)
        todo.sort(key=lambda i: -photos[i].key["bytes"])    # largest first: the last photo leaves a short tail
        report.reused = len(made)
        total, done = len(photos), len(made)
        progress.update(done, total, f"{done} of {total} photos ready")
        workers = max(1, min(workers or min(usable_cores(), MAX_WORKERS), len(todo) or 1))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="likeness-prep") as pool:
            pending = {pool.submit(_make_photo, photos[i], building, crop, size, identity): i for i in todo}
            while pending:
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                if progress.interrupted():
                    for future in pending:
                        future.cancel()
                    raise Interrupted(f"Stopped preparing photos; the set in {dest} was left as it was")
                for future in finished:
                    i = pending.pop(future)
                    done += 1
                    try:
                        made[i] = future.result()
                        report.processed += 1
                        report.converted += kind_of(photos[i].source) != "native"
                    except UnreadablePhoto as exc:
                        report.skipped.append(f"{photos[i].source.name}: {exc}")
                    progress.update(done, total, f"{done} of {total} photos ready ({photos[i].source.name})")
        return building, [made[i] for i in sorted(made)]
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _reuse(photo: _Photo, dest: Path, building: Path, old: dict | None) -> _Made | None:
    """The photo as made last time, if its original and the settings are unchanged and the file is intact."""
    if not old or any(old.get(k) != v for k, v in photo.key.items()):
        return None
    previous_file = dest / old.get("image", "")
    try:
        if not previous_file.is_file() or sha256_file(previous_file) != old.get("sha256"):
            return None
        target = building / photo.name
        try:
            os.link(previous_file, target)
        except OSError:
            shutil.copy2(previous_file, target)
        facts = PhotoFacts(photo.name, tuple(old["source_size"]), int(old["used_side"]), int(old["phash"], 16),
                           float(old["sharpness"]), old.get("face", ""))
        return _Made(photo, old["sha256"], int(old["width"]), int(old["height"]), facts)
    except (KeyError, ValueError, TypeError, OSError):
        return None


def _make_photo(photo: _Photo, building: Path, crop: str, size: int, identity: LoaderIdentity) -> _Made:
    """Reads, orients, crops, resizes and writes one photo (runs in a worker thread)."""
    img, full = open_upright(photo.source, scale_to=size, square=crop != "none")
    refused = too_small(full, size)
    if refused:
        raise UnreadablePhoto(refused)
    faces = identity.faces(img)          # found once: for the crop, the report and the embedding
    chosen = choose_crop(img, crop, faces)
    left, top, right, bottom = chosen.box
    if crop == "none":
        scale = size / max(right - left, bottom - top)
        out_size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
        used_side = max(full)
    else:
        out_size, used_side = (size, size), min(full)
    # BICUBIC (antialiased in Pillow) from the draft-decoded photo matches a full-size LANCZOS within noise
    # (PSNR ~49 dB, see tools/benchmarks/dataset_prep.py) at three quarters of the cost
    out = img.resize(out_size, RESAMPLE, box=chosen.box, reducing_gap=3.0)
    buffer = io.BytesIO()
    icc = img.info.get("icc_profile")
    out.save(buffer, "JPEG", quality=JPEG_QUALITY, subsampling=0, **({"icc_profile": icc} if icc else {}))
    data = buffer.getvalue()
    (building / photo.name).write_bytes(data)
    face = "" if crop != "face" else ("centre" if chosen.fell_back else "found")
    grey = check_copy(out)
    facts = PhotoFacts(photo.name, full, used_side, perceptual_hash(grey), sharpness(grey), face)
    sha = sha256_bytes(data)
    kept = _faces_in_crop(faces, chosen.box, out.width) if identity.detector else None
    return _Made(photo, sha, out.width, out.height, facts, out, faces=kept, chip=identity.chip(sha, out, kept))


def _faces_in_crop(faces: list[Face], box: tuple[int, int, int, int], out_width: int) -> list[Face]:
    """The faces whose centre is inside the crop, in the prepared photo's pixels."""
    left, top, right, bottom = box
    scale = out_width / (right - left)
    inside = [f for f in faces if left <= (f.box[0] + f.box[2]) / 2 < right and top <= (f.box[1] + f.box[3]) / 2 < bottom]
    return [f.moved(scale, -left, -top) for f in inside]


# --- captions, checks and the swap ----------------------------------------------------------------

def _finish(built: tuple[Path, list[_Made]], dest: Path, trigger: str, crop: str, size: int, previous: dict,
            report: PrepReport, identity: LoaderIdentity, progress: Progress) -> PreparedDataset:
    building, made = built
    try:
        if not made:
            raise InputError("None of the photos could be read:\n" + "\n".join(f"- {s}" for s in report.skipped)
                             + "\nReplace or re-export them and run again")
        report.photos = len(made)
        captions = [_caption(m, dest, building, previous, report) for m in made]
        _flag_captions(made, captions, trigger, report)
        report.warnings += photo_warnings([m.facts for m in made], size)
        report.warnings += _identity_warnings(made, building, identity, report, progress)
        report.warnings += count_warnings(len(made))
        atomic_write_json(building / MANIFEST, _manifest(made, trigger, crop, size))
        _swap_into_place(building, dest)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    items = tuple(DatasetItem(image=m.photo.name, sha256=m.sha256, source=str(m.photo.source), caption=c,
                              width=m.width, height=m.height) for m, c in zip(made, captions))
    dataset = Dataset(folder=str(dest), trigger_word=trigger, items=items,
                      warnings=tuple(f"skipped {s}" for s in report.skipped) + tuple(report.warnings))
    images = [m.image if m.image is not None else _read_back(dest / m.photo.name) for m in made]
    log.info("likeness: %s", report.text().splitlines()[0])
    return PreparedDataset(dataset, images, report)


def _identity_warnings(made: list[_Made], building: Path, identity: LoaderIdentity, report: PrepReport,
                       progress: Progress) -> list[str]:
    """The identity check over the whole set, after the photos are made: the workers cut each new photo's face
    chip beside its crop; here the chips are embedded as one batch. Reused photos take their embedding from the
    cache (or the file)."""
    photos = [FacePhoto(building / m.photo.name, m.sha256, m.image, m.faces, m.chip) for m in made]
    faces = identity.photo_faces(photos, progress)
    faceless = {m.facts.name for m in made if m.facts.face == "centre"}     # photo_warnings said so already
    duplicates = {(a, b) for a, b, _ in near_duplicates({m.facts.name: m.facts.phash for m in made})}
    report.identity, lines = identity.warnings(faces, faceless, duplicates)
    return lines


def _caption(made: _Made, dest: Path, building: Path, previous: dict, report: PrepReport) -> str:
    """The photo's caption, written as UTF-8 beside the prepared photo.

    The `name.txt` beside the original is the source; the set's own `.txt` may since have been written by the
    captioner or edited by hand. Whichever changed since the last run wins (the newer file when both did), so
    a re-run never throws away a caption someone wrote.
    """
    photo = made.photo
    source_text = read_caption(photo.caption_source, report).strip() if photo.caption_source else ""
    text = source_text
    old = previous.get(photo.key["source"])
    kept = dest / Path(old["image"]).with_suffix(".txt") if old and old.get("image") else None
    if kept is not None and kept.is_file():
        kept_text = read_caption(kept, report).strip()
        source_changed = _text_hash(source_text) != old.get("caption_source")
        kept_edited = _text_hash(kept_text) != old.get("caption_written")
        if not source_changed:
            text = kept_text
        elif kept_edited and kept_text != source_text:
            newer_source = photo.caption_source is not None and \
                photo.caption_source.stat().st_mtime_ns > kept.stat().st_mtime_ns
            text = source_text if newer_source else kept_text
            report.warnings.append(f"{photo.caption_source.name if photo.caption_source else kept.name}: the "
                                   f"caption changed both beside the original and in the set; kept the newer "
                                   f"({'original' if newer_source else 'set'})")
    made.caption_source, made.caption_written = _text_hash(source_text), _text_hash(text)
    if text:
        (building / Path(photo.name).with_suffix(".txt")).write_text(text + "\n", encoding="utf-8")
    return text


def _text_hash(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def read_caption(path: Path, report: PrepReport | None = None) -> str:
    """A caption file's text: UTF-8 (with or without BOM), else UTF-16 with BOM, else Windows-1252, with a
    warning when it was not UTF-8. Line ends become "\n" (a caption written on Windows ends its lines with
    CRLF), and NUL and other control characters are removed (with a warning): the caption goes to the trainer
    as plain text."""
    text = _decode_caption(path, report).replace("\r\n", "\n").replace("\r", "\n")
    found = _CONTROL_CHARS.findall(text)
    if found:
        text = _CONTROL_CHARS.sub("", text)
        if report is not None:
            report.warnings.append(f"{path.name} held {len(found)} NUL or control character"
                                   f"{'s' if len(found) != 1 else ''}: removed from the prepared caption")
    return text


def _decode_caption(path: Path, report: PrepReport | None) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text, encoding = data.decode("utf-16"), "UTF-16"
    else:
        try:
            text, encoding = data.decode("cp1252"), "Windows-1252"
        except UnicodeDecodeError:
            text, encoding = data.decode("latin-1"), "Latin-1"
    if report is not None:
        report.warnings.append(f"{path.name} is not UTF-8: read it as {encoding}; check the accents in the "
                               "prepared caption (saved as UTF-8)")
    return text


def _flag_captions(made: list[_Made], captions: list[str], trigger: str, report: PrepReport) -> None:
    pattern = re.compile(rf"{re.escape(trigger)}(?![\w-])")
    wrong = [Path(m.photo.name).with_suffix(".txt").name for m, c in zip(made, captions) if c and not pattern.match(c)]
    if wrong:
        report.warnings.append(f"{len(wrong)} caption{'s' if len(wrong) != 1 else ''} do not start with the "
                               f"trigger word '{trigger}': {', '.join(wrong)}; start each caption with it")


def _manifest(made: list[_Made], trigger: str, crop: str, size: int) -> dict:
    return {"made_by": "likeness dataset loader", "version": 1, "trigger_word": trigger, "crop": crop, "size": size,
            "items": [{**m.photo.key, "image": m.photo.name, "sha256": m.sha256, "width": m.width,
                       "height": m.height, "source_size": list(m.facts.source_size),
                       "used_side": m.facts.used_side, "phash": f"{m.facts.phash:016x}",
                       "sharpness": m.facts.sharpness, "face": m.facts.face,
                       "caption_source": m.caption_source, "caption_written": m.caption_written} for m in made]}


def _swap_into_place(building: Path, dest: Path) -> None:
    """Replaces `dest` by `building`: two renames; a crash between them is repaired on the next run."""
    old = dest.parent / f".{dest.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.rename(dest, old)
    os.rename(building, dest)
    shutil.rmtree(old, ignore_errors=True)
    _WRITTEN.add(os.path.realpath(dest))


def _recover_interrupted_swap(dest: Path) -> None:
    """Puts back the previous set if a crash left it renamed away, and clears half-built sets."""
    old = dest.parent / f".{dest.name}.old"
    if old.is_dir() and not dest.exists():
        os.rename(old, dest)
    if dest.parent.is_dir():
        for stale in dest.parent.glob(f".{dest.name}.building-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _read_back(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")
