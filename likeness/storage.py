"""Files the pack writes: atomic writes, content hashes, and paths confined to allowed folders."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import InputError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` so that readers see either the old file or the whole new one, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, value: Any) -> Path:
    return atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in `path`, or `default` when the file does not exist."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); fix or delete it") from exc


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when `path`, with links and `..` resolved, lies inside `root` (also resolved)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def confine(path: str | os.PathLike, roots: list[str | os.PathLike], what: str = "path") -> Path:
    """`path` resolved, if it lies inside one of `roots`; otherwise an InputError naming the roots."""
    for root in roots:
        if is_inside(path, root):
            return Path(os.path.realpath(path))
    allowed = ", ".join(str(r) for r in roots)
    raise InputError(f"The {what} {path} is outside the folders the pack may use ({allowed}); "
                     f"move it inside one of them or give a path there")
