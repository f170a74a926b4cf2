"""The Likeness playground: a phone-first page served by ComfyUI at /likeness/playground, and its routes.

GET  /likeness/playground/                 the page (web/playground/index.html) and /static/<file> its files
GET  /likeness/playground/api/options      LoRAs with trigger words, where it can run, spend and budget
POST /likeness/playground/api/plan         settings → the API-format prompt of the pack's nodes + its cost
                                           (with "dry_run": true only the cost, nothing recorded)
GET  /likeness/playground/api/run          how a planned prompt ended: entries, what it paid, or its error
GET  /likeness/playground/api/gallery      the seed journal, newest first (favourites, min_score filters)
GET  /likeness/playground/api/image        an entry's image (download=1: as a file)
POST /likeness/playground/api/favourite    {"id", "favourite"}
POST /likeness/playground/api/refine       {"idea", "trigger_word", "variant"} → a refined prompt (Gemini)

The page queues the planned prompt on ComfyUI's own /prompt (with the prompt id the plan gave) and follows
it on ComfyUI's websocket; nothing here generates. No key ever reaches the page: it learns only whether one
is set. Writes pass request_guard (same origin, JSON only); every route is scoped to the ComfyUI user.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import folder_paths
from aiohttp import web

from ..likeness.errors import LikenessError
from ..likeness.generation.playground_gallery import (RunIndex, gallery, image_refs, is_own, paid_by_run,
                                                       record_outcome, runs_by_entry)
from ..likeness.generation.playground_prompt import (SAMPLER, build_prompt, estimate, pick_local_models,
                                                     settings_from_json)
from ..likeness.generation.remote_generation import remote_reference
from ..likeness.generation.prompt_refiner import RefineSettings, refine_prompt
from ..likeness.generation.seed_journal import SeedJournal
from ..likeness.loras.lora_cache import file_key
from ..likeness.loras.lora_formats import LoraInfo, describe_lora
from ..likeness.loras.stack_plan import plan_stack
from ..likeness.loras.strength_balance import MODES, StackRow
from ..likeness.loras.sweep_results import SweepResults
from ..likeness.money.credentials import gemini_key, redact, replicate_token
from ..likeness.money.spend_ledger import SpendLedger
from ..likeness.storage import is_inside
from .host import output_dir, user_dir
from .lora_stack import LoraStackNode, describe_row, resolve_lora, sweep_key
from .request_guard import json_body
from .users import multi_user, request_user
from .flux_sampler import FluxSampler
from .replicate_sampler import ReplicateFluxSampler

log = logging.getLogger("likeness")
PAGE_DIR = Path(__file__).resolve().parents[1] / "web" / "playground"
# files of the canvas extension the page uses too (one copy of the balance maths, one money format, one icon)
SHARED_FILES = {"strength_balance.js": Path(__file__).resolve().parents[1] / "web" / "js" / "strength_balance.js",
                "dom.js": Path(__file__).resolve().parents[1] / "web" / "js" / "dom.js",
                "icon.svg": Path(__file__).resolve().parents[1] / "web" / "icon.svg"}
STATIC = re.compile(r"^[a-z][a-z0-9_-]*\.(mjs|css|svg|png)$")
CONTENT_TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".png": "image/png", ".html": "text/html"}
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
OUR_NODES = {"LikenessLoraStack": LoraStackNode, "LikenessReplicateFluxSampler": ReplicateFluxSampler,
             "LikenessFluxSampler": FluxSampler}
STARTED = time.time()
FORGET_PLANNED_S = 24 * 3600          # a plan never queued: let it go after a day


def register() -> None:
    from server import PromptServer

    if PromptServer.instance is None:
        return
    routes = PromptServer.instance.routes
    routes.get("/likeness/playground")(redirect_to_page)
    routes.get("/likeness/playground/")(page)
    routes.get("/likeness/playground/static/{name}")(static_file)
    routes.get("/likeness/playground/api/options")(options)
    routes.post("/likeness/playground/api/plan")(plan)
    routes.get("/likeness/playground/api/run")(run_status)
    routes.get("/likeness/playground/api/gallery")(gallery_route)
    routes.get("/likeness/playground/api/image")(image)
    routes.post("/likeness/playground/api/favourite")(favourite)
    routes.post("/likeness/playground/api/refine")(refine)


# --- the page ---------------------------------------------------------------------------------------------
async def redirect_to_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("playground/")        # relative: works behind a proxy that adds a path prefix


async def page(request: web.Request) -> web.Response:
    return _file(PAGE_DIR / "index.html")


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name in SHARED_FILES:
        return _file(SHARED_FILES[name])
    if not STATIC.match(name) or not (PAGE_DIR / name).is_file():
        raise web.HTTPNotFound()
    return _file(PAGE_DIR / name)


def _file(path: Path) -> web.Response:
    return web.Response(body=path.read_bytes(), content_type=CONTENT_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


# --- what the page can offer ------------------------------------------------------------------------------
async def options(request: web.Request) -> web.Response:
    user = request_user(request)
    loras = [lora_summary(name) for name in folder_paths.get_filename_list("loras")]
    local = _local_models()
    ledger = SpendLedger(user_dir())
    return web.json_response({
        "user": user, "multi_user": multi_user(),
        "loras": sorted(loras, key=lambda lora: (not lora["likeness"], lora["name"].lower())),
        "replicate": {"token": _has_replicate_token()},
        "local": {"available": local is not None, "models": local.__dict__ if local else None},
        "gemini": {"key": bool(gemini_key(user_dir()))},
        "spend": {"month_usd": round(ledger.month_total(), 4), "budget_usd": _budget(ledger)},
    })


def lora_summary(name: str) -> dict:
    """What the page shows of a LoRA: its trigger words, whether Likeness trained it (with its Replicate
    version), and what Replicate could fetch for it as an extra LoRA ("" when nothing: this machine only)."""
    path = resolve_lora(name)
    key = _file_state(path) if path else None
    if key is not None and key in _SUMMARIES:
        return _SUMMARIES[key]
    info = _described(name)
    if info is None:
        return {"name": name, "trigger_words": [], "likeness": False, "version": "", "replicate_ref": "",
                "error": "not a readable safetensors file"}
    try:
        ref = remote_reference(name, resolve_lora)
    except LikenessError:
        ref = ""
    summary = {"name": name, "trigger_words": list(info.trigger_words),
               "likeness": bool(info.metadata.get("likeness_trigger_word")),
               "version": info.metadata.get("likeness_destination_version", ""), "replicate_ref": ref,
               "architecture": info.architecture}
    if len(_SUMMARIES) > MAX_REMEMBERED:
        _SUMMARIES.clear()
    _SUMMARIES[key] = summary
    return summary


# Headers and summaries by (path, size, mtime): reading hundreds of LoRA headers on every page load is slow.
_DESCRIBED: dict[tuple, LoraInfo] = {}
_SUMMARIES: dict[tuple, dict] = {}
MAX_REMEMBERED = 2000


def _file_state(path: str) -> tuple:
    """The LoRA file and its side-cars (source and trigger words: .civitai.info, .metadata.json,
    .likeness.json, .txt) as they are now."""
    stem = os.path.splitext(path)[0]
    sides = [os.stat(p).st_mtime_ns if os.path.exists(p) else 0
             for p in (f"{stem}.civitai.info", f"{stem}.metadata.json", f"{stem}.likeness.json", f"{stem}.txt")]
    return (path, *file_key(path), *sides)


def _described(name: str) -> LoraInfo | None:
    path = resolve_lora(name)
    if path is None:
        return None
    key = _file_state(path)
    if key not in _DESCRIBED:
        try:
            info = describe_lora(path)
        except LikenessError:
            return None
        if len(_DESCRIBED) > MAX_REMEMBERED:
            _DESCRIBED.clear()
        _DESCRIBED[key] = info
    return _DESCRIBED[key]


def _has_replicate_token() -> bool:
    try:
        return bool(replicate_token(user_dir()))
    except LikenessError:
        return False


def _budget(ledger: SpendLedger) -> float | None:
    try:
        return ledger.monthly_budget()
    except LikenessError:
        return None


# --- planning a run ----------------------------------------------------------------------------------------
async def plan(request: web.Request) -> web.Response:
    body = await json_body(request)
    user = request_user(request)
    try:
        settings = settings_from_json(body)
        info = _described(settings.personal)
        if info is None:
            raise web.HTTPNotFound(text=f"No LoRA {settings.personal} in models/loras")
        if not settings.trigger_word and info.trigger_words:
            settings = replace(settings, trigger_word=info.trigger_words[0])
        if settings.where == "replicate":
            replicate_token(user_dir())        # no token: say where to put it, before anything else
        local = _local_models() if settings.where == "local" else None
        prompt = build_prompt(settings, node_defaults, version=info.metadata.get("likeness_destination_version", ""),
                              local=local)
        rows = [StackRow(r["lora"], float(r["strength"]), bool(r["on"])) for r in settings.rows()]
        # the strengths the stack node will compute (measured: from the sweeps), so a stored image is found
        mode = settings.balance if settings.balance in MODES else "anchor"
        stack = plan_stack(rows, mode, target_total=settings.target_total, clamp=_clamp(), anchor=0,
                           describe=describe_row, sweeps=SweepResults(user_dir()), keys=[sweep_key(r) for r in rows])
        cost = estimate(settings, prompt[SAMPLER]["inputs"], stack, user_dir(), resolve_lora)
    except LikenessError as exc:
        return _problem(400, str(exc))
    ledger = SpendLedger(user_dir())
    month, budget = ledger.month_total(), _budget(ledger)
    prompt_id = ""
    if not (isinstance(body, dict) and body.get("dry_run") is True):   # dry run: the live cost line only
        prompt_id = str(uuid.uuid4())
        RunIndex(user_dir(), user).queued(prompt_id, settings.to_dict())
    return web.json_response({
        "prompt_id": prompt_id, "prompt": prompt, "settings": settings.to_dict(),
        "estimate": {"usd": round(cost.usd, 6), "reused": cost.reused, "text": cost.text(), "model": cost.model,
                     "lines": cost.lines},
        "stack": {"lines": stack.lines, "strengths": stack.strengths},
        "spend": {"month_usd": round(month, 4), "budget_usd": budget,
                  "over_budget": budget is not None and month + cost.usd > budget}})


def node_defaults(class_type: str) -> dict:
    """A node's widget inputs with their defaults, and the choices of each combo (under "_choices")."""
    found = OUR_NODES.get(class_type)
    if found is None:
        return {}
    spec, defaults, choices = found.INPUT_TYPES(), {}, {}
    for section in ("required", "optional"):
        for name, entry in (spec.get(section) or {}).items():
            kind, opts = entry[0], entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            listed = kind if isinstance(kind, list) else opts.get("options") if kind == "COMBO" else None
            if listed is not None:
                choices[name] = list(listed)
                defaults[name] = opts.get("default", listed[0] if listed else "")
            elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN") and "default" in opts:
                defaults[name] = opts["default"]
    return {**defaults, "_choices": choices}


def _clamp() -> tuple[float, float]:
    stack = node_defaults("LikenessLoraStack")
    return float(stack.get("clamp_min", 0.15)), float(stack.get("clamp_max", 0.25))


def _local_models():
    return pick_local_models(folder_paths.get_filename_list("diffusion_models"),
                             folder_paths.get_filename_list("text_encoders"), folder_paths.get_filename_list("vae"))


# --- how runs ended, and the gallery -----------------------------------------------------------------------
def resolved_runs(index: RunIndex) -> dict:
    """The user's runs, each finished one with its outcome read from ComfyUI's history (once, then kept)."""
    from server import PromptServer

    queue = PromptServer.instance.prompt_queue
    runs = index.runs()
    waiting = [run for run in runs.values() if not run.finished]
    if not waiting:
        return runs
    running, pending = queue.get_current_queue_volatile()
    active = {item[1] for item in list(running) + list(pending)}
    for run in waiting:
        history = queue.get_history(prompt_id=run.prompt_id).get(run.prompt_id)
        if history is not None and (history.get("status") or {}).get("completed") is not None:
            index.done(record_outcome(run, history))
        elif run.prompt_id not in active and (run.time < STARTED or time.time() - run.time > FORGET_PLANNED_S):
            run.status, run.message = "lost", "ComfyUI restarted before this run finished"
            index.done(run)
    return runs


async def run_status(request: web.Request) -> web.Response:
    user = request_user(request)
    prompt_id = request.query.get("prompt_id", "")
    runs = resolved_runs(RunIndex(user_dir(), user))
    run = runs.get(prompt_id)
    if run is None:
        raise web.HTTPNotFound(text="No such run of yours")
    entries = {e.id: e for e in await asyncio.to_thread(journal_entries) if e.id in run.entries}
    paid, reused = paid_by_run(run, entries)
    return web.json_response({"prompt_id": prompt_id, "status": run.status, "entries": run.entries,
                              "paid_usd": round(paid, 6), "reused": reused, "message": redact(run.message, user_dir())})


async def gallery_route(request: web.Request) -> web.Response:
    user = request_user(request)
    min_score = request.query.get("min_score", "")
    try:
        threshold = float(min_score) if min_score else None
        limit = int(request.query.get("limit", "60"))
    except ValueError:
        raise web.HTTPBadRequest(text="min_score and limit must be numbers") from None
    if not 1 <= limit <= 500:
        raise web.HTTPBadRequest(text="limit must be from 1 to 500")
    runs = resolved_runs(RunIndex(user_dir(), user))
    items = gallery(await asyncio.to_thread(journal_entries), runs, user=user if multi_user() else None,
                    favourites=request.query.get("favourites") == "1", min_score=threshold, limit=limit)
    return web.json_response({"items": items, "user": user})


# The journal, parsed once per state of its file: a gallery of 60 thumbnails asks for it 60 times, and 5 000
# entries take about half a second to parse on a 2-core machine.
_JOURNAL: dict = {"state": None, "entries": []}
_JOURNAL_LOCK = threading.Lock()


def journal_entries() -> list:
    journal = SeedJournal(user_dir())
    try:
        stat = journal.path.stat()
    except FileNotFoundError:
        return []
    state = (str(journal.path), stat.st_size, stat.st_mtime_ns)
    with _JOURNAL_LOCK:
        if _JOURNAL["state"] != state:
            _JOURNAL["entries"], _JOURNAL["state"] = journal.entries(), state
        return _JOURNAL["entries"]


async def own_entry(request: web.Request, entry_id: str):
    """The journal entry `entry_id` and the run that made it, if the user may see it (404 otherwise)."""
    user = request_user(request)
    if not re.fullmatch(r"[0-9a-f]{6,40}", entry_id or ""):
        raise web.HTTPNotFound(text="No such image of yours")
    made_by = runs_by_entry(resolved_runs(RunIndex(user_dir(), user)))
    found = [e for e in await asyncio.to_thread(journal_entries) if e.id == entry_id]
    if not found or not is_own(found[0], made_by, user if multi_user() else None):
        raise web.HTTPNotFound(text="No such image of yours")
    return found[0], made_by.get(entry_id)


async def image(request: web.Request) -> web.Response:
    entry, run = await own_entry(request, request.query.get("id", ""))
    refs = image_refs(entry, run)
    try:
        ref = refs[int(request.query.get("n", "0"))]
    except (ValueError, IndexError):
        raise web.HTTPNotFound(text="That image has no such file") from None
    path = _image_path(ref)
    if path is None:
        raise web.HTTPNotFound(text="The image file is gone (deleted from the output folder?)")
    headers = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if request.query.get("download") == "1":
        headers["Content-Disposition"] = f'attachment; filename="likeness-{entry.id}{path.suffix}"'
    return web.Response(body=path.read_bytes(), content_type=IMAGE_TYPES[path.suffix.lower()], headers=headers)


def _image_path(ref: dict) -> Path | None:
    """The file of an image reference, only inside the output folder or the Replicate sampler's store."""
    if "path" in ref:
        path, root = Path(ref["path"]), user_dir() / "replicate_images"
    else:
        root = output_dir()
        path = root / ref.get("subfolder", "") / ref.get("filename", "")
    if path.suffix.lower() not in IMAGE_TYPES or not is_inside(path, root) or not path.is_file():
        return None
    return path


async def favourite(request: web.Request) -> web.Response:
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or \
            not isinstance(body.get("favourite", True), bool):
        raise web.HTTPBadRequest(text='Send {"id": "<journal id>", "favourite": true|false}')
    entry, _ = await own_entry(request, body["id"])
    updated = SeedJournal(user_dir()).set_favourite(entry.id, body.get("favourite", True))
    return web.json_response({"id": updated.id, "favourite": updated.favourite})


# --- refining a prompt -------------------------------------------------------------------------------------
async def refine(request: web.Request) -> web.Response:
    body = await json_body(request)
    request_user(request)
    if not isinstance(body, dict) or not isinstance(body.get("idea"), str):
        raise web.HTTPBadRequest(text='Send {"idea": "...", "trigger_word": "...", "variant": 0}')
    variant = body.get("variant", 0)
    if isinstance(variant, bool) or not isinstance(variant, int) or not 0 <= variant <= 1000:
        raise web.HTTPBadRequest(text="variant must be a whole number from 0 to 1000")
    trigger = body.get("trigger_word") if isinstance(body.get("trigger_word"), str) else ""
    try:
        refined = await refine_prompt(body["idea"], trigger, RefineSettings(variant=variant), user_dir())
    except LikenessError as exc:
        return _problem(400, str(exc))
    return web.json_response({"prompt": refined.prompt, "cached": refined.cached, "cost_usd": round(refined.cost_usd, 6),
                              "estimate_usd": round(refined.estimate_usd, 6), "removed": refined.removed,
                              "summary": refined.summary()})


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": redact(message, user_dir())}, status=status)
