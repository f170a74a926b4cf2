"""A local fake of Replicate's HTTP API (api.replicate.com/v1) for the real `replicate` SDK.

Built from Replicate's OpenAPI document and the checklist in `reference/replicate-api.md` §9: Bearer auth,
RFC 7807 problem+json errors, models (create/get/versions), the Files API (multipart, streamed to disk),
trainings (create/get/cancel/list) whose logs advance over time, a real `trained_model.tar` holding a small
real LoRA, fault injection (429/500, failures, aborts, malicious tars) and a request log.

It runs in a thread of the test process, so tests drive it through Python:

    fake.plan_next(outcome="failed", error="CUDA out of memory")   # the next training fails
    fake.inject("POST", r"/v1/files", 500)                           # the next upload answers 500
    fake.count("POST", r"/trainings$")                               # how many trainings were created
    fake.drop("GET", r"/v1/trainings/", times=2)                     # the next 2 polls: a TCP reset, no answer
    fake.drop("GET", r"trained_model[.]tar$", mode="truncate")       # half the body, then a reset

Time: a training's timeline is in simulated seconds. By default each GET of the training advances it one
tick (a plan's `ticks` spread the whole run over that many polls), so tests never sleep; `use_clock(fn)`
drives every timeline from a clock instead (a benchmark's virtual clock).

Predictions (§4 of the reference): `POST /v1/predictions` (a version), `POST /v1/models/{o}/{n}/predictions`
(official models only: 404 otherwise), `GET /v1/predictions/{id}`, `POST …/cancel`. With `Prefer: wait` the 201
carries `Preference-Applied: wait`, status `processing` and the output already filled (never `processing`
with a null output); without it, or with `plan_prediction(sync=False)`, the prediction starts and advances one
tick per GET. Outputs are data URLs, token-protected file URLs on the API's own host (`/delivery/…`), or
"third-party" URLs on another host name (`localhost` instead of `127.0.0.1`) that need no token: the request
log records whether an Authorization header arrived there.

    fake.plan_prediction(sync=False, stall_at_tick=2)              # the next prediction waits until canceled
    fake.prediction_plan = PredictionPlan(latency_s=1.5)           # every prediction takes 1.5 s of wall time
    fake.add_trained_version("likeness-tester/me")                 # a destination version to run
    fake.expire_prediction(prediction_id)                          # an hour later: outputs removed
    fake.stall("POST", r"^/v1/files$")                             # the connection stops moving (until released)
    fake.applied_strengths(prediction_id)                          # what the predictor merges (fp8/bf16 path)

The predictor's strength rules (reference lora-and-performance §3.5, cog-flux predict.py): go_fast runs fp8 and
multiplies every LoRA scale by the schema's stated 1.5; a custom aspect ratio or an image input falls back to
bf16 (with the predictor's own log line); on bf16 a trained version applies a single LoRA's scale twice (scale²),
and each scale once when an extra LoRA is loaded. `applied_strengths` reports what that means for a prediction:
the path taken and the strength each LoRA really gets, in ComfyUI's terms.
    fake.use_images(lambda model, version, inputs, i: photo)        # outputs drawn from test photos
    fake.training_spans()                                           # when each training was created and ended
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import mmap
import os
import random
import re
import secrets
import shutil
import socket
import string
import struct
import tarfile
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np
from safetensors.numpy import save as save_safetensors

TRAINER = "ostris/flux-dev-lora-trainer"
TRAINER_VERSION = "26dce37af90b9d997eeb970d92e47de3064d46c300504ae376c75bef6a9022d2"
FLUX_DEV_LORA = "black-forest-labs/flux-dev-lora"
FLUX_DEV_LORA_VERSION = "ae0d7d645446924cf1871e3ca8796e8318f72465d2b5af9323a835df93bf0917"
DEFAULT_OWNER = "likeness-tester"
FILE_LIMIT = 100 * 1000 * 1000          # "Files must be less than 100MB in size"
HARDWARE = [("CPU", "cpu"), ("Nvidia T4 GPU", "gpu-t4"), ("Nvidia L40S GPU", "gpu-l40s"),
            ("Nvidia A100 (80GB) GPU", "gpu-a100-large"), ("Nvidia H100 GPU", "gpu-h100")]
SEED_BLOCKS = (7, 12, 16, 20)
FLUX_HIDDEN, FLUX_MLP = 3072, 12288      # single block proj_out: Linear(3072 + 12288 -> 3072)


# --- what a training does, chosen by the test ------------------------------------------------
@dataclass
class TrainingPlan:
    outcome: str = "succeeded"           # succeeded | failed | aborted
    error: str = "CUDA out of memory. Tried to allocate 2.00 GiB"
    tar: str = "normal"                  # normal | traversal | symlink | hardlink | oversized | no_lora | two_loras | not_lora
    ticks: int = 6                       # GETs over which the whole run is spread (tick mode)
    stall_at_tick: int | None = None     # stop advancing at this tick until release()
    queue_s: float = 20.0                # simulated seconds in "starting"
    setup_s: float = 150.0               # weights download, zip extraction, latent caching
    seconds_per_step: float = 1.05
    weights: bool = True                 # False: output has no "weights" URL
    weights_on: str = "delivery"         # delivery (Replicate's own host) | public (another host name)
    lora_rank: int = 4


@dataclass
class PredictionPlan:
    outcome: str = "succeeded"           # succeeded | failed
    error: str = "CUDA out of memory. Tried to allocate 1.00 GiB"
    sync: bool = True                    # Prefer: wait gets the finished output in the 201
    output: str = "auto"                 # auto (data URL when sync, else delivery) | data | delivery | public
    ticks: int = 3                       # GETs from created to done (async)
    stall_at_tick: int | None = None     # stop advancing at this tick (until canceled or release_predictions)
    predict_time: float = 4.2            # metrics.predict_time of a finished prediction
    image_side: int = 64                 # the longer side of the fake's images
    latency_s: float = 0.0               # wall seconds before it can finish (a `Prefer: wait` answer is held)


@dataclass
class Request:
    method: str
    path: str
    query: dict
    status: int = 0
    authorized: bool = False
    auth_sent: bool = False              # any Authorization header at all (third-party hosts must get none)
    host: str = ""                       # the Host header: 127.0.0.1:<port> (Replicate) or localhost:<port>
    body_bytes: int = 0
    user_agent: str = ""
    headers: dict = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    dropped: bool = False                # the connection was reset instead of (or in the middle of) the answer


@dataclass
class Injection:
    method: str
    path: re.Pattern
    status: int
    body: dict | None
    headers: dict
    times: int
    after: bool                          # run the real handler first (the work is done), then fail
    mode: str = "answer"                 # answer (status/body) | reset (no answer) | truncate (half, then reset)
                                         # | stall (read nothing, answer nothing until released, then reset)
    released: threading.Event | None = None


class Problem(Exception):
    def __init__(self, status: int, detail: str, title: str | None = None, **extra: Any):
        self.status, self.body = status, {"detail": detail, "status": status, **extra}
        if title:
            self.body["title"] = title


# --- the fake --------------------------------------------------------------------------------
class FakeReplicate:
    def __init__(self, token: str, owner: str = DEFAULT_OWNER, host: str = "127.0.0.1", port: int = 0):
        self.token, self.owner = token, owner
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._dir = Path(tempfile.mkdtemp(prefix="fake-replicate-"))
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self
        self._thread: threading.Thread | None = None
        self.reset()

    # lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def env(self) -> dict[str, str]:
        """The SDK's base URL, plus the pack's poll interval made short (the fake needs no politeness)."""
        return {"REPLICATE_BASE_URL": self.url, "LIKENESS_REPLICATE_POLL_S": "0.05"}

    def start(self) -> FakeReplicate:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-replicate", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def reset(self) -> None:
        """Back to a fresh account: only the trainer model, no files, trainings, faults or log."""
        with self._lock:
            self.requests: list[Request] = []
            self.injections: list[Injection] = []
            self.plan = TrainingPlan()
            self._next_plans: list[TrainingPlan] = []
            self.trainings: dict[str, dict] = {}
            self.predictions: dict[str, dict] = {}
            self.predictors: dict[str, str] = {}        # version id → which cog-flux predictor serves it
            self.prediction_plan = PredictionPlan()
            self._next_prediction_plans: list[PredictionPlan] = []
            self.files: dict[str, dict] = {}
            self.models: dict[str, dict] = {}
            self.file_limit = FILE_LIMIT
            self.clock: Callable[[], float] | None = None
            self.image_source: Callable[[str, str, dict, int], Any] | None = None
            self.trainer_schema = trainer_openapi_schema()
            self._add_model(*TRAINER.split("/"), visibility="public", hardware="gpu-h100",
                            versions=[self._version(TRAINER_VERSION, self.trainer_schema)])
            self.flux_dev_lora_schema = flux_dev_lora_openapi_schema()
            self._add_model(*FLUX_DEV_LORA.split("/"), visibility="public", hardware="gpu-h100", official=True,
                            versions=[self._version(FLUX_DEV_LORA_VERSION, self.flux_dev_lora_schema)])
            self.predictors[FLUX_DEV_LORA_VERSION] = "dev-lora"
            for path in self._dir.iterdir():
                path.unlink()
            self._changed.notify_all()

    # --- controls for tests ---------------------------------------------------------------
    def plan_next(self, **changes: Any) -> TrainingPlan:
        """The next created training follows this plan (the default plan with `changes`)."""
        plan = replace(self.plan, **changes)
        with self._lock:
            self._next_plans.append(plan)
        return plan

    def inject(self, method: str, path: str, status: int, body: dict | bytes | None = None,
               headers: dict | None = None, times: int = 1, after: bool = False) -> None:
        """The next `times` requests matching (method, path regex) answer `status` instead: a JSON `body`, or
        bytes sent as they are (with the Content-Type in `headers`: an HTML page from a proxy)."""
        if body is None:
            body = {"detail": "Internal server error", "status": status}
        with self._lock:
            self.injections.append(Injection(method.upper(), re.compile(path), status, body,
                                             dict(headers or {}), times, after))

    def drop(self, method: str, path: str, mode: str = "reset", times: int = 1, after: bool = False) -> None:
        """The next `times` requests matching (method, path regex) lose their connection: `reset` answers
        nothing (a TCP reset; with `after`, once the work is done), `truncate` sends the headers with the whole
        Content-Length and half the body, then resets (a download cut short)."""
        if mode not in ("reset", "truncate"):
            raise ValueError(f"unknown drop mode {mode!r}: reset or truncate")
        with self._lock:
            self.injections.append(Injection(method.upper(), re.compile(path), 0, None, {}, times,
                                             after or mode == "truncate", mode))

    def stall(self, method: str, path: str, times: int = 1) -> threading.Event:
        """The next `times` requests matching (method, path regex) stall: the server stops reading the body and
        answers nothing (a dead link, a proxy that hangs) until the returned event is set (or two minutes
        pass); then the connection is reset."""
        released = threading.Event()
        with self._lock:
            self.injections.append(Injection(method.upper(), re.compile(path), 0, None, {}, times, False, "stall",
                                             released))
        return released

    def throttle(self, method: str, path: str, times: int = 1, retry_after: int = 1,
                 header: bool = False) -> None:
        """429 as Replicate sends it: `retry_after` in the body (a Retry-After header only if asked)."""
        body = {"detail": f"Request was throttled. Your rate limit resets in ~{retry_after}s.",
                "status": 429, "retry_after": retry_after}
        self.inject(method, path, 429, body, {"Retry-After": str(retry_after)} if header else None, times)

    def release(self, training_id: str | None = None) -> None:
        """Lets a stalled training (plan.stall_at_tick) go on; all of them when no id is given."""
        with self._lock:
            for t in self.trainings.values():
                if training_id in (None, t["id"]):
                    t["plan"] = replace(t["plan"], stall_at_tick=None)
            self._changed.notify_all()

    def plan_prediction(self, **changes: Any) -> PredictionPlan:
        """The next created prediction follows this plan (the default plan with `changes`)."""
        plan = replace(self.prediction_plan, **changes)
        with self._lock:
            self._next_prediction_plans.append(plan)
        return plan

    def add_trained_version(self, model: str, predictor: str = "hotswap") -> str:
        """A destination model with one version as a training makes it; its `owner/name:<id>`.
        `predictor`: "hotswap" (the newer trained-model endpoint, with go_fast) or "fine-tuner"."""
        owner, name = model.split("/")
        version_id = secrets.token_hex(32)
        schema = trained_version_openapi_schema(predictor)
        with self._lock:
            if model not in self.models:
                self._add_model(owner, name)
            self.models[model]["versions"].insert(0, self._version(version_id, schema))
            self.predictors[version_id] = predictor
        return f"{model}:{version_id}"

    def prediction_ids(self) -> list[str]:
        with self._lock:
            return list(self.predictions)

    def prediction(self, prediction_id: str) -> dict:
        """The prediction as GET would show it, without advancing it."""
        with self._lock:
            return self._prediction_json(self.predictions[prediction_id])

    def use_images(self, source: Callable[[str, str, dict, int], Any] | None) -> None:
        """Predictions draw their outputs with `source(model, version_id, inputs, index)` (a PIL image) instead of
        solid colours: test data behind the same protocol, e.g. real face photos that depend on the version."""
        with self._lock:
            self.image_source = source

    def training_spans(self) -> dict[str, tuple[float, float | None]]:
        """Each training's real (time.monotonic) creation and end, as Replicate's created_at/completed_at would
        tell them: when the create request made it, and when a GET or cancel first found it ended (None: not
        yet). Spans that overlap ran at the same time."""
        with self._lock:
            return {t["id"]: tuple(t["span"]) for t in self.trainings.values()}

    def use_clock(self, clock: Callable[[], float] | None) -> None:
        """Drive every training's timeline from `clock()` (seconds) instead of by polls."""
        with self._lock:
            self.clock = clock
            for t in self.trainings.values():
                t["started_clock"] = clock() if clock else 0.0

    def add_model(self, owner: str, name: str, **fields: Any) -> dict:
        with self._lock:
            return self._add_model(owner, name, **fields)

    def count(self, method: str, path: str = "") -> int:
        pattern = re.compile(path)
        with self._lock:
            return sum(1 for r in self.requests if r.method == method.upper() and pattern.search(r.path))

    def wait_for(self, predicate: Callable[[FakeReplicate], Any], timeout: float = 60.0) -> Any:
        """Blocks until `predicate(self)` is truthy (re-checked after every request); returns its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fake Replicate: condition not met in {timeout} s; last requests: "
                                       f"{[(r.method, r.path, r.status) for r in self.requests[-8:]]}")
                self._changed.wait(left)

    def training_ids(self) -> list[str]:
        with self._lock:
            return list(self.trainings)

    def training(self, training_id: str) -> dict:
        """The training as GET would show it, without advancing it."""
        with self._lock:
            return self._training_json(self.trainings[training_id])

    # --- models ---------------------------------------------------------------------------
    def _add_model(self, owner: str, name: str, visibility: str = "private", hardware: str = "gpu-t4",
                   description: str | None = None, versions: list[dict] | None = None,
                   official: bool = False) -> dict:
        model = {"url": f"https://replicate.com/{owner}/{name}", "owner": owner, "name": name,
                 "description": description, "visibility": visibility, "github_url": None,
                 "paper_url": None, "license_url": None, "run_count": 0, "cover_image_url": None,
                 "default_example": None, "created_at": _now(), "hardware": hardware,
                 "versions": list(versions or []), "official": official}
        self.models[f"{owner}/{name}"] = model
        return model

    @staticmethod
    def _version(version_id: str, schema: dict) -> dict:
        return {"id": version_id, "created_at": _now(), "cog_version": "0.9.21", "openapi_schema": schema}

    def _model_json(self, model: dict) -> dict:
        body = {k: v for k, v in model.items() if k not in ("versions", "hardware", "official")}
        body["latest_version"] = model["versions"][0] if model["versions"] else None
        return body

    # --- trainings ------------------------------------------------------------------------
    def _create_training(self, owner: str, name: str, version_id: str, body: dict) -> dict:
        model = self.models.get(f"{owner}/{name}")
        if model is None or not any(v["id"] == version_id for v in model["versions"]):
            raise Problem(422, "The specified version does not exist (or perhaps you don't have permission "
                               "to use it?)", title="Invalid version or not permitted")
        destination = body.get("destination")
        if not isinstance(destination, str) or destination not in self.models:
            raise Problem(404, "The specified training destination does not exist")
        if self.models[destination]["url"].split("/")[-2] != self.owner:
            raise Problem(403, "You do not have permission to push to this destination")
        version = next(v for v in model["versions"] if v["id"] == version_id)
        schema = version["openapi_schema"]["components"]["schemas"].get("TrainingInput", {})
        _validate_input(body.get("input"), schema, version["openapi_schema"]["components"]["schemas"])
        plan = self._next_plans.pop(0) if self._next_plans else replace(self.plan)
        training_id = _new_id()
        training = {"id": training_id, "model": f"{owner}/{name}", "version": version_id,
                    "destination": destination, "input": body["input"], "plan": plan,
                    "created_at": _now(), "ticks": 0,
                    "started_clock": self.clock() if self.clock else 0.0,
                    "status": "starting", "final": None, "canceled_at_s": None,
                    "span": [time.monotonic(), None]}
        self.trainings[training_id] = training
        created = self._training_json(training)
        created["urls"] = {"get": f"{self.url}/v1/predictions/{training_id}",
                           "cancel": f"{self.url}/v1/predictions/{training_id}/cancel",
                           "web": f"{self.url}/p/{training_id}"}
        return created

    def _advance(self, training: dict) -> None:
        plan = training["plan"]
        if training["final"] is None and (plan.stall_at_tick is None or training["ticks"] < plan.stall_at_tick):
            training["ticks"] += 1

    def _elapsed(self, training: dict) -> float:
        plan = training["plan"]
        if self.clock is not None:
            return max(0.0, self.clock() - training["started_clock"])
        # tick 1: running (setup), tick 2: training starts, ticks 3..plan.ticks: the steps, evenly
        ticks, steps = training["ticks"], _steps(training)
        if ticks <= 2:
            return (0.0, plan.queue_s, plan.queue_s + plan.setup_s)[ticks]
        share = (ticks - 2) / max(plan.ticks - 2, 1)
        return plan.queue_s + plan.setup_s + share * steps * plan.seconds_per_step

    def _training_json(self, t: dict) -> dict:
        plan, steps = t["plan"], _steps(t)
        elapsed = self._elapsed(t) if t["final"] is None else t["final"]
        run_s = elapsed - plan.queue_s
        train_s = plan.setup_s + steps * plan.seconds_per_step
        status, output, error, metrics = "processing", None, None, {}
        if t["canceled_at_s"] is not None:
            status, elapsed = "canceled", t["canceled_at_s"]
            run_s = elapsed - plan.queue_s
        elif t.get("aborted"):
            status, run_s = "aborted", 0.0
        elif run_s < 0:
            status = "starting"
        elif plan.outcome == "aborted":
            status, run_s = "aborted", 0.0
        elif run_s >= train_s:
            status = plan.outcome
        if status in ("succeeded", "failed", "canceled", "aborted"):
            if t["final"] is None:
                t["final"] = elapsed
                t["span"][1] = time.monotonic()
                if status == "succeeded":
                    self._publish_version(t)
            metrics = {"predict_time": round(max(0.0, min(run_s, train_s)), 6),
                       "total_time": round(elapsed, 6)}
        if status == "succeeded":
            output = {"version": f"{t['destination']}:{t['output_version']}"}
            if plan.weights and plan.weights_on == "public":
                output["weights"] = f"http://localhost:{self._server.server_address[1]}/public/{t['id']}/trained_model.tar"
            elif plan.weights:
                output["weights"] = f"{self.url}/delivery/{t['id']}/trained_model.tar"
        if status == "failed":
            error = plan.error
        created = _parse_time(t["created_at"])
        body = {"id": t["id"], "model": t["model"], "version": t["version"], "input": t["input"],
                "logs": _logs(t, max(run_s, 0.0), status), "error": error, "status": status,
                "output": output, "metrics": metrics, "source": "api", "created_at": t["created_at"],
                "started_at": _iso(created + timedelta(seconds=plan.queue_s)) if run_s >= 0 else None,
                "completed_at": _iso(created + timedelta(seconds=elapsed)) if t["final"] is not None else None,
                "urls": {"get": f"{self.url}/v1/trainings/{t['id']}",
                         "cancel": f"{self.url}/v1/trainings/{t['id']}/cancel",
                         "web": f"{self.url}/p/{t['id']}"},
                "webhook_completed": None}
        t["status"] = status
        return body

    def _publish_version(self, t: dict) -> None:
        t["output_version"] = secrets.token_hex(32)
        model = self.models[t["destination"]]
        model["versions"].insert(0, self._version(t["output_version"], trained_version_openapi_schema()))
        self.predictors[t["output_version"]] = "hotswap"

    def _cancel(self, t: dict) -> dict:
        if t["final"] is None and not t.get("aborted"):
            t["canceled_at_s"] = self._elapsed(t)
        return self._training_json(t)

    def weights_tar(self, training_id: str) -> bytes:
        t = self.trainings[training_id]
        return build_trained_model_tar(t["plan"].tar, rank=t["plan"].lora_rank,
                                       captions=self._captions_of(t), trigger=t["input"].get("trigger_word", ""))

    def _captions_of(self, t: dict) -> dict[str, str]:
        match = re.search(r"/v1/files/([^/?]+)", str(t["input"].get("input_images", "")))
        record = self.files.get(match.group(1)) if match else None
        if record is None:
            return {}
        try:
            with zipfile.ZipFile(record["path"]) as z:
                return {n: z.read(n).decode("utf-8", "replace") for n in z.namelist() if n.endswith(".txt")}
        except zipfile.BadZipFile:
            return {}

    # --- predictions ----------------------------------------------------------------------
    def _create_prediction(self, model_name: str, version_id: str | None, body: dict, wait: bool) -> dict:
        model = self.models.get(model_name)
        version = None
        if model is not None:
            version = model["versions"][0] if version_id is None and model["versions"] else next(
                (v for v in model["versions"] if v["id"] == version_id), None)
        if version is None:
            raise Problem(422, "The specified version does not exist (or perhaps you don't have permission "
                               "to use it?)", title="Invalid version or not permitted")
        schema = version["openapi_schema"]["components"]["schemas"]
        _validate_input(body.get("input"), schema["Input"], schema)
        plan = self._next_prediction_plans.pop(0) if self._next_prediction_plans else replace(self.prediction_plan)
        prediction_id = _new_id()
        ready_at = time.monotonic() + plan.latency_s          # making the image is part of the latency
        p = {"id": prediction_id, "model": model_name, "version_id": version["id"],
             "version": "hidden" if model["official"] and version_id is None else version["id"],
             "input": body["input"], "plan": plan, "created_at": _now(), "ticks": 0, "canceled": False,
             "sync": False, "images": _render_images(body["input"], plan, self._image_source(model_name, version)),
             "ready_at": ready_at}
        self.predictions[prediction_id] = p
        if wait and plan.sync:
            p["sync"] = True                     # the blocking answer: finished output, status "processing"
            p["ticks"] = plan.ticks
            body = self._prediction_json(p)
            body["status"] = "failed" if plan.outcome == "failed" else "processing"
            if plan.outcome != "failed":
                body["metrics"], body["completed_at"] = {}, None
            return body
        return self._prediction_json(p)

    def _prediction_json(self, p: dict) -> dict:
        plan, ticks = p["plan"], p["ticks"]
        status, output, error, metrics, logs = "starting", None, None, {}, ""
        steps = int(p["input"].get("num_inference_steps", 28))
        if p["canceled"]:
            status = "canceled"
        elif ticks >= plan.ticks:
            status = plan.outcome
        elif ticks >= 1:
            status = "processing"
        if status != "starting":
            done = steps if status in ("succeeded", "failed") else min(steps, steps * ticks // max(plan.ticks, 1))
            _, fall_backs = _runs_fast(self.predictors.get(p["version_id"]), p["input"], self._schema_of(p))
            logs = "".join(line + "\n" for line in fall_backs)
            logs += f"Using seed: {p['input'].get('seed', 0)}\n" + _tqdm_plain(done, steps)
        if status == "succeeded":
            output = [self._output_url(p, i) for i in range(len(p["images"]))]
        if status == "failed":
            error = plan.error
            logs += f"Traceback (most recent call last):\nRuntimeError: {plan.error}\n"
        if status in ("succeeded", "failed", "canceled"):
            share = 1.0 if status != "canceled" else min(ticks, plan.ticks) / max(plan.ticks, 1)
            metrics = {"predict_time": round(plan.predict_time * share, 6),
                       "total_time": round(plan.predict_time * share + 1.5, 6)}
            if status == "succeeded" and self.models.get(p["model"], {}).get("official"):
                metrics["image_count"] = len(p["images"])
        created = _parse_time(p["created_at"])
        removed = bool(p.get("removed"))
        if removed:
            output, logs = None, ""
        return {"id": p["id"], "model": p["model"], "version": p["version"], "input": {} if removed else p["input"],
                "logs": logs, "output": output, "data_removed": removed, "error": error, "status": status,
                "metrics": metrics, "source": "api", "created_at": p["created_at"],
                "started_at": _iso(created + timedelta(seconds=1)) if status != "starting" else None,
                "completed_at": _iso(created + timedelta(seconds=plan.predict_time + 1.5))
                if status in ("succeeded", "failed", "canceled") else None,
                "urls": {"get": f"{self.url}/v1/predictions/{p['id']}",
                         "cancel": f"{self.url}/v1/predictions/{p['id']}/cancel",
                         "web": f"{self.url}/p/{p['id']}",
                         "stream": f"{self.url}/v1/streams/{p['id']}"}}

    def _output_url(self, p: dict, index: int) -> str:
        mime, data = p["images"][index]
        kind = p["plan"].output
        if kind == "auto":
            kind = "data" if p["sync"] else "delivery"
        if kind == "data":
            return f"data:{mime};base64,{base64.b64encode(data).decode()}"
        name = f"out-{index}.{_EXTENSIONS[mime]}"
        if kind == "public":              # another host name for the same server: a "third-party" URL
            return f"http://localhost:{self._server.server_address[1]}/public/{p['id']}/{name}"
        return f"{self.url}/delivery/pbxt/{p['id']}/{name}"

    def _image_source(self, model_name: str, version: dict) -> Callable[[int], Any] | None:
        source = self.image_source
        if source is None:
            return None
        return lambda index, inputs: source(model_name, version["id"], inputs, index)

    def _advance_prediction(self, p: dict) -> None:
        plan = p["plan"]
        if not p["canceled"] and p["ticks"] < plan.ticks and (plan.stall_at_tick is None
                                                              or p["ticks"] < plan.stall_at_tick):
            if p["ticks"] + 1 < plan.ticks or time.monotonic() >= p["ready_at"]:    # not done before its latency
                p["ticks"] += 1

    def expire_prediction(self, prediction_id: str) -> None:
        """An hour has passed: "All input parameters, output values, and logs are automatically removed after an
        hour ... for predictions created through the API. ... The `output` key will still be present, but its
        value will be `null`" (the spec, predictions.get); `data_removed` becomes true and the files are gone."""
        with self._lock:
            self.predictions[prediction_id]["removed"] = True
            self._changed.notify_all()

    def abort(self, training_id: str) -> None:
        """Replicate terminates a training before it started (a deadline reached in the queue): `aborted`."""
        with self._lock:
            self.trainings[training_id]["aborted"] = True
            self._changed.notify_all()

    def applied_strengths(self, prediction_id: str) -> dict:
        """What the predictor does with the scales it was sent (cog-flux; see the module's docstring): the path
        ("fp8" or "bf16") and the strength each LoRA is merged with, in ComfyUI's terms (strength · ΔW)."""
        with self._lock:
            p = self.predictions[prediction_id]
            return _applied_strengths(self.predictors.get(p["version_id"], "hotswap"), p["input"],
                                      self._schema_of(p))

    def _schema_of(self, p: dict) -> dict:
        model = self.models[p["model"]]
        version = next(v for v in model["versions"] if v["id"] == p["version_id"])
        return version["openapi_schema"]["components"]["schemas"]["Input"]

    def cancel_prediction(self, prediction_id: str) -> None:
        """Cancels a prediction as the user would on replicate.com (not through the pack)."""
        with self._lock:
            self.predictions[prediction_id]["canceled"] = True
            self._changed.notify_all()

    def release_predictions(self) -> None:
        """Lets stalled predictions go on."""
        with self._lock:
            for p in self.predictions.values():
                p["plan"] = replace(p["plan"], stall_at_tick=None)
            self._changed.notify_all()

    def output_file(self, prediction_id: str, name: str) -> tuple[str, bytes]:
        p = self.predictions.get(prediction_id)
        index = int(re.match(r"out-(\d+)\.", name).group(1)) if re.match(r"out-(\d+)\.", name) else -1
        if p is None or not 0 <= index < len(p["images"]) or self._prediction_json(p)["status"] != "succeeded" \
                or p.get("removed"):
            raise Problem(404, "Not found.")
        return p["images"][index]

    # --- files ----------------------------------------------------------------------------
    def _store_file(self, raw_path: Path, boundary: bytes) -> dict:
        parts = _parse_multipart_file(raw_path, boundary)
        content = parts.get("content")
        if content is None:
            raise Problem(400, "Missing required field: content")
        file_id = secrets.token_urlsafe(32).replace("-", "A").replace("_", "B")
        stored = self._dir / f"file-{file_id}"
        with open(raw_path, "rb") as src, open(stored, "wb") as dst:
            src.seek(content["start"])
            _copy_exact(src, dst, content["end"] - content["start"])
        metadata = json.loads(parts["metadata"]["value"]) if "metadata" in parts else {}
        sha, md5 = _hashes(stored)
        created = datetime.now(timezone.utc)
        record = {"id": file_id, "name": content.get("filename") or "file",
                  "content_type": content.get("content_type") or "application/octet-stream",
                  "size": stored.stat().st_size, "etag": md5, "checksums": {"sha256": sha, "md5": md5},
                  "metadata": metadata, "created_at": _iso(created), "expires_at": _iso(created + timedelta(hours=24)),
                  "urls": {"get": f"{self.url}/v1/files/{file_id}"}, "path": str(stored)}
        self.files[file_id] = record
        return _public_file(record)


# --- routes ----------------------------------------------------------------------------------
def _route_account(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    return 200, {"type": "user", "username": fake.owner, "name": "Likeness Tester", "github_url": None}


def _route_hardware(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    return 200, [{"name": n, "sku": s} for n, s in HARDWARE]


def _route_models_create(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    body = req.json_body()
    missing = [k for k in ("owner", "name", "visibility", "hardware") if not body.get(k)]
    if missing:
        raise Problem(422, f"Missing required fields: {', '.join(missing)}", title="Input validation failed")
    if body["owner"] != fake.owner:
        raise Problem(403, "You can only create models for your own account or organizations you belong to")
    if body["visibility"] not in ("public", "private"):
        raise Problem(422, "visibility must be one of: public, private", title="Input validation failed")
    if body["hardware"] not in {s for _, s in HARDWARE}:
        raise Problem(400, f"Invalid hardware SKU: {body['hardware']}")
    if f"{body['owner']}/{body['name']}" in fake.models:
        raise Problem(409, "A model with that name and owner already exists.")
    model = fake._add_model(body["owner"], body["name"], visibility=body["visibility"],
                            hardware=body["hardware"], description=body.get("description"))
    return 201, fake._model_json(model)


def _route_model(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    model = fake.models.get(f"{m['owner']}/{m['name']}")
    if model is None:
        raise Problem(404, "Not found.")
    return 200, fake._model_json(model)


def _route_versions(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    model = fake.models.get(f"{m['owner']}/{m['name']}")
    if model is None:
        raise Problem(404, "Not found.")
    return 200, {"next": None, "previous": None, "results": model["versions"]}


def _route_version(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    model = fake.models.get(f"{m['owner']}/{m['name']}")
    version = next((v for v in (model or {}).get("versions", []) if v["id"] == m["version"]), None)
    if version is None:
        raise Problem(404, "Not found.")
    return 200, version


def _route_trainings_create(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    return 201, fake._create_training(m["owner"], m["name"], m["version"], req.json_body())


def _route_training(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    t = fake.trainings.get(m["id"])
    if t is None:
        raise Problem(404, "Not found.")
    fake._advance(t)
    return 200, fake._training_json(t)


def _route_training_cancel(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    t = fake.trainings.get(m["id"])
    if t is None:
        raise Problem(404, "Not found.")
    return 200, fake._cancel(t)


def _route_trainings_list(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    newest = list(reversed(fake.trainings.values()))
    start = int(req.query.get("cursor", ["0"])[0])
    page = newest[start:start + 100]
    more = start + 100 < len(newest)
    return 200, {"next": f"{fake.url}/v1/trainings?cursor={start + 100}" if more else None,
                 "previous": f"{fake.url}/v1/trainings?cursor={max(start - 100, 0)}" if start else None,
                 "results": [fake._training_json(t) for t in page]}


def _route_files_create(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    boundary = req.multipart_boundary()
    raw = req.body_to_file(fake._dir)
    try:
        if raw.stat().st_size > fake.file_limit:
            raise Problem(413, "Files must be less than 100MB in size")
        with fake._lock:
            return 201, fake._store_file(raw, boundary)
    finally:
        raw.unlink(missing_ok=True)


def _route_files_list(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    return 200, {"next": None, "previous": None,
                 "results": [_public_file(f) for f in reversed(fake.files.values())]}


def _route_file(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    record = fake.files.get(m["id"])
    if record is None:
        raise Problem(404, "Not found.")
    if req.command == "DELETE":
        Path(record["path"]).unlink(missing_ok=True)
        del fake.files[m["id"]]
        return 204, None
    return 200, _public_file(record)


def _route_file_download(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    record = fake.files.get(m["id"])
    if record is None:
        raise Problem(404, "Not found.")
    return 200, Path(record["path"])


def _route_predictions_create(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any, dict]:
    body = req.json_body()
    extra = sorted(set(body) - {"version", "input", "webhook", "webhook_events_filter", "stream"})
    if extra:
        raise Problem(422, f"Additional property {extra[0]} is not allowed", title="Input validation failed")
    ref = body.get("version")
    if not isinstance(ref, str) or not ref:
        raise Problem(422, "- version: version is required", title="Input validation failed")
    model_name, _, version_id = ref.rpartition(":") if ":" in ref else ("", "", ref)
    if not model_name:
        if "/" in version_id:                                        # "owner/name": official models only
            model_name, version_id = version_id, None
            if not fake.models.get(model_name, {}).get("official"):
                raise Problem(404, "The requested resource could not be found.")
        else:
            model_name = next((k for k, mod in fake.models.items()
                               if any(v["id"] == version_id for v in mod["versions"])), "")
    return _prediction_created(fake, req, fake._create_prediction(model_name, version_id, body, req.wants_wait()))


def _route_model_predictions_create(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any, dict]:
    model_name = f"{m['owner']}/{m['name']}"
    if not fake.models.get(model_name, {}).get("official"):
        raise Problem(404, "The requested resource could not be found.")     # not an official model
    body = req.json_body()
    return _prediction_created(fake, req, fake._create_prediction(model_name, None, body, req.wants_wait()))


def _prediction_created(fake: FakeReplicate, req: _Handler, body: dict) -> tuple[int, Any, dict]:
    headers = {"Preference-Applied": "wait"} if req.wants_wait() else {}
    prediction = fake.predictions.get(body.get("id"), {})
    if prediction.get("sync"):
        req.hold_until = prediction["ready_at"]            # the blocking answer comes when the work is done
    return 201, body, headers


def _route_predictions_list(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    newest = list(reversed(fake.predictions.values()))            # "100 records per page", newest first
    start = int(req.query.get("cursor", ["0"])[0])
    page = newest[start:start + 100]
    more = start + 100 < len(newest)
    return 200, {"next": f"{fake.url}/v1/predictions?cursor={start + 100}" if more else None,
                 "previous": f"{fake.url}/v1/predictions?cursor={max(start - 100, 0)}" if start else None,
                 "results": [fake._prediction_json(p) for p in page]}


def _route_prediction(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    p = fake.predictions.get(m["id"])
    if p is None:
        return _route_training(fake, req, m)          # a training's urls.get points at /v1/predictions/<id>
    fake._advance_prediction(p)
    return 200, fake._prediction_json(p)


def _route_prediction_cancel(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    p = fake.predictions.get(m["id"])
    if p is None:
        return _route_training_cancel(fake, req, m)
    if fake._prediction_json(p)["status"] not in ("succeeded", "failed"):
        p["canceled"] = True
    return 200, fake._prediction_json(p)


def _route_output_file(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any, dict]:
    mime, data = fake.output_file(m["id"], m["name"])
    return 200, data, {"Content-Type": mime}


def _route_weights(fake: FakeReplicate, req: _Handler, m: re.Match) -> tuple[int, Any]:
    if m["id"] not in fake.trainings or fake.trainings[m["id"]]["status"] != "succeeded":
        raise Problem(404, "Not found.")
    return 200, fake.weights_tar(m["id"])


ROUTES: list[tuple[str, re.Pattern, Callable]] = [(method, re.compile(f"^{pattern}$"), fn) for method, pattern, fn in [
    ("GET", r"/v1/account", _route_account),
    ("GET", r"/v1/hardware", _route_hardware),
    ("POST", r"/v1/models", _route_models_create),
    ("GET", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)", _route_model),
    ("GET", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/versions", _route_versions),
    ("GET", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", _route_version),
    ("POST", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/trainings",
     _route_trainings_create),
    ("POST", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions", _route_model_predictions_create),
    ("GET", r"/v1/trainings", _route_trainings_list),
    ("GET", r"/v1/trainings/(?P<id>[a-z0-9]+)", _route_training),
    ("POST", r"/v1/trainings/(?P<id>[a-z0-9]+)/cancel", _route_training_cancel),
    ("POST", r"/v1/predictions", _route_predictions_create),
    ("GET", r"/v1/predictions", _route_predictions_list),
    ("GET", r"/v1/predictions/(?P<id>[a-z0-9]+)", _route_prediction),
    ("POST", r"/v1/predictions/(?P<id>[a-z0-9]+)/cancel", _route_prediction_cancel),
    ("POST", r"/v1/files", _route_files_create),
    ("GET", r"/v1/files", _route_files_list),
    ("GET", r"/v1/files/(?P<id>[^/]+)", _route_file),
    ("DELETE", r"/v1/files/(?P<id>[^/]+)", _route_file),
    ("GET", r"/v1/files/(?P<id>[^/]+)/download", _route_file_download),
    ("GET", r"/delivery/(?P<id>[a-z0-9]+)/trained_model.tar", _route_weights),
    ("GET", r"/delivery/pbxt/(?P<id>[a-z0-9]+)/(?P<name>[^/]+)", _route_output_file),
    ("GET", r"/public/(?P<id>[a-z0-9]+)/trained_model.tar", _route_weights),
    ("GET", r"/public/(?P<id>[a-z0-9]+)/(?P<name>[^/]+)", _route_output_file),
]]
PUBLIC_PATHS = re.compile(r"^/public/")      # served without a token, like any file host on the internet


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log is in fake.requests
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_DELETE = do_PUT = do_GET

    # request body helpers
    def json_body(self) -> dict:
        raw = self._read_body()
        try:
            value = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise Problem(400, "Request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise Problem(400, "Request body must be a JSON object")
        return value

    def body_to_file(self, folder: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix="upload-", dir=folder)
        with os.fdopen(fd, "wb") as out:
            for chunk in self._iter_body():
                out.write(chunk)
                self._body_bytes += len(chunk)
        return Path(name)

    def wants_wait(self) -> bool:
        return bool(re.fullmatch(r"wait(=([1-9]|[1-9][0-9]|60))?", self.headers.get("Prefer", "").strip()))

    def multipart_boundary(self) -> bytes:
        match = re.search(r'boundary="?([^";]+)"?', self.headers.get("Content-Type", ""))
        if not match:
            raise Problem(400, "Expected multipart/form-data with a boundary")
        return match.group(1).encode()

    def _read_body(self) -> bytes:
        data = b"".join(self._iter_body())
        self._body_bytes += len(data)
        return data

    def _iter_body(self):
        if self._body_read:
            return
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    chunk = self.rfile.read(min(left, 1 << 20))
                    left -= len(chunk)
                    yield chunk
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    # dispatch
    def _handle(self) -> None:
        fake: FakeReplicate = self.server.fake
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query)
        self._body_read, self._body_bytes = False, 0
        entry = Request(self.command, parts.path, self.query, user_agent=self.headers.get("User-Agent", ""),
                        host=self.headers.get("Host", ""), headers=dict(self.headers.items()))
        auth = self.headers.get("Authorization", "")
        entry.authorized = auth == f"Bearer {fake.token}"
        entry.auth_sent = bool(auth)
        status, body, headers, injection = 500, None, {}, None
        try:
            if PUBLIC_PATHS.match(parts.path):
                pass                                   # a public file host: no token needed (none wanted)
            elif not auth:
                raise Problem(401, "You did not pass an authentication token", title="Unauthenticated")
            elif not entry.authorized:
                raise Problem(401, "You did not pass a valid authentication token", title="Unauthenticated")
            with fake._lock:
                injection = self._take_injection(fake, entry)
            if injection is not None and injection.mode == "stall":
                self._body_read = True                 # a stalled link: nothing more is read or answered
                injection.released.wait(120)
                status, body = 0, None
            elif injection is not None and injection.mode == "reset" and not injection.after:
                status, body = 0, None
            elif injection is not None and not injection.after:
                status, body, headers = injection.status, injection.body, dict(injection.headers)
            else:
                route, match = self._route(parts.path)
                if route is None:
                    raise Problem(404, "The requested resource could not be found.")
                if route is _route_files_create:
                    answer = route(fake, self, match)   # streams the upload to disk outside the lock
                else:
                    with fake._lock:
                        answer = route(fake, self, match)
                status, body = answer[:2]
                headers = answer[2] if len(answer) > 2 else {}
                if injection is not None and injection.mode == "reset":
                    status, body = 0, None
                elif injection is not None and injection.mode == "answer":
                    status, body, headers = injection.status, injection.body, dict(injection.headers)
        except Problem as problem:
            status, body = problem.status, problem.body
        for _ in self._iter_body():    # drain what the handler did not read (keep-alive stays in step)
            pass
        entry.status, entry.body_bytes = status, self._body_bytes
        entry.dropped = injection is not None and injection.mode != "answer"
        if getattr(self, "hold_until", None):                  # outside the lock: other requests go on meanwhile
            time.sleep(max(0.0, self.hold_until - time.monotonic()))
            self.hold_until = None
        with fake._changed:
            fake.requests.append(entry)
            fake._changed.notify_all()
        if entry.dropped and injection.mode in ("reset", "stall"):
            return self._reset()
        self._send(status, body, headers, cut_short=entry.dropped)

    def _route(self, path: str):
        for method, pattern, fn in ROUTES:
            if method == self.command:
                match = pattern.match(path)
                if match:
                    return fn, match
        return None, None

    @staticmethod
    def _take_injection(fake: FakeReplicate, entry: Request) -> Injection | None:
        for inj in fake.injections:
            if inj.method == entry.method and inj.path.search(entry.path) and inj.times > 0:
                inj.times -= 1
                return inj
        return None

    def _reset(self) -> None:
        """Drops the connection with a TCP reset, as a crashed backend or a dropped proxy does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.wfile = io.BytesIO()          # the server's own flush after the handler has nothing left to send
        self.close_connection = True

    def _send(self, status: int, body: Any, headers: dict, cut_short: bool = False) -> None:
        self.send_response(status)
        if status == 204 or body is None:
            payload, ctype = b"", None
        elif isinstance(body, Path):
            payload, ctype = body.read_bytes(), "application/octet-stream"
        elif isinstance(body, bytes):
            payload, ctype = body, headers.pop("Content-Type", "application/x-tar")
        else:
            payload = json.dumps(body).encode()
            ctype = "application/problem+json" if status >= 400 else "application/json; charset=UTF-8"
        if ctype:
            self.send_header("Content-Type", ctype)
        if status < 400:
            self.send_header("ratelimit-remaining", "2999")
            self.send_header("ratelimit-reset", "1")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if cut_short:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            return self._reset()
        if payload:
            self.wfile.write(payload)


# --- the trainer's schema, logs and output ------------------------------------------------------
def trainer_openapi_schema() -> dict:
    """The Cog OpenAPI document of ostris/flux-dev-lora-trainer's version (inputs from train.py @3dd14e3)."""
    def field_(order: int, type_: str | None, default: Any = None, description: str = "", **extra: Any) -> dict:
        f = {"x-order": order, "description": description, **extra}
        if type_:
            f["type"] = type_
        if default is not None:
            f["default"] = default
        return f

    secret = {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}
    props = {
        "input_images": field_(0, "string", description="A zip file containing the images that will be used "
                               "for training. We recommend a minimum of 10 images.", format="uri"),
        "trigger_word": field_(1, "string", "TOK", "The trigger word refers to the object, style or concept"),
        "autocaption": field_(2, "boolean", True, "Automatically caption images using Llava v1.5 13B"),
        "autocaption_prefix": field_(3, "string", description="Optional: Text you want to appear at the "
                                     "beginning of all your generated captions"),
        "autocaption_suffix": field_(4, "string", description="Optional: Text you want to appear at the end"),
        "steps": field_(5, "integer", 1000, "Number of training steps. Recommended range 500-4000",
                        minimum=3, maximum=6000),
        "learning_rate": field_(6, "number", 0.0004, "Learning rate"),
        "batch_size": field_(7, "integer", 1, "Batch size"),
        "resolution": field_(8, "string", "512,768,1024", "Image resolutions for training"),
        "lora_rank": field_(9, "integer", 16, "Higher ranks take longer to train but can capture more "
                            "complex features", minimum=1, maximum=128),
        "caption_dropout_rate": field_(10, "number", 0.05, "Advanced setting", minimum=0, maximum=1),
        "optimizer": field_(11, "string", "adamw8bit", "Supports: prodigy, adam8bit, adamw8bit, lion8bit, "
                            "adam, adamw, lion, adagrad, adafactor."),
        "cache_latents_to_disk": field_(12, "boolean", False, "Use this if you have lots of input images"),
        "layers_to_optimize_regex": field_(13, "string", description="Regular expression to match specific "
                                           "layers to optimize."),
        "gradient_checkpointing": field_(14, "boolean", False, "Turn on gradient checkpointing"),
        "hf_repo_id": field_(15, "string", description="Hugging Face repository ID"),
        "hf_token": {**field_(16, None, description="Hugging Face token"), **secret},
        "wandb_api_key": {**field_(17, None, description="Weights and Biases API key"), **secret},
        "wandb_project": field_(18, "string", "flux_train_replicate", "Weights and Biases project name"),
        "wandb_run": field_(19, "string", description="Weights and Biases run name"),
        "wandb_entity": field_(20, "string", description="Weights and Biases entity name"),
        "wandb_sample_interval": field_(21, "integer", 100, "Step interval for sampling", minimum=1),
        "wandb_sample_prompts": field_(22, "string", description="Newline-separated list of prompts"),
        "wandb_save_interval": field_(23, "integer", 100, "Step interval for saving", minimum=1),
        "skip_training_and_use_pretrained_hf_lora_url": field_(24, "string", description="If you'd like to "
                                                               "skip LoRA training, provide a HF URL"),
    }
    for name, prop in props.items():
        prop["title"] = name.replace("_", " ").title()
    return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"},
            "paths": {"/trainings": {"post": {"summary": "Train", "operationId": "train_trainings_post"}}},
            "components": {"schemas": {
                "TrainingInput": {"type": "object", "title": "TrainingInput", "properties": props},
                "TrainingOutput": {"type": "object", "title": "TrainingOutput", "required": ["weights"],
                                   "properties": {"weights": {"type": "string", "format": "uri",
                                                              "title": "Weights"}}}}}}


ASPECT_RATIOS = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]
_GO_FAST_NOTE = ("For go_fast we apply a 1.5x multiplier to this value; we've generally seen good performance "
                 "when scaling the base value by that amount. You may still need to experiment to find the best "
                 "value for your particular lora.")


def _cog_input(props: dict, enums: dict, required: list[str]) -> dict:
    """A Cog OpenAPI document: choices as allOf $ref to their own component, as Cog writes them."""
    components = {}
    for order, (name, prop) in enumerate(props.items()):
        prop.setdefault("title", name.replace("_", " ").title())
        prop["x-order"] = order
        if name in enums:
            components[name] = {"enum": enums[name], "type": "string", "title": name,
                                "description": "An enumeration."}
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
    return {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"},
            "paths": {"/predictions": {"post": {"summary": "Predict", "operationId": "predict_predictions_post"}}},
            "components": {"schemas": {
                "Input": {"type": "object", "title": "Input", "required": required, "properties": props},
                "Output": {"type": "array", "title": "Output", "items": {"type": "string", "format": "uri"}},
                **components}}}


def flux_dev_lora_openapi_schema() -> dict:
    """black-forest-labs/flux-dev-lora's Input (cog-flux predict.py DevLoraPredictor, reference §4.4)."""
    secret = {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}
    props = {
        "prompt": {"type": "string", "description": "Prompt for generated image"},
        "image": {"type": "string", "format": "uri", "description": "Input image for image to image mode."},
        "aspect_ratio": {"default": "1:1", "description": "Aspect ratio for the generated image"},
        "prompt_strength": {"type": "number", "default": 0.8, "minimum": 0, "maximum": 1},
        "num_outputs": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
        "num_inference_steps": {"type": "integer", "default": 28, "minimum": 1, "maximum": 50},
        "guidance": {"type": "number", "default": 3, "minimum": 0, "maximum": 10},
        "seed": {"type": "integer", "description": "Random seed. Set for reproducible generation"},
        "output_format": {"default": "webp"},
        "output_quality": {"type": "integer", "default": 80, "minimum": 0, "maximum": 100},
        "disable_safety_checker": {"type": "boolean", "default": False},
        "go_fast": {"type": "boolean", "default": True, "description": "Run faster predictions with model "
                    "optimized for speed (currently fp8 quantized); disable to run in original bf16."},
        "megapixels": {"default": "1"},
        "lora_weights": {"type": "string", "description": "Load LoRA weights. Supports Replicate models in the "
                         "format <owner>/<username> or <owner>/<username>/<version>, HuggingFace URLs in the "
                         "format huggingface.co/<owner>/<model-name>, CivitAI URLs in the format "
                         "civitai.com/models/<id>[/<model-name>], or arbitrary .safetensors URLs from the "
                         "Internet, including signed URLs."},
        "lora_scale": {"type": "number", "default": 1, "minimum": -1, "maximum": 3,
                       "description": "Determines how strongly the main LoRA should be applied. Sane results "
                       "between 0 and 1 for base inference. " + _GO_FAST_NOTE},
        "extra_lora": {"type": "string", "description": "Load extra LoRA weights (same formats as lora_weights)."},
        "extra_lora_scale": {"type": "number", "default": 1, "minimum": -1, "maximum": 3,
                             "description": "Determines how strongly the extra LoRA should be applied. "
                             + _GO_FAST_NOTE},
        "hf_api_token": {**secret, "description": "HuggingFace API token."},
        "civitai_api_token": {**secret, "description": "Civitai API token."},
    }
    enums = {"aspect_ratio": ASPECT_RATIOS, "output_format": ["webp", "jpg", "png"], "megapixels": ["1", "0.25"]}
    return _cog_input(props, enums, ["prompt"])


def trained_version_openapi_schema(predictor: str = "hotswap") -> dict:
    """A destination version made by the trainer: the hot-swap model's inputs (reference §4.3 b), or the
    older flux-fine-tuner predict.py's (§4.3 a: no go_fast, scales up to 2)."""
    hotswap = predictor == "hotswap"
    top = 3 if hotswap else 2
    props = {
        "prompt": {"type": "string", "description": "Prompt for generated image. If you include the "
                   "`trigger_word` used in the training process you are more likely to activate the trained "
                   "object, style, or concept in the resulting image."},
        "image": {"type": "string", "format": "uri"},
        "mask": {"type": "string", "format": "uri"},
        "aspect_ratio": {"default": "1:1", "description": "Aspect ratio for the generated image. If custom is "
                         "selected, uses height and width below & will run in bf16 mode"},
        "height": {"type": "integer", "minimum": 256, "maximum": 1440},
        "width": {"type": "integer", "minimum": 256, "maximum": 1440},
        "prompt_strength": {"type": "number", "default": 0.8, "minimum": 0, "maximum": 1},
        "model": {"default": "dev"},
        "num_outputs": {"type": "integer", "default": 1, "minimum": 1, "maximum": 4},
        "num_inference_steps": {"type": "integer", "default": 28, "minimum": 1, "maximum": 50},
        "guidance_scale": {"type": "number", "default": 3 if hotswap else 3.5, "minimum": 0, "maximum": 10},
        "seed": {"type": "integer"},
        "output_format": {"default": "webp"},
        "output_quality": {"type": "integer", "default": 80 if hotswap else 90, "minimum": 0, "maximum": 100},
        "disable_safety_checker": {"type": "boolean", "default": False},
        "replicate_weights": {"type": "string", "description": "Replicate LoRA weights to use. Leave blank to "
                              "use the default weights."},
        "lora_scale": {"type": "number", "default": 1, "minimum": -1, "maximum": top,
                       "description": "Determines how strongly the main LoRA should be applied. Sane results "
                       "between 0 and 1 for base inference."
                       + (" " + _GO_FAST_NOTE if hotswap else "")},
        "extra_lora": {"type": "string", "description": "Load LoRA weights. Supports Replicate models in the "
                       "format <owner>/<username> or <owner>/<username>/<version>, HuggingFace URLs, CivitAI "
                       "URLs, or arbitrary .safetensors URLs from the Internet."},
        "extra_lora_scale": {"type": "number", "default": 1, "minimum": -1, "maximum": top,
                             "description": "Determines how strongly the extra LoRA should be applied. Sane "
                             "results between 0 and 1 for base inference."
                             + (" " + _GO_FAST_NOTE if hotswap else "")},
    }
    enums = {"aspect_ratio": [*ASPECT_RATIOS, "custom"], "model": ["dev", "schnell"],
             "output_format": ["webp", "jpg", "png"]}
    if hotswap:
        props["go_fast"] = {"type": "boolean", "default": False, "description": "Run faster predictions with "
                            "model optimized for speed (currently fp8 quantized); disable to run in original "
                            "bf16"}
        props["megapixels"] = {"default": "1"}
        enums["megapixels"] = ["1", "0.25"]
    return _cog_input(props, enums, ["prompt"])


# --- what the predictor does with the scales (cog-flux predict.py; lora-and-performance §3.5) -------------
FALL_BACK_CUSTOM = "Custom aspect ratios not supported with fast fp8 inference; will run in bf16"
FALL_BACK_IMAGE = "Img2img and inpainting not supported with fast fp8 inference; will run in bf16"
_MULTIPLIER = re.compile(r"(\d+(?:\.\d+)?)x multiplier")


def _runs_fast(predictor: str | None, inputs: dict, schema: dict) -> tuple[bool, list[str]]:
    """Whether the fp8 path runs, and the lines the predictor prints when it falls back to bf16."""
    go_fast = schema.get("properties", {}).get("go_fast")
    if go_fast is None:
        return False, []                                     # flux-fine-tuner: bf16 only
    fast = bool(inputs.get("go_fast", go_fast.get("default", False)))
    lines = []
    if fast and predictor != "dev-lora" and inputs.get("aspect_ratio") == "custom":
        fast, lines = False, [FALL_BACK_CUSTOM]              # HotswapPredictor
    if fast and (inputs.get("image") or inputs.get("mask")):
        fast = False
        lines.append(FALL_BACK_IMAGE if predictor != "dev-lora" else
                     "img2img not supported with fp8 quantization; running with bf16")
    return fast, lines


def _applied_strengths(predictor: str, inputs: dict, schema: dict) -> dict:
    """The path and the strength (ComfyUI's sense: strength · ΔW) each LoRA gets from these inputs."""
    fast, _ = _runs_fast(predictor, inputs, schema)
    props = schema.get("properties", {})
    main = float(inputs.get("lora_scale", props.get("lora_scale", {}).get("default", 1.0)))
    extra = inputs.get("extra_lora_scale", props.get("extra_lora_scale", {}).get("default", 1.0)) \
        if inputs.get("extra_lora") else None
    if fast:
        def times(name: str) -> float:
            found = _MULTIPLIER.search(props.get(name, {}).get("description", "") or "")
            return float(found.group(1)) if found else 1.0
        return {"path": "fp8", "lora": main * times("lora_scale"),
                "extra": None if extra is None else float(extra) * times("extra_lora_scale")}
    if predictor != "dev-lora" and extra is None:
        main = main * main                                   # diffusers: adapter weight and joint scale
    return {"path": "bf16", "lora": main, "extra": None if extra is None else float(extra)}


def _validate_input(value: Any, schema: dict, components: dict | None = None) -> None:
    if not isinstance(value, dict):
        raise Problem(422, "- input: Invalid type. Expected: object", title="Input validation failed")
    props, problems = schema.get("properties", {}), []
    for key in schema.get("required", []):
        if key not in value:
            problems.append(("required", f"input.{key}", f"{key} is required"))
    for key, v in value.items():
        prop = props.get(key)
        if prop is None:
            problems.append(("additional_property_not_allowed", f"input.{key}",
                             f"Additional property {key} is not allowed"))
            continue
        for part in prop.get("allOf", []):
            prop = {**(components or {}).get(part.get("$ref", "").rsplit("/", 1)[-1], {}), **prop}
        kind = prop.get("type", "string")
        ok = {"integer": isinstance(v, int) and not isinstance(v, bool),
              "number": isinstance(v, (int, float)) and not isinstance(v, bool),
              "boolean": isinstance(v, bool), "string": isinstance(v, str)}.get(kind, True)
        if not ok:
            problems.append(("invalid_type", f"input.{key}", f"Invalid type. Expected: {kind}"))
        elif "enum" in prop and v not in prop["enum"]:
            choices = ", ".join(f'"{c}"' for c in prop["enum"])
            problems.append(("enum", f"input.{key}", f"{key} must be one of the following: {choices}"))
        elif "minimum" in prop and v < prop["minimum"]:
            problems.append(("number_gte", f"input.{key}", f"Must be greater than or equal to {prop['minimum']}"))
        elif "maximum" in prop and v > prop["maximum"]:
            problems.append(("number_lte", f"input.{key}", f"Must be less than or equal to {prop['maximum']}"))
    if problems:
        raise Problem(422, "".join(f"- {f}: {d}\n" for _, f, d in problems), title="Input validation failed",
                      invalid_fields=[{"type": t, "field": f, "description": d} for t, f, d in problems])


_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_MIMES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


def image_size(inputs: dict, side: int = 64) -> tuple[int, int]:
    """The fake's (width, height) for an input set: the aspect ratio at `side` px on the longer side
    (custom: width and height / 16)."""
    ratio = inputs.get("aspect_ratio", "1:1")
    if ratio == "custom":
        return int(inputs.get("width", 1024)) // 16, int(inputs.get("height", 1024)) // 16
    w, h = (int(x) for x in ratio.split(":"))
    return (side, max(1, round(side * h / w))) if w >= h else (max(1, round(side * w / h)), side)


def image_colour(inputs: dict, index: int = 0) -> tuple[int, int, int]:
    """The solid colour of output `index`: a hash of everything that makes the image (prompt, seed, LoRAs…)."""
    digest = hashlib.sha256(json.dumps([inputs, index], sort_keys=True).encode()).digest()
    return digest[0], digest[1], digest[2]


def _render_images(inputs: dict, plan: PredictionPlan, source: Callable | None = None) -> list[tuple[str, bytes]]:
    from PIL import Image

    fmt = inputs.get("output_format", "webp")
    size = image_size(inputs, plan.image_side)
    images = []
    for i in range(int(inputs.get("num_outputs", 1))):
        buf = io.BytesIO()
        if source:                            # a photo-like picture: PNG's fastest level keeps the fake quick
            source(i, inputs).convert("RGB").save(buf, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt],
                                                  **({"compress_level": 1} if fmt == "png" else {}))
        else:
            Image.new("RGB", size, image_colour(inputs, i)).save(
                buf, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[fmt], **({"lossless": True} if fmt == "webp" else {}))
        images.append((_MIMES[fmt], buf.getvalue()))
    return images


def _tqdm_plain(step: int, total: int) -> str:
    pct = int(100 * step / total) if total else 100
    bar = ("█" * (pct // 10)).ljust(10)
    return f"{pct:3d}%|{bar}| {step}/{total} [00:0{min(step // 10, 9)}<00:00, 9.87it/s]\n"


def _steps(t: dict) -> int:
    return int(t["input"].get("steps", 1000))


def _logs(t: dict, run_s: float, status: str) -> str:
    """The training's logs after `run_s` simulated seconds of running, as Cog records tqdm updates."""
    if status in ("starting", "aborted"):
        return ""
    plan, steps = t["plan"], _steps(t)
    lines = ["Environment language: C.UTF-8", "Updated environment language: en_US.UTF-8",
             "Downloaded base weights in 13.5 seconds", "Extracted 24 files from zip to input_images"]
    if run_s >= plan.setup_s * 0.5:
        rank = t["input"].get("lora_rank", 16)
        lines += ["Starting train job", "Running  1 process", "Loading Flux model", "Loading transformer",
                  f"create LoRA network. base dim (rank): {rank}, alpha: {rank}",
                  "create LoRA for U-Net: 4 modules.", "Caching latents for input_images",
                  "Caching latents to memory: 100%|██████████| 24/24 [00:05<00:00,  4.52it/s]"]
    if run_s >= plan.setup_s:
        done = min(steps, int((run_s - plan.setup_s) / plan.seconds_per_step))
        stride = max(1, steps // 25)
        shown = sorted({*range(0, done + 1, stride), done})
        lines += [_tqdm(s, steps, plan.seconds_per_step) for s in shown]
    if status == "failed":
        lines += ["Traceback (most recent call last):", f"RuntimeError: {plan.error}"]
    if status == "succeeded":
        lines += ["output/flux_train_replicate/", "output/flux_train_replicate/config.yaml",
                  "output/flux_train_replicate/lora.safetensors", "output/flux_train_replicate/captions/"]
    return "\n".join(lines) + "\n"


def _tqdm(step: int, total: int, spi: float) -> str:
    pct = int(100 * step / total) if total else 100
    bar = ("█" * (pct // 10)).ljust(10)
    elapsed, left = step * spi, (total - step) * spi
    rate = f"{spi:.2f}s/it" if step else "?it/s"
    tail = f", lr: 4.0e-04 loss: {0.5 - 0.3 * step / max(total, 1):.3e}" if step else ""
    return (f"flux_train_replicate: {pct:3d}%|{bar}| {step}/{total} "
            f"[{_mmss(elapsed)}<{_mmss(left) if step else '?'}, {rate}{tail}]")


def _mmss(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


def make_lora(rank: int = 4, blocks: tuple[int, ...] = SEED_BLOCKS, seed: int = 0) -> bytes:
    """A real LoRA as flux-dev-lora-trainer writes it: diffusers/PEFT keys, fp16, no alpha, real FLUX dims."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for block in blocks:
        key = f"transformer.single_transformer_blocks.{block}.proj_out"
        tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, FLUX_HIDDEN + FLUX_MLP)) * 0.01).astype(np.float16)
        tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((FLUX_HIDDEN, rank)) * 0.001).astype(np.float16)
    metadata = {"name": "flux_train_replicate", "version": "1.0", "format": "pt",
                "ss_output_name": "flux_train_replicate", "ss_base_model_version": "sd_1.5",
                "software": json.dumps({"name": "ai-toolkit", "repo": "https://github.com/ostris/ai-toolkit",
                                        "version": "0.1.0"})}
    return save_safetensors(tensors, metadata=metadata)


def build_trained_model_tar(variant: str = "normal", *, rank: int = 4, captions: dict[str, str] | None = None,
                            trigger: str = "TOK", oversize: int = 8 << 30) -> bytes:
    """`trained_model.tar` as flux-fine-tuner makes it (`tar -cvf … output/flux_train_replicate`), or a
    malicious/broken variant: traversal, symlink, hardlink, oversized, no_lora, two_loras, not_lora."""
    root = "output/flux_train_replicate"
    buf = io.BytesIO()
    lora = make_lora(rank)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        _tar_dir(tar, root)
        _tar_file(tar, f"{root}/config.yaml", f"job: extension\nconfig:\n  name: flux_train_replicate\n"
                                              f"  trigger_word: {trigger}\n".encode())
        if variant == "oversized":
            info = tarfile.TarInfo(f"{root}/lora.safetensors")
            info.size, info.mode = oversize, 0o644
            tar.fileobj.write(info.tobuf(tar.format, tar.encoding, tar.errors))
            tar.fileobj.write(lora)             # a header that claims 8 GiB; the data stops short
            tar.offset += 512 + len(lora)
            tar.closed = True                   # no end-of-archive blocks: it is cut off, like a bomb would be
            return buf.getvalue()
        if variant == "traversal":
            _tar_file(tar, f"{root}/../../../../tmp/likeness-escaped.safetensors", lora)
            _tar_file(tar, f"{root}/lora.safetensors", lora)
        elif variant == "symlink":
            link = tarfile.TarInfo(f"{root}/lora.safetensors")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        elif variant == "hardlink":
            _tar_file(tar, f"{root}/real.bin", lora)
            link = tarfile.TarInfo(f"{root}/lora.safetensors")
            link.type, link.linkname = tarfile.LNKTYPE, f"{root}/real.bin"
            tar.addfile(link)
        elif variant == "two_loras":
            _tar_file(tar, f"{root}/lora.safetensors", lora)
            _tar_file(tar, f"{root}/other.safetensors", lora)
        elif variant == "not_lora":
            _tar_file(tar, f"{root}/lora.safetensors", save_safetensors(
                {"model.diffusion_model.x.weight": np.zeros((2, 2), np.float16)}))
        elif variant != "no_lora":
            _tar_file(tar, f"{root}/lora.safetensors", lora)
        _tar_dir(tar, f"{root}/captions")
        for name, text in sorted((captions or {}).items()):
            _tar_file(tar, f"{root}/captions/{name}", text.encode())
    return buf.getvalue()


def _tar_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name + "/")
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _tar_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
    tar.addfile(info, io.BytesIO(data))


# --- small helpers ----------------------------------------------------------------------------------
def _parse_multipart_file(path: Path, boundary: bytes) -> dict[str, dict]:
    """Multipart parts of the body in `path`, found with mmap (the body never sits in memory)."""
    parts: dict[str, dict] = {}
    delimiter = b"--" + boundary
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        pos = mm.find(delimiter)
        while pos != -1:
            head_start = pos + len(delimiter)
            if mm[head_start:head_start + 2] == b"--":
                break
            head_end = mm.find(b"\r\n\r\n", head_start)
            nxt = mm.find(b"\r\n" + delimiter, head_end)
            if head_end == -1 or nxt == -1:
                raise Problem(400, "Malformed multipart body")
            headers = mm[head_start:head_end].decode("utf-8", "replace")
            name = re.search(r'name="([^"]*)"', headers)
            filename = re.search(r'filename="([^"]*)"', headers)
            ctype = re.search(r"Content-Type:\s*([^\r\n]+)", headers, re.IGNORECASE)
            part = {"start": head_end + 4, "end": nxt, "filename": filename.group(1) if filename else None,
                    "content_type": ctype.group(1).strip() if ctype else None}
            if name and name.group(1) != "content":
                part["value"] = mm[head_end + 4:nxt].decode("utf-8")
            if name:
                parts[name.group(1)] = part
            pos = nxt + 2
    return parts


def _copy_exact(src, dst, size: int) -> None:
    while size > 0:
        chunk = src.read(min(size, 1 << 20))
        if not chunk:
            break
        dst.write(chunk)
        size -= len(chunk)


def _hashes(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 - Replicate's etag is an MD5
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            md5.update(block)
    return sha.hexdigest(), md5.hexdigest()


def _public_file(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "path"}


def _new_id() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=26))


def _now() -> str:
    return _iso(datetime.now(timezone.utc))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
