"""API keys: from the environment or a key file in the ComfyUI user directory, never from a widget.

The Replicate token and the Gemini key are the pack's own; the third-party tokens (Hugging Face, Civitai,
Weights & Biases) are handed only to Replicate's models as their secret inputs (`hf_token`, `hf_api_token`,
`civitai_api_token`, `wandb_api_key`), for gated LoRAs and the trainer's uploads and logs.

Every message the pack shows goes through `redact`, so a key that reached an exception text (a URL with
`?key=`, an SDK error echoing a header) is replaced before the user, the log or the history sees it; URLs the
pack stores (journal, result cache) go through `strip_url_secrets`, which drops token-like query parameters.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import InputError
from ..storage import warn_if_others_can_read

REPLICATE_ENV = ("REPLICATE_API_TOKEN",)
GEMINI_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
REPLICATE_FILE = "replicate_api_token"
GEMINI_FILE = "gemini_api_key"
# Third-party tokens: service → (environment variables, key file in the user folder)
THIRD_PARTY = {"hf": (("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), "hf_token"),
               "civitai": (("CIVITAI_API_TOKEN",), "civitai_api_token"),
               "wandb": (("WANDB_API_KEY",), "wandb_api_key")}

# Shapes of real keys, for text that carries a key we were not told about.
_KEY_SHAPES = re.compile(r"r8_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_\-]{30,}|hf_[A-Za-z0-9]{30,}")
# Query parameters that carry a credential: a token or key (never welcome in a widget), or the signature of a
# signed URL (flux-dev-lora takes those; sent as they are, never stored or shown).
_TOKEN_PARAM = re.compile(r"^(token|access_token|auth_token|api_?key|key|hf_token|civitai_token|auth)$",
                          re.IGNORECASE)
_SECRET_PARAM = re.compile(rf"{_TOKEN_PARAM.pattern}|^(sig|signature|x-amz-(signature|credential|security-token)|"
                           r"x-goog-(signature|credential)|googleaccessid)$", re.IGNORECASE)
_URL_PARAM_VALUE = re.compile(r"(?<=[?&])([A-Za-z0-9_.-]+)=([^&#\s\"'<>]*)")


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


def third_party_token(service: str, user_dir: str | Path | None) -> str | None:
    """The user's token for "hf", "civitai" or "wandb" (environment first, then its key file), or None."""
    names, file = THIRD_PARTY[service]
    return _from_env(names) or _from_file(user_dir, file)


def known_secrets(user_dir: str | Path | None = None) -> list[str]:
    third = [name for names, _ in THIRD_PARTY.values() for name in names]
    values = [os.environ.get(name, "") for name in (*REPLICATE_ENV, *GEMINI_ENV, *third)]
    files = (REPLICATE_FILE, GEMINI_FILE, *(file for _, file in THIRD_PARTY.values()))
    values += [_from_file(user_dir, name) or "" for name in files]
    return [v.strip() for v in values if len(v.strip()) >= 8]


def redact(text: str, user_dir: str | Path | None = None) -> str:
    for secret in known_secrets(user_dir):
        text = text.replace(secret, "***")
    text = _URL_PARAM_VALUE.sub(lambda m: f"{m[1]}=***" if _SECRET_PARAM.match(m[1]) else m[0], text)
    return _KEY_SHAPES.sub("***", text)


def strip_url_secrets(url: str) -> str:
    """`url` without its token-like query parameters (what the pack stores and shows of a URL)."""
    if "?" not in url:
        return url
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _SECRET_PARAM.match(k)]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def url_token_params(url: str) -> list[str]:
    """The names of `url`'s query parameters that carry a token or an API key (not a signed URL's signature)."""
    if "?" not in url:
        return []
    return [k for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True) if _TOKEN_PARAM.match(k)]


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
    if value:
        warn_if_others_can_read(Path(user_dir) / name, "key file")
    return value or None


def _file_hint(user_dir: str | Path | None, name: str) -> str:
    return str(Path(user_dir) / name) if user_dir else f"<ComfyUI user dir>/likeness/{name}"
