"""API keys: from the environment or a key file in the ComfyUI user directory, never from a widget.

Every message the pack shows goes through `redact`, so a key that reached an exception text (a URL with
`?key=`, an SDK error echoing a header) is replaced before the user, the log or the history sees it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

REPLICATE_ENV = ("REPLICATE_API_TOKEN",)
GEMINI_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
REPLICATE_FILE = "replicate_api_token"
GEMINI_FILE = "gemini_api_key"

# Shapes of real keys, for text that carries a key we were not told about.
_KEY_SHAPES = re.compile(r"r8_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_\-]{30,}")


def replicate_token(user_dir: str | Path | None) -> str:
    token = _from_env(REPLICATE_ENV) or _from_file(user_dir, REPLICATE_FILE)
    if not token:
        raise InputError(
            "No Replicate API token: set REPLICATE_API_TOKEN in the environment that starts ComfyUI, or put "
            f"the token alone in {_file_hint(user_dir, REPLICATE_FILE)}. (Tokens never go in a widget: "
            "widgets are saved into workflows and image metadata.)")
    return token


def gemini_key(user_dir: str | Path | None) -> str | None:
    """The Gemini API key, or None (Vertex AI with application-default credentials needs none)."""
    return _from_env(GEMINI_ENV) or _from_file(user_dir, GEMINI_FILE)


def known_secrets(user_dir: str | Path | None = None) -> list[str]:
    values = [os.environ.get(name, "") for name in (*REPLICATE_ENV, *GEMINI_ENV)]
    values += [_from_file(user_dir, name) or "" for name in (REPLICATE_FILE, GEMINI_FILE)]
    return [v for v in values if len(v) >= 8]


def redact(text: str, user_dir: str | Path | None = None) -> str:
    for secret in known_secrets(user_dir):
        text = text.replace(secret, "***")
    return _KEY_SHAPES.sub("***", text)


def _from_env(names: tuple[str, ...]) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _from_file(user_dir: str | Path | None, name: str) -> str | None:
    if user_dir is None:
        return None
    try:
        value = (Path(user_dir) / name).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return value or None


def _file_hint(user_dir: str | Path | None, name: str) -> str:
    return str(Path(user_dir) / name) if user_dir else f"<ComfyUI user dir>/likeness/{name}"
