"""The person a personal LoRA was trained on, when its file says so: the reference identity in its metadata.

A Likeness-trained LoRA can carry its training set's reference identity (the photos' face embeddings, not the
photos: `ReferenceIdentity.to_dict()`, about 0.7 KB per photo) as JSON under `REFERENCE_KEY` in the safetensors
metadata, so it scores likeness on any machine without the training photos. The installer writes it (the trainer
at install time, and into a LoRA installed before: likeness/training/lora_reference.py) with `reference_metadata`;
`stored_reference` reads it, for every node that scores against "the stack's personal LoRA".
"""
from __future__ import annotations

import json
import os

from ..errors import InputError, LikenessError
from ..identity import ReferenceIdentity
from .lora_formats import read_header

REFERENCE_KEY = "likeness_reference"


def reference_metadata(reference: ReferenceIdentity) -> dict[str, str]:
    """The metadata entry that carries `reference` in a LoRA file (safetensors metadata values are strings)."""
    return {REFERENCE_KEY: json.dumps(reference.to_dict(), sort_keys=True, separators=(",", ":"))}


def stored_reference(path: str | os.PathLike) -> ReferenceIdentity | None:
    """The reference identity stored in the LoRA file at `path`, or None when it has none."""
    try:
        _, metadata = read_header(path)
    except (OSError, ValueError, LikenessError):
        return None
    raw = metadata.get(REFERENCE_KEY)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise InputError(f"{os.path.basename(path)} carries a damaged reference identity ({REFERENCE_KEY} is not "
                         "JSON): give the reference photos instead") from None
    return ReferenceIdentity.from_dict(data)
