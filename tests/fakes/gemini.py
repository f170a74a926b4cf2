"""A local Gemini API that speaks the real REST protocol, for the real `google-genai` SDK to talk to.

It serves the Gemini Developer API paths (`/{v1|v1beta}/models/{m}:generateContent`, `x-goog-api-key`),
the Vertex AI paths (`/{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent`,
`Authorization: Bearer`, plus express mode with a key), `:countTokens`, `GET /{v}/models`, and an OAuth token
endpoint so application-default credentials (a service-account file whose `token_uri` points here) work
through the real `google-auth`.

Answers are deterministic: a structured-output request gets JSON filled from its response schema, chosen by
the hash of the image bytes. Tests script per-request behaviours (blocked, SAFETY, MAX_TOKENS, 400/404/429/
500/503/HTML 502, 408/504 timeouts, a reset connection, an answer cut short, latency, holding a request until
released) and read the request log.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

GENERATE = re.compile(
    r"^/(?P<version>v1|v1beta|v1beta1|v1alpha)/"
    r"(?:projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/)?"
    r"(?P<publisher>publishers/google/)?models/(?P<model>[^/:]+):(?P<method>generateContent|countTokens)$")
LIST_MODELS = re.compile(r"^/(v1|v1beta|v1beta1)/(publishers/google/)?models$")
ACCESS_TOKEN = "fake-access-token"
DEFAULT_MODELS = ("gemini-3.8-flash", "gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.1-flash-lite",
                  "gemini-3.1-pro-preview", "gemini-2.5-flash")

# Words the fake fills template fields with (chosen by image hash), so captions read like captions.
WORDS = {
    "image_type": ["a photo", "a close-up photo", "a candid photo", "a portrait photo"],
    "subject": ["a young woman", "a man in his thirties", "a middle-aged man", "a woman in her forties"],
    "pronoun": ["she", "he"],
    "hair": ["short dark hair", "curly brown hair tied in a ponytail", "wavy shoulder-length hair",
             "a shaved head"],
    "clothing": ["a red hoodie and blue jeans", "a white shirt and a black vest", "a green raincoat",
                 "a grey wool sweater and a scarf"],
    "action_pose": ["sitting on a park bench", "standing with hands in pockets", "leaning against a wall",
                    "walking along a path"],
    "background": ["a park with autumn leaves", "a grey studio", "a busy street", "a kitchen at home"],
    "facial_expression": ["Looking directly at the camera with a relaxed smile",
                          "Gazing thoughtfully downward with a calm expression",
                          "Laughing with eyes half closed", "Looking to the side with a slight smile"],
    "additional_details": ["", "A silver watch on the left wrist", "", "Holding a cup of coffee"],
    "camera_and_lighting": ["medium shot, eye level, soft natural light, shallow focus, digital photo",
                            "close-up, low angle, flash, deep focus, analog photo",
                            "cowboy shot, eye level, backlight, shallow focus, DSLR photo",
                            "upper-body shot, high angle, window light, focus full, digital photo"],
}


def _error(code: int, status: str, message: str, details: list | None = None) -> dict:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        body["details"] = details
    return {"error": body}


def retry_info(delay: str) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota_failure(quota_id: str, model: str) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
        "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": model}}]}


@dataclass
class Behaviour:
    """What the fake does with one generateContent request."""
    kind: str = "ok"    # ok | blocked | safety | max_tokens | invalid_key | model_not_found | rate_minute |
    #                     quota_day | 500 | 503 | html_502 | vertex_429 | not_json | 408 | 504 |
    #                     reset (TCP reset, no answer) | truncated (a 200 cut off half way, then a reset)
    fields: dict = field(default_factory=dict)   # overrides of the JSON answer's fields (kind ok)
    retry_delay: str = "1s"                      # RetryInfo for rate_minute
    latency: float | None = None                 # seconds before answering (None: the fake's default)
    hold: threading.Event | None = None          # wait until set before answering
    echo_key: bool = False                       # invalid_key: put the received key in the message


@dataclass
class Rule:
    behaviour: Behaviour
    match: Callable[[Request], bool] | None
    times: int | None   # None: every matching request


@dataclass
class Request:
    """One request as the fake received it (generateContent requests also carry the decoded parts)."""
    started: float
    method: str
    path: str
    headers: dict[str, str]
    raw_body: str
    body: Any = None            # JSON with every key camelCased (schemas kept as sent)
    version: str = ""
    backend: str = ""           # gemini | vertex | vertex-express | oauth
    operation: str = ""         # generateContent | countTokens | listModels | token
    model: str = ""
    api_key: str | None = None
    bearer: str | None = None
    images: list[tuple[str, bytes]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    status: int = 0
    behaviour: str = ""
    finished: float = 0.0
    disconnected: bool = False
    logged: bool = False

    @property
    def schema(self) -> dict | None:
        config = (self.body or {}).get("generationConfig") or {}
        return config.get("responseJsonSchema") or config.get("responseSchema")


def image_color(rgb: tuple[int, int, int], tolerance: int = 40) -> Callable[[Request], bool]:
    """A rule match: the request's first image has about this mean colour (solid-colour test photos)."""
    from PIL import Image

    def match(request: Request) -> bool:
        if not request.images:
            return False
        with Image.open(io.BytesIO(request.images[0][1])) as img:
            data = img.convert("RGB").resize((8, 8)).tobytes()
        mean = [sum(data[i::3]) / (len(data) // 3) for i in range(3)]
        return all(abs(m - c) <= tolerance for m, c in zip(mean, rgb))
    return match


class FakeGemini:
    def __init__(self, api_keys: set[str] | None = None):
        self.default_api_keys = set(api_keys or {"test-key"})
        self.api_keys = set(self.default_api_keys)
        self.bearer_tokens = {ACCESS_TOKEN}
        self.models = set(DEFAULT_MODELS)
        self.latency = 0.0
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0       # most generateContent requests open at the same time
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._holds: list[threading.Event] = []
        self._server: ThreadingHTTPServer | None = None
        self.adc_file: Path | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeGemini:
        fake = self

        class Handler(_Handler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-gemini", daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def env(self) -> dict[str, str]:
        env = {"GOOGLE_GEMINI_BASE_URL": self.url, "GOOGLE_VERTEX_BASE_URL": self.url}
        if self.adc_file:
            env["GOOGLE_APPLICATION_CREDENTIALS"] = str(self.adc_file)
        return env

    def write_service_account(self, path: Path) -> Path:
        """A service-account key file (application-default credentials) whose token_uri is this fake."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "likeness-test", "private_key_id": "fake",
            "private_key": pem, "client_email": "captioner@likeness-test.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": f"{self.url}/token"}))
        self.adc_file = path
        return path

    # --- control from tests ----------------------------------------------------------------
    def reset(self) -> None:
        self.release()
        with self._cond:
            # a released request may still be answering a client that left (an interrupted run): let it end, so
            # the next test's in_flight counts only its own requests
            self._cond.wait_for(lambda: self.in_flight == 0, timeout=30)
            self._rules.clear()
            self.requests.clear()
            self.latency = 0.0
            self.max_in_flight = 0
            self.api_keys = set(self.default_api_keys)
            self.models = set(DEFAULT_MODELS)

    def script(self, kind: str = "ok", match: Callable[[Request], bool] | None = None, times: int | None = 1,
               **options: Any) -> Behaviour:
        """From now on, answer requests that `match` (all when None) `times` times (None: always) with `kind`."""
        behaviour = Behaviour(kind, **options)
        with self._lock:
            self._rules.append(Rule(behaviour, match, times))
        return behaviour

    def hold(self, match: Callable[[Request], bool] | None = None, times: int | None = None) -> threading.Event:
        """Keep matching requests open until `release()` (or the returned event) is set."""
        event = threading.Event()
        with self._lock:
            self._holds.append(event)
        self.script("ok", match, times, hold=event)
        return event

    def release(self) -> None:
        with self._lock:
            holds, self._holds = self._holds, []
        for event in holds:
            event.set()

    def generate_calls(self, model: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.operation == "generateContent" and (model is None or r.model == model)]

    def wait_for_requests(self, count: int, timeout: float = 60) -> list[Request]:
        """Blocks until `count` generateContent requests have arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                calls = [r for r in self.requests if r.operation == "generateContent"]
                if len(calls) >= count:
                    return calls
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"only {len(calls)} of {count} generateContent requests in {timeout} s")
                self._cond.wait(left)

    # --- called by the handler ------------------------------------------------------------
    def _log(self, request: Request) -> None:
        request.logged = True
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _behaviour_for(self, request: Request) -> Behaviour:
        with self._lock:
            for rule in self._rules:
                if rule.times is not None and rule.times <= 0:
                    continue
                if rule.match is None or rule.match(request):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule.behaviour
        return Behaviour("ok")


class _Handler(BaseHTTPRequestHandler):
    owner: FakeGemini
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    # --- dispatch --------------------------------------------------------------------------
    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        path = self.path.split("?", 1)[0]
        request = Request(time.monotonic(), self.command, path, {k.lower(): v for k, v in self.headers.items()},
                          raw)
        auth = self.headers.get("Authorization", "")
        request.bearer = auth[7:] if auth.startswith("Bearer ") else None
        request.api_key = self.headers.get("x-goog-api-key")
        try:
            if path == "/token" and self.command == "POST":
                request.backend, request.operation = "oauth", "token"
                self._send(request, 200, {"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})
            elif (m := GENERATE.match(path)) and self.command == "POST":
                self._generate(request, m)
            elif LIST_MODELS.match(path) and self.command == "GET":
                request.operation = "listModels"
                self._send(request, 200, {"models": [{"name": f"models/{m}", "supportedGenerationMethods":
                                                      ["generateContent", "countTokens"]}
                                                     for m in sorted(self.owner.models)]})
            else:
                self._send(request, 404, _error(404, "NOT_FOUND", f"Unknown path {path}"))
        except (BrokenPipeError, ConnectionResetError):
            request.disconnected = True
        finally:
            request.finished = time.monotonic()
            if not request.logged:
                self.owner._log(request)

    def _generate(self, request: Request, m: re.Match) -> None:
        fake = self.owner
        request.version, request.model, request.operation = m["version"], m["model"], m["method"]
        request.backend = ("vertex" if m["project"] else "vertex-express") if m["publisher"] else "gemini"
        try:
            request.body = camelize(json.loads(request.raw_body or "{}"))
        except json.JSONDecodeError:
            return self._send(request, 400, _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
        request.images, request.texts = parts_of(request.body)
        if not self._authorised(request):
            return
        fake._log(request)   # visible to tests while it waits (latency, hold)
        if request.model not in fake.models:
            return self._send(request, 404, _error(
                404, "NOT_FOUND", f"models/{request.model} is not found for API version {request.version}, or is "
                                  "not supported for generateContent. Call ListModels to see the list of available "
                                  "models and their supported methods."))
        if request.operation == "countTokens":
            return self._send(request, 200, {"totalTokens": usage_for(request, "")["promptTokenCount"]})
        behaviour = fake._behaviour_for(request)
        request.behaviour = behaviour.kind
        with fake._lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            if behaviour.hold is not None:
                behaviour.hold.wait(timeout=120)
            latency = fake.latency if behaviour.latency is None else behaviour.latency
            if latency:
                time.sleep(latency)   # the simulated service time of the fake server, not test synchronisation
            self._answer(request, behaviour)
        finally:
            with fake._cond:
                fake.in_flight -= 1
                fake._cond.notify_all()

    def _authorised(self, request: Request) -> bool:
        fake = self.owner
        if request.backend == "vertex":
            if request.bearer in fake.bearer_tokens:
                return True
            self._send(request, 401, _error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                                            "credentials. Expected OAuth 2 access token."))
            return False
        if request.api_key is None:
            self._send(request, 403, _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers "
                                            "(callers without established identity). Please use API Key or "
                                            "other form of API consumer identity to call this API."))
            return False
        if request.api_key not in fake.api_keys:
            self._send(request, 400, _invalid_key())
            return False
        return True

    # --- answers ---------------------------------------------------------------------------
    def _answer(self, request: Request, b: Behaviour) -> None:
        model = request.model
        usage = usage_for(request, "")
        if b.kind == "ok":
            text = answer_text(request, b.fields)
            return self._send(request, 200, {
                "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP",
                                "index": 0, "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT",
                                                               "probability": "NEGLIGIBLE"}]}],
                "usageMetadata": usage_for(request, text), "modelVersion": model,
                "responseId": hashlib.sha256(request.raw_body.encode()).hexdigest()[:16]})
        if b.kind == "blocked":
            return self._send(request, 200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                                             "usageMetadata": usage, "modelVersion": model})
        if b.kind == "safety":
            return self._send(request, 200, {"candidates": [{
                "finishReason": "SAFETY", "index": 0,
                "safetyRatings": [{"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "HIGH",
                                   "blocked": True}]}], "usageMetadata": usage, "modelVersion": model})
        if b.kind == "max_tokens":
            return self._send(request, 200, {"candidates": [{"content": {"role": "model"},
                                                             "finishReason": "MAX_TOKENS", "index": 0}],
                                             "usageMetadata": {**usage, "thoughtsTokenCount": 2048},
                                             "modelVersion": model})
        if b.kind == "not_json":
            return self._send(request, 200, {"candidates": [{"content": {"parts": [{"text": "Sorry, no."}],
                                                                         "role": "model"}, "finishReason": "STOP"}],
                                             "usageMetadata": usage_for(request, "Sorry, no."), "modelVersion": model})
        if b.kind == "invalid_key":
            return self._send(request, 400, _invalid_key(request.api_key if b.echo_key else None))
        if b.kind == "model_not_found":
            return self._send(request, 404, _error(404, "NOT_FOUND", f"models/{model} is not found."))
        if b.kind == "rate_minute":
            return self._send(request, 429, _error(
                429, "RESOURCE_EXHAUSTED", f"You exceeded your current quota. Please retry in {b.retry_delay}.",
                [quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", model),
                 retry_info(b.retry_delay)]))
        if b.kind == "quota_day":
            return self._send(request, 429, _error(
                429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing "
                "details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/"
                "rate-limits.", [quota_failure("GenerateRequestsPerDayPerProjectPerModel-FreeTier", model),
                                 retry_info("43200s")]))
        if b.kind == "vertex_429":
            return self._send(request, 429, [_error(429, "RESOURCE_EXHAUSTED", "Resource exhausted. Please try "
                                                    "again later.")])
        if b.kind == "500":
            return self._send(request, 500, _error(500, "INTERNAL", "An internal error has occurred."))
        if b.kind == "503":
            return self._send(request, 503, _error(503, "UNAVAILABLE", "The model is overloaded. Please try "
                                                   "again later."))
        if b.kind == "408":
            return self._send(request, 408, _error(408, "REQUEST_TIMEOUT", "The request timed out."))
        if b.kind == "504":
            return self._send(request, 504, _error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation "
                                                   "could complete."))
        if b.kind == "reset":
            request.status = 0
            return self._reset()
        if b.kind == "truncated":
            data = json.dumps({"candidates": [{"content": {"parts": [{"text": answer_text(request, b.fields)}],
                                                           "role": "model"}, "finishReason": "STOP"}]}).encode()
            request.status = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            return self._reset()
        if b.kind == "html_502":
            return self._send(request, 502, "<html><body><h1>502 Bad Gateway</h1></body></html>",
                              content_type="text/html")
        raise ValueError(f"unknown fake behaviour {b.kind!r}")

    def _reset(self) -> None:
        """Drops the connection with a TCP reset (no answer, or the rest of one), as a crashed backend does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.wfile = io.BytesIO()          # the server's own flush after the handler has nothing left to send
        self.close_connection = True

    def _send(self, request: Request, status: int, body: Any, content_type: str = "application/json") -> None:
        request.status = status
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _invalid_key(received: str | None = None) -> dict:
    message = "API key not valid. Please pass a valid API key."
    if received is not None:
        message += f" (received {received})"
    return _error(400, "INVALID_ARGUMENT", message, [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
        "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])


# --- request parsing and deterministic answers --------------------------------------------------
_SCHEMA_KEYS = {"responseJsonSchema", "responseSchema", "parametersJsonSchema", "responseJsonSchemaDict"}


def camelize(value: Any) -> Any:
    """Every key camelCased, as the real proto-JSON parser accepts both; schemas are kept as sent."""
    if isinstance(value, list):
        return [camelize(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        camel = re.sub(r"_([a-z])", lambda m: m[1].upper(), key)
        out[camel] = item if camel in _SCHEMA_KEYS else camelize(item)
    return out


def b64decode_any(data: str) -> bytes:
    """Standard or URL-safe base64 (the SDK sends URL-safe), padded or not."""
    data = data.replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def parts_of(body: dict) -> tuple[list[tuple[str, bytes]], list[str]]:
    images, texts = [], []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            if "inlineData" in part:
                inline = part["inlineData"]
                images.append((inline.get("mimeType", ""), b64decode_any(inline.get("data", ""))))
            if "text" in part:
                texts.append(part["text"])
    return images, texts


def usage_for(request: Request, answer: str) -> dict:
    text_tokens = sum(len(t) for t in request.texts) // 4 + len(json.dumps(request.schema or {})) // 4
    image_tokens = 1089 * len(request.images)
    thinking = (request.body or {}).get("generationConfig", {}).get("thinkingConfig")
    thoughts = 120 if thinking else 0
    out = len(answer) // 4
    return {"promptTokenCount": text_tokens + image_tokens, "candidatesTokenCount": out,
            "thoughtsTokenCount": thoughts, "totalTokenCount": text_tokens + image_tokens + out + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": text_tokens},
                                    {"modality": "IMAGE", "tokenCount": image_tokens}]}


def answer_text(request: Request, overrides: dict) -> str:
    seed = hashlib.sha256(b"".join(data for _, data in request.images) or request.raw_body.encode()).digest()
    schema = request.schema
    if not schema:
        return overrides.get("text") or f"a photo of a person, variant {seed.hex()[:6]}"
    answer = {}
    for i, (name, spec) in enumerate((schema.get("properties") or {}).items()):
        pick = seed[i % len(seed)]
        if spec.get("enum"):
            answer[name] = spec["enum"][pick % len(spec["enum"])]
        elif name in WORDS:
            answer[name] = WORDS[name][pick % len(WORDS[name])]
        else:
            answer[name] = f"{name.replace('_', ' ')} {seed.hex()[:6]}"
    answer.update(overrides)
    return json.dumps(answer)
