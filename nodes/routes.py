"""The pack's HTTP routes, for its canvas widgets.

GET  /likeness/captions?folder=<set>&trigger_word=…&forbidden_traits=…  → each image, its caption, lint flags
POST /likeness/caption {"folder", "image", "caption"}                   → saves one caption as a hand edit
GET  /likeness/lora_info?name=<LoRA file>                              → its key format, keys, trigger words
GET  /likeness/training/status                                        → the latest status of each training
GET  /likeness/journal?limit=N[&sort=likeness][&favourites=1][&min_score=S] → seed-journal entries, newest (or
                                                                        most alike) first
POST /likeness/battery/plan {"base", "variations", "expand"}           → how many trainings a battery makes

`folder` is a prepared set inside ComfyUI's output folder (relative to it, or absolute inside it); anything
else (`..`, a path outside, a link leading out) is refused with 403, before any file is touched. A LoRA
name is looked up in ComfyUI's loras folders only (403 for `..` or a path outside them).

A POST takes JSON only (415 otherwise: a page on another site can send a "simple" form or text/plain POST
without asking the browser first, but not JSON) and only from ComfyUI's own page (403 when the browser says
it comes from another origin), whatever address ComfyUI listens on. Under --multi-user the training
statuses and the journal are each user's own (nodes/users.py).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import web

from ..likeness.captions.caption_cache import CaptionFiles
from ..likeness.captions.caption_lint import IMAGE_SUFFIXES, lint_caption, parse_traits, review_folder
from ..likeness.errors import InputError
from ..likeness.loras.lora_formats import describe_lora
from ..likeness.generation.seed_journal import SORTS, SeedJournal, select_entries
from ..likeness.storage import is_inside
from ..likeness.training.battery import battery_config
from ..likeness.training.battery_plan import plan_battery
from ..likeness.training.training_status import status_board
from .host import output_dir, user_dir
from .request_guard import json_body
from .users import install, multi_user, request_user

log = logging.getLogger("likeness")
MAX_CAPTION_CHARS = 5000
MAX_JOURNAL_ENTRIES = 100
SAVE_FIELDS = {"folder": str, "image": str, "caption": str, "trigger_word": str, "forbidden_traits": str}
PLAN_FIELDS = ("base", "variations", "expand")
MAX_TABLE_CHARS = 20000


def register() -> None:
    """Adds the routes to the running server (nothing when imported outside ComfyUI)."""
    from server import PromptServer

    if PromptServer.instance is None:
        return
    install(PromptServer.instance)
    routes = PromptServer.instance.routes
    routes.get("/likeness/captions")(list_captions)
    routes.post("/likeness/caption")(save_caption)
    routes.get("/likeness/lora_info")(lora_info)
    routes.get("/likeness/training/status")(training_status)
    routes.get("/likeness/journal")(journal)
    routes.post("/likeness/battery/plan")(battery_plan)


async def list_captions(request: web.Request) -> web.Response:
    folder = dataset_folder(request.query.get("folder"))
    linked = sorted(p.name for p in folder.glob("*.txt") if p.is_symlink() and not is_inside(p, folder))
    if linked:   # a link could serve any file the server can read (a key file) as a "caption"
        raise web.HTTPForbidden(text=f"The set has caption files that are links leading out of it "
                                     f"({', '.join(linked)}); refusing to read through them")
    trigger = request.query.get("trigger_word", "")
    forbidden = parse_traits(request.query.get("forbidden_traits"))
    items = review_folder(folder, trigger, forbidden, CaptionFiles(user_dir()))
    return web.json_response({"folder": _relative(folder), "items": items})


async def save_caption(request: web.Request) -> web.Response:
    body = await json_body(request, "{folder, image, caption}")
    _check_shape(body)
    folder = dataset_folder(body["folder"])
    image = body["image"]
    if Path(image).name != image or Path(image).suffix.lower() not in IMAGE_SUFFIXES:
        raise web.HTTPBadRequest(text="image must be the file name of a .jpg, .jpeg or .png in the set")
    if not (folder / image).is_file():
        raise web.HTTPNotFound(text=f"No image {image} in that set")
    txt = folder / Path(image).with_suffix(".txt")
    if txt.is_symlink() or (txt.exists() and not is_inside(txt, folder)):
        raise web.HTTPForbidden(text="The caption file is a link; refusing to write through it")
    caption = body["caption"].replace("\r\n", "\n").strip()
    CaptionFiles(user_dir()).save_hand_edit(txt, caption)
    log.info("Caption of %s saved from the review editor (kept as a hand edit)", image)
    flags = lint_caption(image, caption, body.get("trigger_word", ""), parse_traits(body.get("forbidden_traits"))) \
        if body.get("trigger_word") else []
    return web.json_response({"ok": True, "image": image, "caption": caption, "hand_edit": True,
                              "flags": [f.detail for f in flags]})


async def lora_info(request: web.Request) -> web.Response:
    """What the stack widget shows for a row before the node runs: format, keys, trigger words."""
    from .lora_stack import resolve_lora

    name = request.query.get("name", "")
    if not name.strip() or "\0" in name or len(name) > 1000:
        raise web.HTTPBadRequest(text="name is required: a LoRA file name in models/loras")
    if ".." in Path(name.replace("\\", "/")).parts:
        raise web.HTTPForbidden(text="name may not contain '..'")
    path = resolve_lora(name)
    if path is None:
        if os.path.isabs(name):
            raise web.HTTPForbidden(text="A LoRA path must be inside ComfyUI's loras folders")
        raise web.HTTPNotFound(text=f"No LoRA {name} in models/loras")
    try:
        info = describe_lora(path)
    except InputError as exc:
        return web.json_response({"name": name, "error": str(exc)})
    return web.json_response({"name": name, "format": info.format, "format_label": info.format_label,
                              "architecture": info.architecture, "keys": len(info.modules), "rank": info.rank,
                              "trigger_words": list(info.trigger_words), "warning": lora_warning(info)})


def lora_warning(info) -> str:
    """Why a LoRA will do nothing on FLUX, in the words of the stack node's report ("" when it applies)."""
    if info.architecture == "sd":
        return f"{info.format_label} format: 0 keys apply (not a FLUX LoRA)"
    if not info.modules:
        return "no LoRA keys found: 0 keys apply"
    return ""


async def training_status(request: web.Request) -> web.Response:
    """The latest status of each training (by trainer node id), kept across page reloads and restarts; under
    --multi-user only the requesting user's."""
    user = request_user(request)
    statuses = {_without_user(key, entry): entry for key, entry in status_board(user_dir()).all().items()
                if not multi_user() or entry.get("user", "") == user}
    return web.json_response({"statuses": statuses})


def _without_user(key: str, entry: dict) -> str:
    """A status board key as the canvas knows it: the trainer's node id (a battery's "<node id>#<variant>"),
    without the "<user>/" the board keeps under --multi-user."""
    user = entry.get("user") or ""
    return key[len(user) + 1:] if user and key.startswith(f"{user}/") else key


async def journal(request: web.Request) -> web.Response:
    """Seed-journal entries for the samplers' journal panel: newest first, or most alike first (`sort=likeness`),
    only favourites (`favourites=1`), only scores of `min_score` (0–100) or more; under --multi-user only the
    requesting user's."""
    query = request.query
    raw = query.get("limit", "10")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_JOURNAL_ENTRIES:
        raise web.HTTPBadRequest(text=f"limit must be a whole number from 1 to {MAX_JOURNAL_ENTRIES}")
    sort, favourites, min_score = query.get("sort", "newest"), query.get("favourites", ""), query.get("min_score", "")
    if sort not in SORTS:
        raise web.HTTPBadRequest(text=f"sort must be one of {', '.join(SORTS)}")
    if favourites not in ("", "0", "1"):
        raise web.HTTPBadRequest(text="favourites must be 1 (favourites only) or 0")
    try:
        threshold = float(min_score) if min_score else None
    except ValueError:
        threshold = -1.0
    if threshold is not None and not 0 <= threshold <= 100:
        raise web.HTTPBadRequest(text="min_score must be a likeness from 0 to 100")
    entries = select_entries(SeedJournal(user_dir(), request_user(request)).entries(), sort=sort,
                             favourites=favourites == "1", min_score=threshold)
    return web.json_response({"entries": [e.to_dict() for e in entries[:int(raw)]]})


async def battery_plan(request: web.Request) -> web.Response:
    """What the battery node's tables make, for its widget while the user edits: the count and each variant."""
    body = await json_body(request, "{base, variations, expand}")
    if not isinstance(body, dict) or set(body) != set(PLAN_FIELDS) or not all(
            isinstance(body[k], str) and len(body[k]) <= MAX_TABLE_CHARS for k in PLAN_FIELDS):
        raise web.HTTPBadRequest(text=f"The body must be {{base, variations, expand}}, each text of at most "
                                      f"{MAX_TABLE_CHARS} characters")
    try:
        plan = plan_battery(body["base"], body["variations"], body["expand"])
        confirm_above = battery_config(user_dir())["battery_confirm_above"]
    except InputError as exc:
        return web.json_response({"error": str(exc)})
    return web.json_response({"count": len(plan.variants), "labels": [v.label for v in plan.variants],
                              "description": plan.describe(), "confirm_above": confirm_above})


def dataset_folder(raw: object) -> Path:
    """The real path of a set folder inside ComfyUI's output folder, or an HTTP error."""
    if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
        raise web.HTTPBadRequest(text="folder is required: a prepared set inside ComfyUI's output folder")
    root = os.path.realpath(output_dir())
    if ".." in Path(raw).parts:
        raise web.HTTPForbidden(text="folder may not contain '..'")
    path = Path(raw) if os.path.isabs(raw) else Path(root) / raw
    real = os.path.realpath(path)
    if real == root or not is_inside(real, root):
        raise web.HTTPForbidden(text="folder must be a prepared set inside ComfyUI's output folder")
    if not os.path.isdir(real):
        raise web.HTTPNotFound(text="No such set folder")
    return Path(real)


def _check_shape(body: object) -> None:
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="The body must be a JSON object: {folder, image, caption}")
    unknown = set(body) - set(SAVE_FIELDS)
    missing = {"folder", "image", "caption"} - set(body)
    wrong = [k for k, kind in SAVE_FIELDS.items() if k in body and not isinstance(body[k], kind)]
    if unknown or missing or wrong:
        raise web.HTTPBadRequest(text=f"Bad caption body: unknown {sorted(unknown)}, missing {sorted(missing)}, "
                                      f"not text {wrong}")
    if len(body["caption"]) > MAX_CAPTION_CHARS:
        raise web.HTTPBadRequest(text=f"A caption may have at most {MAX_CAPTION_CHARS} characters")


def _relative(folder: Path) -> str:
    return os.path.relpath(folder, os.path.realpath(output_dir()))
