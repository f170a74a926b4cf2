"""Files the pack writes: atomic writes, content hashes, and paths confined to allowed folders."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from .errors import InputError

log = logging.getLogger("likeness")
_APPEND_LOCK = threading.Lock()


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


def append_json_line(path: str | os.PathLike, record: Any) -> None:
    """Appends `record` as one JSON line, in one write (a reader never sees half of it). A line torn by an
    earlier crash is closed first, so the new record starts a line of its own and is never lost with it."""
    path = Path(path)
    line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _APPEND_LOCK:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "a+b", buffering=0) as f:
            if f.seek(0, os.SEEK_END):
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = b"\n" + line
            f.write(line)


def read_json_lines(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSON-lines file, oldest first ([] when it does not exist). A line that is not a
    JSON object (torn by a crash, edited by hand) is skipped with a warning naming it, never an error."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            log.warning("likeness: %s line %d is not a JSON object and was skipped", path.name, n)
    return records


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def json_digest(value: Any, length: int = 64) -> str:
    """The sha256 (hex, first `length` digits) of `value` as sorted JSON: the same settings give the same key."""
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str).encode())[:length]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_WARNED: set[str] = set()          # warnings given once per process


def warn_if_others_can_read(path: str | os.PathLike, what: str = "file") -> bool:
    """Logs a warning, once per file and mode, when other local users may read `path` (group or other bits
    set; POSIX only). True when it warned. The message names the file and the fix, never its content."""
    if os.name != "posix":
        return False
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        return False
    if not mode & 0o077:
        return False
    key = f"{os.path.realpath(path)}:{mode:o}"
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("likeness: the %s %s can be read by other users of this machine (mode %o): run "
                    "chmod 600 '%s' so only you can read it", what, path, mode, path)
    return True


def adopt_old_folder(old: str | os.PathLike, new: str | os.PathLike) -> None:
    """Moves what `old` holds into `new` (a file already in `new` wins) and removes `old` once empty. Costs one
    stat when there is nothing to move, so it may run on every use: a file put in the old place later (by
    someone following older instructions) is still moved in. What cannot move is named once in the log."""
    old, new = Path(old), Path(new)
    if not old.is_dir() or old.is_symlink():
        return
    new.mkdir(parents=True, exist_ok=True)
    kept = []
    for item in sorted(old.iterdir()):
        target = new / item.name
        if target.exists():
            kept.append(item.name)
            continue
        try:
            os.replace(item, target)
        except OSError as exc:
            kept.append(f"{item.name} ({exc.strerror or exc})")
    if kept:
        message = (f"likeness: {old} holds {', '.join(kept)}, already in {new} (or not movable): left where it "
                   f"is; the pack reads {new}")
        if message not in _WARNED:
            _WARNED.add(message)
            log.warning(message)
        return
    try:
        old.rmdir()
        log.info("likeness: moved the pack's data from %s to %s", old, new)
    except OSError:
        pass


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
