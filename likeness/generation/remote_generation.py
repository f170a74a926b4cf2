"""Generates with the personal FLUX LoRA on Replicate: no GPU, no local model file.

`generate(settings, ...)` is the whole run, in the order a careful person would do it by hand:

1. plan what to run: the trained destination version (from the trainer's LIKENESS_TRAINING record or a
   version string), or `black-forest-labs/flux-dev-lora` with `lora_weights` — plus ONE extra LoRA from a
   LORA_STACK (Replicate takes one; the other rows are named as left out); the trigger word goes first;
2. look the exact work up in the result cache (user dir, keyed by model/version + every input): the same
   prompt + seed + inputs queued again reuses the stored images instead of paying again, unless `rerun`;
   a prediction started before a crash is picked up again instead of paying for a second one — the intent is
   written before the create call, so even one whose answer never came back is found (page by page) — and
   one whose outputs Replicate has since removed (after an hour) is dropped with what happened;
3. read the model's own schema, build the inputs (ComfyUI strengths converted by `replicate_scale` for the path
   the predictor will really take), check every input against that schema, estimate the cost and check the
   monthly budget — before anything is paid; tokens for gated LoRAs (HF_TOKEN, CIVITAI_API_TOKEN) go only as
   the model's secret inputs, a token pasted into a URL is refused, and URLs are stored without credentials;
4. create the prediction with `Prefer: wait` (the official model usually finishes inside the wait) and poll
   otherwise, with progress text; a ComfyUI interrupt cancels the prediction on Replicate;
5. download the outputs (the token goes only to Replicate's own hosts), decode them, store them in the
   cache, record the real cost (per image for the official model, `metrics.predict_time` × the hardware
   price for a trained version) and write a seed-journal entry per image with the prediction id and its share
   of the cost.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx
import numpy as np
from PIL import Image

from ..errors import InputError, LikenessError, ServiceError
from ..loras.lora_formats import read_header
from ..money.credentials import strip_url_secrets, third_party_token, url_token_params
from ..money.prices import PriceTable, format_usd, load_prices
from ..progress import Interrupted, Progress, SilentProgress
from ..cloud.replicate_client import ReplicateApi, Unconfirmed, web_url
from .replicate_scale import OFFICIAL, TRAINED, ScaleRule, scale_rule
from .seed_journal import JournalEntry, SeedJournal, put_trigger_first
from ..money.spend_ledger import SpendEntry, SpendLedger
from ..storage import atomic_write_bytes, atomic_write_json, json_digest, read_json
from ..cloud.replicate_jobs import (TERMINAL, Clock, JobFollower, PollSettings, ReplicateRun, SystemClock, epoch,
                                    find_job, schema_problems)

log = logging.getLogger("likeness.remote_generation")

OFFICIAL_MODEL = "black-forest-labs/flux-dev-lora"
GENERATION_HARDWARE = "gpu-h100"            # trained FLUX versions run on H100s
SECONDS_PER_STEP = 0.2                      # H100 bf16 1024²: ~4–7 s per 28 steps (lora-and-performance §6)
SETUP_SECONDS = 6.0                         # LoRA download + merge per call
MAX_IMAGE_BYTES = 64 << 20
ASPECT_RATIOS = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21", "custom"]
OUTPUT_FORMATS = ["png", "jpg", "webp"]
RUN_ON = ["auto", "trained version", "flux-dev-lora"]
# The secret input each model takes for a gated LoRA's host, and which token fills it.
LORA_TOKENS = {"huggingface.co": ("hf_api_token", "hf"), "civitai.com": ("civitai_api_token", "civitai")}
_VERSION_ID = re.compile(r"^[0-9a-f]{64}$")
_MODEL_REF = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(?:/[0-9a-f]{64})?$")
_STEP = re.compile(r"(\d+)/(\d+) \[")
CACHE_DIR = "replicate_images"
CLOCK_SKEW_S = 120.0                        # Replicate's clock vs ours, when matching a just-created prediction


# --- values in and out ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerationSettings:
    """The node's inputs; defaults are the seed's inference settings."""
    prompt: str
    trigger_words: str = ""
    seed: int = 0
    steps: int = 35                       # the seed: "at least 35 steps"
    guidance: float = 2.75                # the seed: "between 2.5 and 3"
    aspect_ratio: str = "1:1"
    width: int = 1024                     # only with aspect_ratio "custom" (trained versions)
    height: int = 1024
    num_outputs: int = 1
    output_format: str = "png"
    lora_strength: float = 0.9            # the personal LoRA's ComfyUI strength (the seed: 0.9)
    go_fast: bool = False                 # a trained version's own default (bf16); flux-dev-lora's is True
    run_on: str = "auto"                  # auto | trained version | flux-dev-lora
    version: str = ""                     # owner/name:<64 hex>, or a bare 64-hex id
    lora_weights: str = ""                # for flux-dev-lora: owner/model[/version], HF/Civitai/.safetensors URL
    rerun: bool = False


@dataclass(frozen=True)
class LoraChoice:
    reference: str                        # what Replicate is given
    strength: float                       # ComfyUI strength
    label: str                            # what the user calls it


@dataclass(frozen=True)
class Plan:
    target: str                           # OFFICIAL or TRAINED (replicate_scale)
    model: str                            # owner/name
    version_id: str                       # "" = the model's latest (official models)
    prompt: str
    personal: LoraChoice | None
    extra: LoraChoice | None
    left_out: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version_id}" if self.version_id else self.model


@dataclass
class GenerationResult:
    images: list[np.ndarray]              # H×W×3 float32 in 0..1, one per output
    prediction_id: str
    model: str
    inputs: dict
    cost_usd: float
    estimated_usd: float
    web: str
    reused: bool = False
    journal_ids: list[str] = field(default_factory=list)   # one seed-journal entry per image, in `images` order
    files: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def journal_id(self) -> str:
        """The first image's journal entry (the only one when the prediction made one image)."""
        return self.journal_ids[0] if self.journal_ids else ""

    def summary(self) -> str:
        if self.reused:
            head = (f"Reused {len(self.images)} stored image(s) from prediction {self.prediction_id} on {self.model}: "
                    "nothing paid (turn rerun on to pay for a new one).")
        else:
            head = (f"Generated {len(self.images)} image(s) on Replicate with {self.model}, prediction "
                    f"{self.prediction_id}: cost {format_usd(self.cost_usd)} (the estimate was "
                    f"{format_usd(self.estimated_usd)}). {self.web}")
        tail = [f"Seed journal: {', '.join(self.journal_ids)}"] if self.journal_ids else []
        return "\n".join([head, *self.lines, *tail])


def generate(settings: GenerationSettings, *, user_dir: str | Path, training: Any = None,
             stack: list | None = None, locate: Callable[[str], str | None] | None = None,
             progress: Progress | None = None, api: ReplicateApi | None = None,
             poll: PollSettings | None = None, clock: Clock | None = None,
             wait_s: int | None = None) -> GenerationResult:
    """Runs (or reuses) a FLUX generation on Replicate; see the module's docstring for the steps."""
    run = _Run(settings, Path(user_dir), progress or SilentProgress(), api, poll or PollSettings.from_env(),
               clock or SystemClock(), wait_seconds() if wait_s is None else wait_s)
    return run.go(plan_generation(settings, training, stack, locate))


def wait_seconds() -> int:
    """How long a create call may block with `Prefer: wait` (1–60 s; 0 = never block, poll at once)."""
    try:
        value = int(float(os.environ.get("LIKENESS_REPLICATE_WAIT_S", "30")))
    except ValueError:
        value = 30
    return max(0, min(value, 60))


class _Run(ReplicateRun):
    def __init__(self, settings: GenerationSettings, user_dir: Path, progress: Progress,
                 api: ReplicateApi | None, poll: PollSettings, clock: Clock, wait_s: int):
        self.settings, self.user_dir, self.progress, self._api = settings, user_dir, progress, api
        self.poll, self.clock, self.wait_s = poll, clock, wait_s
        self.prices = load_prices(user_dir)
        self.cache = ResultCache(user_dir)

    def go(self, plan: Plan) -> GenerationResult:
        key = cache_key(plan, self.settings)
        lines = plan_lines(plan)
        if not self.settings.rerun:
            stored = self.cache.load(key)
            if stored is not None:
                self.say(f"Reusing the stored image(s) of prediction {stored.prediction_id} (same model, prompt, "
                         "seed and inputs): nothing paid.")
                return stored
        schema = fetch_schema(self.api, plan)
        inputs, rules = build_inputs(plan, self.settings, schema)
        validate_inputs(inputs, schema, plan.ref)
        secrets = lora_secrets(plan, schema, self.user_dir)
        lines += scale_lines(plan, inputs, rules)
        estimate = estimate_cost(plan, inputs, self.prices)
        data = self.resume(key, plan, inputs) if not self.settings.rerun else None
        if data is None:
            what = f"{self.settings.num_outputs} FLUX image(s) on Replicate ({plan.model})"
            SpendLedger(self.user_dir).check(estimate, what)
            self.say(f"{what}: about {format_usd(estimate)} (estimate; prices as of {self.prices.as_of}).")
            data = self.create(key, plan, inputs, secrets)
        first_output = data.get("output")
        if data.get("status") not in TERMINAL:
            data = self.follow(key, data["id"], plan)
        if not data.get("output") and first_output and data.get("status") in ("processing", "succeeded"):
            data["output"] = first_output
        return self.finish(key, plan, inputs, data, estimate, lines)

    # -- a prediction we may already have paid for --
    def resume(self, key: str, plan: Plan, inputs: dict) -> dict | None:
        """The prediction an earlier queue started (or tried to start) for this work, if it can still be used."""
        pending = self.cache.pending(key)
        if not pending:
            return None
        if not pending.get("prediction_id"):          # the create was sent; its answer never came back
            found = self.find_created(inputs, float(pending.get("started") or 0))
            if found is None:
                self.cache.clear_pending(key)
                return None
            self.cache.mark_pending(key, found["id"], plan.ref)
        else:
            found = self.api.get_json(f"/v1/predictions/{pending['prediction_id']}", "Looking up the earlier "
                                      "prediction", missing_ok=True)
        if not found or found.get("status") in ("failed", "canceled", "aborted"):
            self.cache.clear_pending(key)
            return None
        if outputs_removed(found):
            self.expired(key, plan, found)
        self.say(f"Picking up prediction {found['id']}, started earlier for the same inputs (not paying for "
                 "another).")
        return found

    def create(self, key: str, plan: Plan, inputs: dict, secrets: dict[str, str]) -> dict:
        """Creates the prediction; the intent is on disk before the request, so a lost answer is found later."""
        started = time.time()
        self.cache.mark_intent(key, plan.ref, started)
        try:
            data = self._create(plan, {**inputs, **secrets})
        except Unconfirmed as unconfirmed:
            # No answer, a 5xx, a page that is not the API's: the prediction may exist anyway. Look before anything
            # else; never re-POST. (Not found, or the look-up failed: the intent stays, and the next queue looks
            # again first.)
            try:
                found = self.find_created(inputs, started)
            except LikenessError:
                found = None
            if found is None:
                raise unconfirmed from None
            self.say(f"Replicate did not confirm the prediction, but it was created: following {found['id']}.")
            data = found
        except BaseException as exc:
            if isinstance(exc, LikenessError):
                self.cache.clear_pending(key)         # refused outright: nothing was created
            raise
        self.cache.mark_pending(key, data["id"], plan.ref)
        return data

    def find_created(self, inputs: dict, since: float) -> dict | None:
        """A prediction on the account with exactly these inputs, created since `since` (page by page). A failed
        look-up raises: not knowing is no reason to pay again."""
        def same(item: dict) -> bool:
            return (without_secrets(item.get("input") or {}) == inputs
                    and epoch(item.get("created_at")) >= since - CLOCK_SKEW_S)
        return find_job(self.api, "prediction", same, since=since - CLOCK_SKEW_S)

    def expired(self, key: str, plan: Plan, data: dict) -> None:
        """A prediction that succeeded, but whose outputs Replicate has removed: say so, forget it, never adopt
        it again. Its cost is recorded (it was paid)."""
        self.cache.clear_pending(key)
        cost = self.record_cost(plan, data)
        web = web_url(f"p/{data.get('id', '')}")
        raise ServiceError(f"Prediction {data.get('id')} finished on Replicate, but Replicate has removed its images "
                           "(it keeps a prediction's outputs for an hour) before the pack could download them: "
                           f"ComfyUI had stopped. It cost about {format_usd(cost)} (in the spend ledger). Queue again "
                           f"to generate the image anew (a new prediction is paid). {web}")

    def _create(self, plan: Plan, inputs: dict) -> dict:
        doing = f"Starting the prediction on Replicate ({plan.model})"
        wait = self.wait_s or False
        if plan.target == OFFICIAL:
            prediction = self.api.call(doing, self.api.sdk.models.predictions.create, model=plan.model,
                                       input=inputs, wait=wait,
                                       not_found=f"{plan.model} is not an official model on Replicate")
        else:
            prediction = self.api.call(doing, self.api.sdk.predictions.create, version=plan.version_id,
                                       input=inputs, wait=wait,
                                       not_found=f"no version {plan.version_id[:12]}… of {plan.model}")
        data = {"id": prediction.id, "status": prediction.status, "output": prediction.output,
                "error": prediction.error, "logs": prediction.logs, "urls": prediction.urls or {}}
        self.say(f"Started prediction {data['id']} ({data['status']}): {web_url('p/' + data['id'])}")
        return data

    # -- following it --
    def follow(self, key: str, prediction_id: str, plan: Plan) -> dict:
        web = web_url(f"p/{prediction_id}")
        return JobFollower(self.api, self.poll, self.clock, self.progress).follow(
            f"/v1/predictions/{prediction_id}", "Checking the prediction",
            not_found=f"prediction {prediction_id} is not on your account",
            lost_hint=f"Prediction {prediction_id} goes on at Replicate ({web}); queue again to pick it up "
                      "(it is not paid for twice).",
            seen=lambda data: self.show(data, web), cancel=lambda: self.cancel(key, prediction_id, plan))

    def show(self, data: dict, web: str) -> None:
        status, steps = data.get("status"), int(self.settings.steps)
        if status == "starting":
            self.progress.update(0, steps, f"Waiting for a GPU on Replicate (starting) · {web}")
        elif status == "processing":
            found = _STEP.findall(data.get("logs") or "")
            done, total = (int(found[-1][0]), int(found[-1][1])) if found else (0, steps)
            self.progress.update(done, total, f"Generating on Replicate: step {done}/{total} · {web}")
        elif status == "succeeded":
            self.progress.update(steps, steps, f"Generated on Replicate · {web}")

    def cancel(self, key: str, prediction_id: str, plan: Plan) -> None:
        """The user interrupted ComfyUI: cancel the prediction on Replicate, record its cost, stop."""
        web = web_url(f"p/{prediction_id}")
        data = self.cancel_job("prediction", prediction_id)
        self.cache.clear_pending(key)
        cost = self.record_cost(plan, data)
        message = (f"Interrupted: canceled prediction {prediction_id} on Replicate ({web}); it used about "
                   f"{format_usd(cost)}.")
        self.say(message)
        raise Interrupted(message)

    # -- the end --
    def finish(self, key: str, plan: Plan, inputs: dict, data: dict, estimate: float,
               lines: list[str]) -> GenerationResult:
        status, prediction_id = data.get("status"), data["id"]
        web = web_url(f"p/{prediction_id}")
        if status in ("failed", "canceled", "aborted"):
            self.cache.clear_pending(key)
            cost = self.record_cost(plan, data)
            if status == "failed":
                raise ServiceError(f"The prediction failed on Replicate: {data.get('error') or 'no error text'}. "
                                   f"{_log_tail(data.get('logs'))}It cost about {format_usd(cost)}. Details: {web}")
            raise ServiceError(f"Prediction {prediction_id} was {status} on Replicate ({web}). Queue again to "
                               "start a new one.")
        if outputs_removed(data):
            self.expired(key, plan, data)
        outputs = _output_list(data.get("output"))
        if not outputs:
            self.cache.clear_pending(key)
            raise ServiceError(f"Prediction {prediction_id} {status} without any image. Details: {web}")
        self.progress.update(0, len(outputs), f"Downloading {len(outputs)} image(s) from Replicate…")
        blobs = [fetch_output(self.api, url) for url in outputs]
        images = [decode_image(blob, f"output {i + 1} of prediction {prediction_id}") for i, blob in enumerate(blobs)]
        cost = self.record_cost(plan, data)
        files = self.cache.store(key, prediction_id, blobs)
        entries = self.journal(plan, inputs, images, files, prediction_id, cost, estimate)
        result = GenerationResult(images, prediction_id, plan.ref, stored_inputs(inputs), cost, estimate, web, False,
                                  [e.id for e in entries], [str(f) for f in files], lines)
        self.cache.save(key, result)
        self.say(result.summary())
        return result

    def record_cost(self, plan: Plan, data: dict) -> float:
        cost = actual_cost(plan, data, self.prices)
        SpendLedger(self.user_dir).record(SpendEntry(
            "replicate-prediction", f"FLUX generation on {plan.model} ({data.get('status')})", cost,
            ref=str(data.get("id", "")), estimated=False))
        return cost

    def journal(self, plan: Plan, inputs: dict, images: list[np.ndarray], files: list[Path], prediction_id: str,
                cost: float, estimate: float) -> list[JournalEntry]:
        """One entry per image (each image is scored on its own), each with its share of the cost; `output` says
        which of the prediction's images it is when it made several."""
        stack = [{"lora": strip_url_secrets(c.label), "strength": c.strength, "clip_strength": c.strength,
                  "replicate": strip_url_secrets(c.reference)} for c in (plan.personal, plan.extra) if c is not None]
        count, entries = len(images), []
        for i, (image, file) in enumerate(zip(images, files)):
            height, width = image.shape[:2]
            which = {"output": i, "outputs": count} if count > 1 else {}
            entry = JournalEntry(prompt=plan.prompt, seed=int(self.settings.seed), steps=int(self.settings.steps),
                                 guidance=float(self.settings.guidance), width=int(width), height=int(height),
                                 stack=stack, trigger_words=self.settings.trigger_words, source="replicate",
                                 images=[str(file)],
                                 extra={"prediction_id": prediction_id, **which, "cost_usd": round(cost / count, 6),
                                        "estimated_usd": round(estimate / count, 6), "model": plan.ref,
                                        "inputs": stored_inputs(inputs), "left_out": list(plan.left_out)})
            entries.append(SeedJournal(self.user_dir).record(entry))
        return entries


# --- step 1: what to run ------------------------------------------------------------------------------
def plan_generation(settings: GenerationSettings, training: Any = None, stack: list | None = None,
                    locate: Callable[[str], str | None] | None = None) -> Plan:
    """The model to call, the personal LoRA, the one extra LoRA and the rows left out."""
    if settings.run_on not in RUN_ON:
        raise InputError(f"run_on must be one of {', '.join(RUN_ON)}; got {settings.run_on!r}.")
    trigger = settings.trigger_words.strip() or (getattr(training, "trigger_word", "") if training else "")
    prompt = put_trigger_first(settings.prompt, trigger)
    if not prompt:
        raise InputError("The prompt is empty: describe the image (the trigger word is put first for you).")
    version = settings.version.strip() or (str(getattr(training, "version", "") or "") if training else "")
    weights = settings.lora_weights.strip()
    rows = stack_rows(stack)
    refuse_url_tokens([("lora_weights", weights), ("version", version)]
                      + [(f"the LORA_STACK row {strip_url_secrets(r[0])}", r[0]) for r in rows])
    notes: list[str] = []
    personal_strength = settings.lora_strength
    mine = [i for i, row in enumerate(rows) if _is_personal(row[0], training, version, weights, locate)]
    if mine:
        personal_strength = rows[mine[0]][1]
        notes.append(f"The stack's row {rows[mine[0]][0]} is the personal LoRA: its strength "
                     f"{personal_strength:g} is used instead of lora_strength.")
        rows = [row for i, row in enumerate(rows) if i not in mine]
    use_official = settings.run_on == "flux-dev-lora" or (settings.run_on == "auto" and bool(weights))
    if use_official:
        if not weights and version:
            weights = _weights_of_version(version)
        if not weights and rows:
            name, strength, _ = rows.pop(0)
            weights, personal_strength = remote_reference(name, locate), strength
            notes.append(f"No personal LoRA given: the stack's first row {name} is the main LoRA.")
        if not weights:
            raise InputError("Nothing to generate with: connect the trainer's training output, set version (your "
                             "trained model's owner/name:<version id>), or set lora_weights (a Replicate model, "
                             "Hugging Face or Civitai URL) for flux-dev-lora.")
        personal = LoraChoice(weights, personal_strength, _label(weights, training))
        model, version_id, target = OFFICIAL_MODEL, "", OFFICIAL
    else:
        if not version:
            raise InputError("Nothing to generate with: connect the trainer's training output or set version to "
                             "your trained model's owner/name:<version id> (the trainer shows it)"
                             + (", or set lora_weights to run flux-dev-lora." if settings.run_on == "auto" else "."))
        model, version_id = parse_version(version)
        personal = LoraChoice(f"{model}:{version_id}", personal_strength, _label(version, training))
        target = TRAINED
    extra, left_out = None, []
    active = [row for row in rows if row[1] != 0]
    if active:
        name, strength, _ = active[0]
        extra = LoraChoice(remote_reference(name, locate), strength, name)
        left_out = [f"{name} ({strength:g})" for name, strength, _ in active[1:]]
    return Plan(target, model, version_id, prompt, personal, extra, tuple(left_out), tuple(notes))


def stack_rows(stack: list | None) -> list[tuple[str, float, float]]:
    """A LORA_STACK [(lora_name, model_strength, clip_strength)] as clean tuples; "None" rows dropped."""
    rows = []
    for item in stack or []:
        if not isinstance(item, (list, tuple)) or len(item) < 2:
            raise InputError(f"The lora_stack input has an entry {item!r}; expected (lora_name, model_strength, "
                             "clip_strength).")
        name = str(item[0]).strip()
        if name and name.lower() != "none":
            strength = float(item[1])
            rows.append((name, strength, float(item[2]) if len(item) > 2 else strength))
    return rows


def parse_version(version: str) -> tuple[str, str]:
    """("owner/name", "<64 hex>") from "owner/name:<id>" (a bare id is not enough: the schema lives under
    the model)."""
    model, _, version_id = version.strip().partition(":")
    if not version_id or "/" not in model or not _VERSION_ID.match(version_id):
        raise InputError(f"version must look like owner/name:<64-character version id> (the trainer shows it; "
                         f"a bare id is not enough); got {version!r}.")
    return model, version_id


def remote_reference(name: str, locate: Callable[[str], str | None] | None = None) -> str:
    """What Replicate can fetch for a LoRA: the name itself when it is a URL or a Replicate model, else a
    local file's recorded source (Likeness training, `.civitai.info`, LoRA Manager `.metadata.json`)."""
    name = name.strip()
    if re.match(r"^https?://", name) or re.match(r"^(www\.)?(huggingface\.co|civitai\.com)/", name):
        return name
    if _MODEL_REF.match(name) and not name.lower().endswith((".safetensors", ".ckpt", ".pt", ".bin")):
        return name
    path = locate(name) if locate else None
    source = local_source(path) if path else None
    if source:
        return source
    raise InputError(f"The LoRA {name} is only a file on this computer: Replicate cannot fetch it. Use its "
                     "Civitai or Hugging Face URL (or a Replicate owner/model) as the row's name, or put the "
                     f"{Path(name).stem}.civitai.info file Civitai Helper / LoRA Manager write next to it.")


def local_source(path: str | os.PathLike) -> str | None:
    """Where a LoRA file in models/loras came from, if it says so."""
    path = Path(path)
    stem = path.with_suffix("")
    info = read_json(f"{stem}.civitai.info", None) if Path(f"{stem}.civitai.info").is_file() else None
    if isinstance(info, dict):
        if info.get("downloadUrl"):
            return str(info["downloadUrl"])
        if info.get("id"):
            return f"https://civitai.com/api/download/models/{info['id']}"
    meta = read_json(f"{stem}.metadata.json", None) if Path(f"{stem}.metadata.json").is_file() else None
    civitai = (meta or {}).get("civitai") if isinstance(meta, dict) else None
    if isinstance(civitai, dict) and civitai.get("id"):
        return f"https://civitai.com/api/download/models/{civitai['id']}"
    try:
        _, metadata = read_header(path)
    except (OSError, ValueError, LikenessError):
        return None
    version = metadata.get("likeness_destination_version", "")
    if ":" in version:
        return _weights_of_version(version)
    return None


def _is_personal(name: str, training: Any, version: str, weights: str,
                 locate: Callable[[str], str | None] | None) -> bool:
    if training is not None and name == getattr(training, "lora_file", None):
        return True
    if weights and name == weights:
        return True
    if version and locate:
        path = locate(name)
        if path:
            try:
                return read_header(path)[1].get("likeness_destination_version") == version
            except (OSError, ValueError, LikenessError):
                return False
    return False


def _weights_of_version(version: str) -> str:
    """flux-dev-lora's form of a trained version: owner/model/<version id>."""
    model, version_id = parse_version(version)
    return f"{model}/{version_id}"


def _label(reference: str, training: Any) -> str:
    return getattr(training, "lora_file", "") or reference if training is not None else reference


def plan_lines(plan: Plan) -> list[str]:
    lines = [strip_url_secrets(note) for note in plan.notes]
    if plan.left_out:
        lines.append(f"Left out (Replicate takes one extra LoRA; "
                     f"{strip_url_secrets(plan.extra.label) if plan.extra else ''} was used): "
                     f"{', '.join(strip_url_secrets(r) for r in plan.left_out)}.")
    return lines


def scale_lines(plan: Plan, inputs: dict, rules: tuple[ScaleRule, ScaleRule]) -> list[str]:
    lines = []
    if plan.personal is not None and "lora_scale" in inputs:
        lines.append(f"Personal LoRA {strip_url_secrets(plan.personal.label)}: strength {plan.personal.strength:g} "
                     f"→ lora_scale {inputs['lora_scale']:g} ({rules[0].why}).")
    if plan.extra is not None:
        lines.append(f"Extra LoRA {strip_url_secrets(plan.extra.label)}: strength {plan.extra.strength:g} → "
                     f"extra_lora_scale {inputs['extra_lora_scale']:g} ({rules[1].why}).")
    return lines


def refuse_url_tokens(values: list[tuple[str, str]]) -> None:
    """A token pasted into a URL would be saved with the widget into the workflow and the image's metadata."""
    for where, value in values:
        params = url_token_params(value)
        if params:
            host = (urlsplit(value).hostname or "").lower()
            env = "HF_TOKEN" if host.endswith("huggingface.co") else "CIVITAI_API_TOKEN"
            raise InputError(f"{where} carries a token in its URL ({', '.join(f'{p}=…' for p in params)}): widgets "
                             "are saved into your workflow and into every image's metadata. Remove it from the URL "
                             f"and set {env} in the environment that starts ComfyUI (or put the token alone in the "
                             f"user folder's likeness/{env.lower()} file): the pack sends it to Replicate as a secret "
                             "input. Nothing was sent or paid.")


# --- step 2: the result cache --------------------------------------------------------------------------
def cache_key(plan: Plan, settings: GenerationSettings) -> str:
    """Everything that makes the images: the model/version and every input as asked for."""
    what = {"model": plan.model, "version": plan.version_id, "prompt": plan.prompt, "seed": int(settings.seed),
            "steps": int(settings.steps), "guidance": round(float(settings.guidance), 6),
            "aspect_ratio": settings.aspect_ratio, "num_outputs": int(settings.num_outputs),
            "size": [int(settings.width), int(settings.height)] if settings.aspect_ratio == "custom" else None,
            "output_format": settings.output_format, "go_fast": bool(settings.go_fast),
            "loras": [[c.reference, round(float(c.strength), 6)] if c else None for c in (plan.personal, plan.extra)]}
    return json_digest(what)


class ResultCache:
    """`<user dir>/replicate_images/<key>/`: the downloaded files, `result.json`, and `pending.json` while a
    prediction runs (so a crash never pays twice)."""

    def __init__(self, user_dir: str | Path):
        self.root = Path(user_dir) / CACHE_DIR

    def folder(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> GenerationResult | None:
        data = read_json(self.folder(key) / "result.json", None)
        if not isinstance(data, dict):
            return None
        try:
            images = [decode_image(Path(f).read_bytes(), f) for f in data["files"]]
        except (OSError, LikenessError):
            log.warning("Likeness: the stored images for %s are gone; generating again", key[:12])
            return None
        # stored before each image had its own entry: one id for them all
        ids = data.get("journal_ids") or ([data["journal_id"]] if data.get("journal_id") else [])
        return GenerationResult(images, data["prediction_id"], data["model"], data["inputs"], 0.0,
                                data.get("estimated_usd", 0.0), data.get("web", ""), True, list(ids),
                                data["files"], data.get("lines", []))

    def store(self, key: str, prediction_id: str, blobs: list[bytes]) -> list[Path]:
        """The files, named by prediction (a rerun keeps the earlier images the journal points at)."""
        folder = self.folder(key)
        return [atomic_write_bytes(folder / f"{prediction_id}-{i}.{_extension(blob)}", blob)
                for i, blob in enumerate(blobs)]

    def save(self, key: str, result: GenerationResult) -> None:
        record = {k: v for k, v in asdict(result).items() if k not in ("images", "reused")}
        atomic_write_json(self.folder(key) / "result.json", record)
        self.clear_pending(key)

    def mark_intent(self, key: str, model: str, started: float) -> None:
        """Written before the create call: a prediction for this work may exist from `started` on."""
        atomic_write_json(self.folder(key) / "pending.json", {"prediction_id": "", "model": model,
                                                              "started": started})

    def mark_pending(self, key: str, prediction_id: str, model: str) -> None:
        pending = self.pending(key) or {}
        atomic_write_json(self.folder(key) / "pending.json", {**pending, "prediction_id": prediction_id,
                                                              "model": model})

    def pending(self, key: str) -> dict | None:
        return read_json(self.folder(key) / "pending.json", None)

    def clear_pending(self, key: str) -> None:
        (self.folder(key) / "pending.json").unlink(missing_ok=True)

    def forget(self, key: str) -> None:
        shutil.rmtree(self.folder(key), ignore_errors=True)


# --- step 3: schema, inputs, validation, estimate ------------------------------------------------------
def fetch_schema(api: ReplicateApi, plan: Plan) -> dict:
    """The `Input` schema (with its components) of the version that will run."""
    if plan.version_id:
        version = api.get_json(f"/v1/models/{plan.model}/versions/{plan.version_id}",
                               f"Looking up {plan.model} on Replicate",
                               not_found=f"{plan.model} has no version {plan.version_id[:12]}… on your account "
                                         "(check version, or connect the trainer's training output)")
    else:
        model = api.get_json(f"/v1/models/{plan.model}", f"Looking up {plan.model} on Replicate",
                             not_found=f"no model {plan.model}")
        version = (model or {}).get("latest_version")
    components = (((version or {}).get("openapi_schema") or {}).get("components") or {}).get("schemas") or {}
    schema = components.get("Input")
    if not schema:
        raise ServiceError(f"{plan.ref} publishes no input schema on Replicate, so its inputs cannot be checked "
                           "before paying; pick another version.")
    return {**schema, "_components": components}


def build_inputs(plan: Plan, settings: GenerationSettings,
                 schema: dict) -> tuple[dict[str, Any], tuple[ScaleRule, ScaleRule]]:
    """The model's inputs in its own names, with ComfyUI strengths converted to its scale convention on the path
    the predictor will really take (a custom size runs bf16 whatever go_fast says); the rules for the personal
    LoRA and the extra one (each reads its own multiplier from the schema)."""
    props = schema.get("properties", {})

    def rule_for(name: str) -> ScaleRule:
        return scale_rule(plan.target, go_fast=settings.go_fast, has_extra=plan.extra is not None,
                          lora_scale_description=props.get(name, {}).get("description"),
                          schema_has_go_fast="go_fast" in props, custom_size=settings.aspect_ratio == "custom")
    rule, extra_rule = rule_for("lora_scale"), rule_for("extra_lora_scale")
    guidance_name = "guidance" if "guidance" in props else "guidance_scale"
    inputs: dict[str, Any] = {"prompt": plan.prompt, "seed": int(settings.seed),
                              "num_inference_steps": int(settings.steps),
                              guidance_name: float(settings.guidance), "aspect_ratio": settings.aspect_ratio,
                              "num_outputs": int(settings.num_outputs), "output_format": settings.output_format}
    if settings.aspect_ratio == "custom":
        if "width" not in props:
            raise InputError(f"{plan.model} takes aspect ratios only (no custom width/height): pick one of "
                             f"{', '.join(ASPECT_RATIOS[:-1])}, or run your trained version.")
        inputs["width"], inputs["height"] = int(settings.width), int(settings.height)
    if "go_fast" in props:
        inputs["go_fast"] = bool(settings.go_fast)
    if plan.target == OFFICIAL and plan.personal is not None:
        inputs["lora_weights"] = plan.personal.reference
    if plan.personal is not None:
        inputs["lora_scale"] = round(rule.to_replicate(plan.personal.strength), 4)
    if plan.extra is not None:
        inputs["extra_lora"] = plan.extra.reference
        inputs["extra_lora_scale"] = round(extra_rule.to_replicate(plan.extra.strength), 4)
    return inputs, (rule, extra_rule)


def lora_secrets(plan: Plan, schema: dict, user_dir: str | Path | None) -> dict[str, str]:
    """The tokens a gated LoRA's host needs, as the model's own secret inputs (hf_api_token, civitai_api_token),
    from the environment or the user folder's key files; only for a host one of the LoRAs is on."""
    props = schema.get("properties", {})
    secrets = {}
    for choice in (plan.personal, plan.extra):
        if choice is None:
            continue
        host = (urlsplit(choice.reference if "://" in choice.reference else f"https://{choice.reference}")
                .hostname or "").lower()
        for domain, (name, service) in LORA_TOKENS.items():
            if (host == domain or host.endswith("." + domain)) and name in props:
                token = third_party_token(service, user_dir)
                if token:
                    secrets[name] = token
    return secrets


def without_secrets(inputs: dict) -> dict:
    """Inputs as compared and stored: no secret input (Replicate may echo or mask them)."""
    return {k: v for k, v in inputs.items() if k not in {name for name, _ in LORA_TOKENS.values()}}


def stored_inputs(inputs: dict) -> dict:
    """What the journal and the result cache keep of the inputs: no secret, no credential in a URL."""
    return {k: strip_url_secrets(v) if isinstance(v, str) and "://" in v else v
            for k, v in without_secrets(inputs).items()}


def outputs_removed(data: dict) -> bool:
    """A succeeded prediction whose outputs Replicate has removed ("after an hour": output null, data_removed)."""
    return data.get("status") == "succeeded" and (bool(data.get("data_removed")) or data.get("output") is None)


def validate_inputs(inputs: dict[str, Any], schema: dict, label: str) -> None:
    """Every input against the version's own schema (names, types, ranges, choices), before paying."""
    problems = schema_problems(inputs, schema, "this model")
    if problems:
        raise InputError(f"{label} would refuse these inputs; nothing was sent or paid:\n- " + "\n- ".join(problems))


def estimate_cost(plan: Plan, inputs: dict, prices: PriceTable) -> float:
    """Official model: its price per image × images. Trained version: estimated seconds × the H100 price."""
    outputs = int(inputs.get("num_outputs", 1))
    per_image = prices.per_image(plan.model) if plan.target == OFFICIAL else None
    if per_image is not None:
        return per_image * outputs
    per_step = float(prices.data.get("replicate_generation_seconds_per_step", SECONDS_PER_STEP))
    setup = float(prices.data.get("replicate_generation_setup_seconds", SETUP_SECONDS))
    seconds = setup + per_step * int(inputs.get("num_inference_steps", 28)) * outputs
    return seconds * prices.hardware_per_second(GENERATION_HARDWARE)


def actual_cost(plan: Plan, data: dict, prices: PriceTable) -> float:
    """What Replicate bills: per output image (official), or `metrics.predict_time` × the hardware price."""
    per_image = prices.per_image(plan.model) if plan.target == OFFICIAL else None
    if per_image is not None:
        count = len(_output_list(data.get("output"))) or int((data.get("metrics") or {}).get("image_count") or 0)
        return per_image * count if data.get("status") == "succeeded" else 0.0
    seconds = float((data.get("metrics") or {}).get("predict_time") or 0.0)
    return seconds * prices.hardware_per_second(GENERATION_HARDWARE)


# --- step 5: outputs -----------------------------------------------------------------------------------
def fetch_output(api: ReplicateApi, url: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """An output's bytes: a data URL decoded here, a Replicate URL with the token, any other URL without."""
    if url.startswith("data:"):
        return _data_url_bytes(url)
    if not re.match(r"^https?://", url):
        raise ServiceError(f"Replicate returned an output that is not a URL ({url[:60]!r}).")
    out = io.BytesIO()
    if api.is_own_host(url):
        api.download(url, out, max_bytes=max_bytes, doing="Downloading the generated image",
                     too_big="more than a generated image can be")
        return out.getvalue()
    return api.call("Downloading the generated image", _download_anonymously, url, max_bytes, idempotent=True)


def _download_anonymously(url: str, max_bytes: int) -> bytes:
    """A GET with no Authorization header: a third-party host never sees the Replicate token."""
    data = bytearray()
    with httpx.Client(timeout=httpx.Timeout(10.0, read=120.0), follow_redirects=True) as client:
        with client.stream("GET", url) as resp:
            if resp.status_code >= 400:
                raise ServiceError(f"Downloading the generated image from {urlsplit(url).hostname} failed "
                                   f"({resp.status_code}); the prediction's page still has it.")
            for chunk in resp.iter_bytes(1 << 20):
                data += chunk
                if len(data) > max_bytes:
                    raise ServiceError(f"The generated image is larger than {max_bytes >> 20} MB; refused.")
    return bytes(data)


def _data_url_bytes(url: str) -> bytes:
    head, _, payload = url.partition(",")
    if not head.endswith(";base64"):
        raise ServiceError("Replicate returned a data URL that is not base64; the pack cannot read it.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError("Replicate returned a broken data URL (not valid base64).") from None


def decode_image(blob: bytes, what: str) -> np.ndarray:
    """RGB float32 H×W×3 in 0..1 (what ComfyUI's IMAGE holds per image)."""
    try:
        with Image.open(io.BytesIO(blob)) as img:
            img.load()
            rgb = img.convert("RGB")
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise ServiceError(f"The {what} is not an image the pack can read ({exc}).") from None
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _output_list(output: Any) -> list[str]:
    if output is None:
        return []
    if isinstance(output, (list, tuple)):
        return [str(o) for o in output if o]
    return [str(output)]


def _extension(blob: bytes) -> str:
    if blob.startswith(b"\x89PNG"):
        return "png"
    if blob.startswith(b"\xff\xd8"):
        return "jpg"
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return "webp"
    return "bin"


def _log_tail(logs: str | None, lines: int = 3) -> str:
    tail = [line for line in (logs or "").splitlines() if line.strip()][-lines:]
    return ("Last log lines: " + " | ".join(tail) + ". ") if tail else ""
