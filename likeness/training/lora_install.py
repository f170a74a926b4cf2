"""Installs a trained LoRA from Replicate's `trained_model.tar` into ComfyUI's `models/loras/`.

Only `output/flux_train_replicate/lora.safetensors` is taken, read through `tarfile.extractfile` into a file
of our own choosing (no member path ever becomes a path on disk). A tar with a link, a device, an absolute
path or a `..` in any member is refused whole, and so is a LoRA over the size limit. The file must parse as
safetensors with LoRA keys; the pack's metadata (trigger word, trainer version, inputs, training id, dataset
hash, cost) is written into its `__metadata__`, and the result appears in `models/loras/` by an atomic
rename, so ComfyUI never lists a partial file. A different file already under the name is never replaced:
the LoRA gets the next free versioned name (`name-v2.safetensors`) and the caller is told.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import struct
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from ..errors import InputError, ServiceError
from ..storage import sha256_file

log = logging.getLogger("likeness.lora_install")

LORA_MEMBER = "output/flux_train_replicate/lora.safetensors"
MAX_LORA_BYTES = int(os.environ.get("LIKENESS_MAX_LORA_BYTES", str(2 << 30)))   # rank 128, all layers ≈ 1.4 GB
MAX_HEADER_BYTES = 100 << 20
_LORA_KEY = re.compile(r"\.(lora_A|lora_B|lora_down|lora_up)\.weight$|\.lora\.(down|up)\.weight$")
_NAME_OK = re.compile(r"[^A-Za-z0-9._-]+")
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass(frozen=True)
class InstalledLora:
    path: Path
    name: str                   # as ComfyUI lists it (relative to models/loras), e.g. "pelarbues.safetensors"
    sha256: str
    tensors: int
    renamed_from: str = ""      # the name asked for, when a different file already had it

    @property
    def note(self) -> str:
        if not self.renamed_from:
            return f"Installed {self.name} in models/loras."
        return (f"models/loras already has a different {self.renamed_from}; kept it and installed this "
                f"LoRA as {self.name}.")


def install_lora(fetch_tar: Callable[[IO[bytes], int], int], loras_dir: str | Path, name: str,
                 metadata: dict[str, object], *, max_bytes: int = MAX_LORA_BYTES) -> InstalledLora:
    """Downloads the weights tar with `fetch_tar(fileobj, max_bytes)` and installs its LoRA as `name`."""
    loras_dir = Path(loras_dir)
    loras_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".likeness-install-", dir=loras_dir))
    try:
        tar_path = work / "trained_model.tar"
        with open(tar_path, "wb") as out:
            fetch_tar(out, max_bytes + (64 << 20))   # room for config.yaml and captions beside the LoRA
        raw = work / "lora.raw"
        extract_lora(tar_path, raw, max_bytes=max_bytes)
        tar_path.unlink()
        tensors = check_lora(raw)
        final = work / "lora.final"
        write_with_metadata(raw, final, metadata)
        return place(final, loras_dir, name, tensors)
    except OSError as exc:
        if exc.errno not in _DISK_FULL:
            raise
        raise InputError(f"The disk holding {loras_dir} is full ({exc.strerror}): the LoRA could not be "
                         "installed and nothing was left behind. Free some space there (a LoRA takes up to a few "
                         "hundred MB, twice that while it is installed) and queue again: the finished training "
                         "is downloaded again, it will not be paid again.") from None
    finally:
        for path in work.glob("*"):
            path.unlink(missing_ok=True)
        work.rmdir()


def extract_lora(tar_path: str | Path, out_path: str | Path, *, max_bytes: int = MAX_LORA_BYTES) -> int:
    """Copies the tar's `lora.safetensors` into `out_path`; refuses unsafe or unexpected archives."""
    found: tarfile.TarInfo | None = None
    try:
        with tarfile.open(tar_path, mode="r:*") as tar:
            while (member := tar.next()) is not None:
                _check_member(member)
                if _is_lora_candidate(member.name):
                    if found is not None:
                        raise ServiceError("The trained weights hold more than one .safetensors file; the pack "
                                           "cannot tell which is the LoRA. Download it from Replicate by hand.")
                    if member.size > max_bytes:
                        raise ServiceError(f"The LoRA in the trained weights says it is "
                                           f"{_mb(member.size)}, over the {_mb(max_bytes)} "
                                           "limit for a LoRA: refused. (Raise LIKENESS_MAX_LORA_BYTES if "
                                           "you trained a very large one.)")
                    found = member
                    _copy_member(tar, member, out_path, max_bytes)
    except tarfile.TarError as exc:
        raise ServiceError(f"The trained weights from Replicate are not a readable tar ({exc}); "
                           "download them from the training's page instead.") from None
    if found is None:
        raise ServiceError(f"The trained weights have no {LORA_MEMBER}; the trainer's output format may have "
                           "changed. Download the weights from the training's page on Replicate.")
    return found.size


def check_lora(path: str | Path) -> int:
    """Parses the safetensors header; the number of tensors. Refuses a file that is not a LoRA."""
    header, data_start = read_header(path)
    size = Path(path).stat().st_size
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = 0
    for key, info in tensors.items():
        if not isinstance(info, dict) or "data_offsets" not in info or "shape" not in info:
            raise ServiceError(f"The LoRA file is damaged (tensor {key!r} has no shape or offsets).")
        end = max(end, int(info["data_offsets"][1]))
    if data_start + end > size:
        raise ServiceError("The LoRA file is cut short: its tensors run past the end of the file.")
    lora_keys = [k for k in tensors if _LORA_KEY.search(k)]
    if not lora_keys:
        raise ServiceError("The trained weights are a safetensors file without LoRA keys (lora_A/lora_B); "
                           "ComfyUI could not load it as a LoRA.")
    return len(tensors)


def read_header(path: str | Path) -> tuple[dict, int]:
    """(header dict, offset of the tensor data) of a safetensors file."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ServiceError("The LoRA file is empty or truncated (no safetensors header).")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            raise ServiceError("The LoRA file is not safetensors (its header length is impossible).")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ServiceError("The LoRA file is not safetensors (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise ServiceError("The LoRA file is not safetensors (its header is not an object).")
    return header, 8 + length


def write_with_metadata(src: str | Path, dst: str | Path, extra: dict[str, object]) -> None:
    """Copies a safetensors file, adding `extra` to its `__metadata__` (values as strings, as the format wants)."""
    header, data_start = read_header(src)
    metadata = dict(header.get("__metadata__") or {})
    metadata.update({k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in extra.items()})
    header["__metadata__"] = metadata
    encoded = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()   # same LoRA → same bytes
    encoded += b" " * (-len(encoded) % 8)        # keep the tensor data 8-byte aligned
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(struct.pack("<Q", len(encoded)))
        fout.write(encoded)
        fin.seek(data_start)
        while block := fin.read(1 << 20):
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())


def place(src: Path, loras_dir: Path, name: str, tensors: int) -> InstalledLora:
    """Moves `src` to `loras_dir/<name>.safetensors` atomically, or to a versioned name if that is taken."""
    stem = safe_stem(name)
    digest = sha256_file(src)
    wanted = f"{stem}.safetensors"
    for n in range(1, 1000):
        candidate = wanted if n == 1 else f"{stem}-v{n}.safetensors"
        target = loras_dir / candidate
        if target.exists():
            if sha256_file(target) == digest:
                src.unlink()
                return InstalledLora(target, candidate, digest, tensors, "" if n == 1 else wanted)
            continue
        try:
            os.link(src, target)        # fails if the name appeared meanwhile: never replaces a file
        except FileExistsError:
            continue
        except OSError:
            if target.exists():
                continue
            os.replace(src, target)
        src.unlink(missing_ok=True)
        log.info("Likeness: installed LoRA %s", target)
        return InstalledLora(target, candidate, digest, tensors, "" if n == 1 else wanted)
    raise InputError(f"models/loras already has 999 versions of {wanted}; delete some or pick another name.")


def safe_stem(name: str) -> str:
    """A file stem from a user's or model's name: letters, digits, dot, dash, underscore."""
    stem = _NAME_OK.sub("-", name.removesuffix(".safetensors")).strip(".-")
    if not stem:
        raise InputError(f"{name!r} cannot be a LoRA file name; use letters, digits and dashes.")
    return stem[:120]


def _check_member(member: tarfile.TarInfo) -> None:
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts or member.name.startswith(("/", "\\")) or "\\" in member.name:
        raise ServiceError(f"The trained weights contain an entry outside the archive ({member.name!r}): "
                           "refused, nothing was extracted. Report this training to Replicate.")
    if member.issym() or member.islnk():
        raise ServiceError(f"The trained weights contain a link ({member.name!r} → {member.linkname!r}): "
                           "refused, nothing was extracted.")
    if not (member.isfile() or member.isdir()):
        raise ServiceError(f"The trained weights contain a special file ({member.name!r}): refused.")


def _is_lora_candidate(name: str) -> bool:
    return name.removeprefix("./").endswith(".safetensors")


def _copy_member(tar: tarfile.TarFile, member: tarfile.TarInfo, out_path: str | Path, max_bytes: int) -> None:
    if PurePosixPath(member.name.removeprefix("./")) != PurePosixPath(LORA_MEMBER):
        raise ServiceError(f"The trained weights hold {member.name!r} instead of {LORA_MEMBER}; the trainer's "
                           "output format may have changed. Download the weights from Replicate by hand.")
    source = tar.extractfile(member)
    if source is None:
        raise ServiceError(f"{member.name} in the trained weights cannot be read.")
    copied = 0
    with open(out_path, "wb") as out:
        while block := source.read(1 << 20):
            copied += len(block)
            if copied > max_bytes:
                raise ServiceError(f"The LoRA in the trained weights is over the {_mb(max_bytes)} limit.")
            out.write(block)
    if copied != member.size:
        raise ServiceError("The trained weights are cut short (the LoRA inside is incomplete); queue again to "
                           "download them again.")


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.0f} MB" if size >= 10 << 20 else f"{size / (1 << 20):.1f} MB"
