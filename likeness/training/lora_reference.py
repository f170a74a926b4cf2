"""The training photos' face reference, written into a personal LoRA's metadata so its images can be scored for
likeness on any machine, without the photos (likeness/loras/lora_identity.py reads it).

- At install, the trainer stores the reference of the set it trained on (`training_reference`): dlib's, the
  backend every machine with the pack has. Its photos were embedded by the dataset loader's identity check
  already (same cache), so this usually embeds nothing.
- A LoRA installed before the pack did that gets it with `attach_reference`: the file is rewritten with the
  entry added to its metadata (the tensors are copied byte for byte) and replaces the old one atomically. The
  pack's records that know the file by its sha256 follow it: the training ledger (so queuing the trainer again
  still reuses the LoRA) and the strength sweeps (so the stack's `measured` mode still finds them).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import InputError, LikenessError
from ..identity import ReferenceIdentity, load_backend, reference_from_photos
from ..identity.reference import CACHE_FOLDER
from ..loras.lora_identity import reference_metadata, stored_reference
from ..loras.sweep_results import SweepResults
from ..progress import Interrupted, Progress
from ..storage import sha256_file
from .lora_install import write_with_metadata
from .training_ledger import TrainingLedger

log = logging.getLogger("likeness")
INSTALL_BACKEND = "dlib"        # offline on every machine, so the LoRA scores wherever it goes


def training_reference(photos, user_dir: str | Path, progress: Progress | None = None,
                       backend: str = INSTALL_BACKEND, models_dir: str | Path | None = None) -> ReferenceIdentity:
    """The reference identity of the training photos (a prepared dataset, a folder or a list of files), with
    their embeddings taken from (and kept in) the pack's embedding cache."""
    scorer = load_backend(backend, models_dir)
    return reference_from_photos(photos, scorer, Path(user_dir) / CACHE_FOLDER, progress)


def has_reference(path: str | Path, reference: ReferenceIdentity) -> bool:
    """Whether the LoRA file at `path` already carries this very reference."""
    try:
        stored = stored_reference(path)
    except InputError:             # a damaged entry: replaced by the new one
        return False
    return stored is not None and (stored.backend, stored.content_hash) == (reference.backend, reference.content_hash)


def attach_reference(path: str | Path, reference: ReferenceIdentity, user_dir: str | Path) -> bool:
    """Writes `reference` into the metadata of the LoRA file at `path`, in place; False when it had it already."""
    path = Path(path)
    if has_reference(path, reference):
        return False
    old_sha = sha256_file(path)
    partial = path.with_name(f".{path.name}.likeness-reference")
    try:
        write_with_metadata(path, partial, reference_metadata(reference))
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InputError(f"Could not write the face reference into {path.name} ({exc.strerror}); the LoRA is "
                         "unchanged. Check that the loras folder is writable and has room for a copy of it.") from None
    new_sha = sha256_file(path)
    moved = TrainingLedger(user_dir).relink_lora(old_sha, new_sha)
    sweeps = SweepResults(user_dir).relink(old_sha, new_sha)
    log.info("Likeness: stored the face reference of %d photos (%s) in %s (%d training record(s), %d sweep(s) "
             "follow the file)", len(reference.names), reference.backend, path.name, moved, sweeps)
    return True


def reference_note(reference: ReferenceIdentity | None, why_not: str = "") -> str:
    """What the user is told about the LoRA's stored reference."""
    if reference is None:
        return (f"No face reference was stored in the LoRA ({why_not}): connect your photos' dataset to the "
                "samplers to score their images.")
    return (f"Stored the face reference of {len(reference.names)} training photo(s) ({reference.backend}) in the "
            "LoRA: the samplers score its images for likeness on any machine.")


def safe_training_reference(photos, user_dir: str | Path,
                            progress: Progress | None = None) -> tuple[ReferenceIdentity | None, str]:
    """`training_reference`, or None and why: a paid training is installed whatever happens to its reference."""
    try:
        return training_reference(photos, user_dir, progress), ""
    except Interrupted:
        raise
    except LikenessError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - the face model failing must never stop (or re-pay) an install
        log.exception("Likeness: the training photos' face reference could not be made")
        return None, f"the face model failed: {exc}"
