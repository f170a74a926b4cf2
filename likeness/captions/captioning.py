"""Captions a prepared dataset with Gemini: one request per image, a few at a time, never paying twice.

`caption_dataset` plans the run (hand edits kept, cached answers reused), checks the budget against the
estimate, sends the remaining images concurrently under a requests-per-minute limit, retries what the
service asks to retry, writes each caption the moment it arrives, and returns the updated dataset with a
review report (per-image tokens and cost, lint flags).
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .caption_cache import CachedCaption, CaptionCache, CaptionFiles, cache_key
from .caption_lint import LintFlag, lint_captions, parse_traits
from .caption_template import DEFAULT_INSTRUCTIONS, assemble_caption, response_schema
from ..money.credentials import redact
from ..dataset import Dataset, DatasetItem
from ..errors import InputError, ServiceError
from ..cloud.gemini_client import describe_backend, make_client
from ..money.prices import PriceTable, format_usd, load_prices
from ..progress import Interrupted, Progress, SilentProgress
from ..money.spend_ledger import SpendEntry, SpendLedger

log = logging.getLogger("likeness")

DEFAULT_MODEL = "gemini-3.8-flash"
MAX_LONG_SIDE = 1536                    # px; keeps every image far below Vertex's 7 MB inline limit
MAX_INLINE_BYTES = 7 * 1024 * 1024
RETRY_STATUS = {408, 500, 502, 503, 504}
MAX_RATE_LIMIT_RETRIES = 8
PROMPT_TEXT = "Caption this photo. Fill the JSON fields following these instructions:\n\n"
# Rough sizes for the estimate before the run; the report shows the real counts afterwards.
IMAGE_TOKENS = 1100
OUTPUT_TOKENS = 250
THINKING_TOKENS = 400


@dataclass(frozen=True)
class CaptionSettings:
    model: str = DEFAULT_MODEL
    instructions: str = DEFAULT_INSTRUCTIONS
    overwrite: bool = False             # also replace captions the user edited by hand
    concurrency: int = 4
    rpm: int = 60                       # requests per minute; 0 = no limit
    forbidden_traits: str | None = None  # None: the default list
    vertex_project: str = ""
    vertex_location: str = ""
    max_attempts: int = 5               # per image, for 408/5xx and network errors
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    max_retry_delay: float = 300.0      # longest RetryInfo wait honoured before giving the image up


@dataclass
class ImageCaption:
    image: str
    caption: str = ""
    status: str = "pending"     # captioned | cached | kept | blocked | failed | pending
    reason: str = ""
    prompt_tokens: int = 0
    output_tokens: int = 0      # answer + thinking tokens (both billed as output)
    cost_usd: float = 0.0
    attempts: int = 0


@dataclass
class CaptionRun:
    dataset: Dataset
    model: str
    backend: str
    prices_as_of: str
    images: list[ImageCaption]
    estimate_usd: float = 0.0
    requests: int = 0
    flags: list[LintFlag] = field(default_factory=list)

    @property
    def captions(self) -> list[str]:
        return [item.caption for item in self.dataset.items]

    @property
    def cost_usd(self) -> float:
        return sum(i.cost_usd for i in self.images if i.attempts)

    def count(self, status: str) -> int:
        return sum(1 for i in self.images if i.status == status)

    def report(self) -> str:
        paid = [i for i in self.images if i.prompt_tokens or i.output_tokens]   # every answer is billed
        lines = [
            f"Captions for {len(self.images)} images with {self.model} on {self.backend}: "
            f"{self.count('captioned')} new, {self.count('cached')} from the cache, {self.count('kept')} kept "
            f"(your edits), {self.count('blocked')} blocked, {self.count('failed')} failed.",
            f"Cost: estimated {format_usd(self.estimate_usd)} before, {format_usd(self.cost_usd)} spent on "
            f"{len(paid)} answers ({sum(i.prompt_tokens for i in paid):,} input + "
            f"{sum(i.output_tokens for i in paid):,} output tokens; prices as of {self.prices_as_of}).",
        ]
        for item in self.images:
            line = f"  {item.image}: {item.status}"
            if item.prompt_tokens or item.output_tokens:
                line += (f", {item.prompt_tokens:,} in / {item.output_tokens:,} out tokens, "
                         f"{format_usd(item.cost_usd)}")
            if item.reason:
                line += f" - {item.reason}"
            lines.append(line)
        if self.flags:
            lines.append(f"Review {len(self.flags)} flag(s) before training:")
            lines += [f"  {flag.text()}" for flag in self.flags]
        return "\n".join(lines)


async def caption_dataset(dataset: Dataset, settings: CaptionSettings, user_dir: str | Path,
                          progress: Progress | None = None) -> CaptionRun:
    """Captions every image of `dataset` that has no caption yet (see the module doc)."""
    progress = progress or SilentProgress()
    settings = checked_settings(settings)
    prices = load_prices(user_dir)
    run = CaptionRun(dataset, settings.model, describe_backend(settings.vertex_project, settings.vertex_location),
                     prices.as_of, [ImageCaption(item.image) for item in dataset.items])
    cache, files = CaptionCache(user_dir), CaptionFiles(user_dir)
    todo = plan_run(run, settings, cache, files)
    run.estimate_usd = estimate_cost(len(todo), settings, prices)
    done = len(dataset.items) - len(todo)
    progress.update(done, len(dataset.items), f"{done}/{len(dataset.items)} captions ready; asking Gemini for "
                    f"{len(todo)} (about {format_usd(run.estimate_usd)})")
    if todo:
        SpendLedger(user_dir).check(run.estimate_usd, f"Captioning {len(todo)} images with {settings.model}")
        calls = _Calls(run, settings, prices, cache, files, SpendLedger(user_dir), progress, user_dir)
        await calls.caption_all(todo)
    return finish_run(run, settings)


def caption_dataset_sync(dataset: Dataset, settings: CaptionSettings, user_dir: str | Path,
                         progress: Progress | None = None) -> CaptionRun:
    """`caption_dataset` for synchronous callers (benchmarks, scripts, tests).

    When this thread already runs an event loop (a host, a browser driver), the run gets a thread of its own.
    """
    def run() -> CaptionRun:
        return asyncio.run(caption_dataset(dataset, settings, user_dir, progress))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="likeness-caption") as pool:
        return pool.submit(run).result()


def checked_settings(settings: CaptionSettings) -> CaptionSettings:
    model = settings.model.strip().removeprefix("models/")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._\-@]*", model):
        raise InputError(f"{settings.model!r} is not a Gemini model id; use one such as {DEFAULT_MODEL!r}")
    if not settings.instructions.strip():
        raise InputError("The captioning instructions are empty; write them or restore the default")
    if not 1 <= settings.concurrency <= 16:
        raise InputError(f"concurrency must be between 1 and 16, got {settings.concurrency}")
    if settings.rpm < 0:
        raise InputError(f"rpm must be 0 (no limit) or more, got {settings.rpm}")
    return replace(settings, model=model)


def plan_run(run: CaptionRun, settings: CaptionSettings, cache: CaptionCache,
             files: CaptionFiles) -> list[tuple[int, DatasetItem]]:
    """Settles what needs no request (hand edits, cached answers) and returns the images left to caption."""
    dataset, todo = run.dataset, []
    for index, item in enumerate(dataset.items):
        result, txt = run.images[index], dataset.caption_path(item)
        if not settings.overwrite and files.is_hand_edit(txt):
            result.caption, result.status = files.read(txt), "kept"
            continue
        cached = cache.get(cache_key(item.sha256, settings.model, settings.instructions, dataset.trigger_word))
        if cached is None:
            todo.append((index, item))
            continue
        result.status = "cached"
        if cached.blocked and not is_refusal(cached.blocked):
            todo.append((index, item))       # a failure cached by an older version: ask again
            continue
        if cached.blocked:
            result.status, result.reason = "blocked", f"{cached.blocked} (an earlier answer; change the model or " \
                                                      "instructions to try again)"
            continue
        result.caption = cached.caption
        if files.read(txt) != cached.caption:
            files.write(txt, cached.caption)
    return todo


def estimate_cost(requests: int, settings: CaptionSettings, prices: PriceTable) -> float:
    price_in, price_out = prices.gemini_per_million(settings.model)
    tokens_in = IMAGE_TOKENS + (len(PROMPT_TEXT) + len(settings.instructions)
                                + len(json.dumps(response_schema()))) // 4
    tokens_out = OUTPUT_TOKENS + (THINKING_TOKENS if _thinks(settings.model) else 0)
    return requests * (tokens_in * price_in + tokens_out * price_out) / 1e6


def finish_run(run: CaptionRun, settings: CaptionSettings) -> CaptionRun:
    captions = {r.image: r.caption for r in run.images}
    items = tuple(replace(item, caption=captions.get(item.image, item.caption)) for item in run.dataset.items)
    run.dataset = replace(run.dataset, items=items)
    run.flags = lint_captions([(i.image, i.caption) for i in items], run.dataset.trigger_word,
                              parse_traits(settings.forbidden_traits))
    return run


def jpeg_for_gemini(path: str | Path) -> bytes:
    """The image as an upright RGB JPEG, long side at most 1536 px and under 7 MB."""
    from PIL import Image, ImageOps

    with Image.open(path) as opened:
        img = ImageOps.exif_transpose(opened).convert("RGB")
    img.thumbnail((MAX_LONG_SIDE, MAX_LONG_SIDE))
    quality = 90
    while True:
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= MAX_INLINE_BYTES or quality <= 40:
            return buffer.getvalue()
        quality -= 15


class RateLimiter:
    """At most `rpm` request starts in any 60 seconds (0: no limit)."""

    def __init__(self, rpm: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep):
        self.rpm, self.clock, self.sleep = rpm, clock, sleep
        self.starts: deque[float] = deque()
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if self.rpm <= 0:
            return
        async with self.lock:
            while True:
                now = self.clock()
                while self.starts and now - self.starts[0] >= 60:
                    self.starts.popleft()
                if len(self.starts) < self.rpm:
                    self.starts.append(now)
                    return
                await self.sleep(60 - (now - self.starts[0]))


def retry_delay_seconds(details: Any) -> float | None:
    """The `RetryInfo.retryDelay` of a Google error body ("58.9s"), or None."""
    for entry in _error_details(details):
        if str(entry.get("@type", "")).endswith("RetryInfo"):
            match = re.fullmatch(r"\s*([0-9.]+)s\s*", str(entry.get("retryDelay", "")))
            if match:
                return float(match[1])
    return None


def quota_ids(details: Any) -> list[str]:
    return [str(v.get("quotaId", "")) for entry in _error_details(details)
            if str(entry.get("@type", "")).endswith("QuotaFailure") for v in entry.get("violations") or []]


def _error_details(details: Any) -> list[dict]:
    if isinstance(details, list) and len(details) == 1:
        details = details[0]
    error = details.get("error", details) if isinstance(details, dict) else {}
    found = error.get("details") if isinstance(error, dict) else None
    return [d for d in found or [] if isinstance(d, dict)]


def _thinks(model: str) -> bool:
    return model.startswith("gemini-3")


class _Fatal(Exception):
    """Stops the whole run (bad key, unknown model, daily quota); finished captions stay."""


class _ImageFailed(Exception):
    """This image gets no caption this time; the others go on."""


class _Calls:
    """The requests of one run: concurrency, RPM limit, retries, interrupt, and saving each answer."""

    def __init__(self, run: CaptionRun, settings: CaptionSettings, prices: PriceTable, cache: CaptionCache,
                 files: CaptionFiles, ledger: SpendLedger, progress: Progress, user_dir: str | Path):
        self.run, self.settings, self.cache, self.files, self.ledger = run, settings, cache, files, ledger
        self.progress, self.user_dir = progress, user_dir
        self.price_in, self.price_out = prices.gemini_per_million(settings.model)
        self.semaphore = asyncio.Semaphore(settings.concurrency)
        self.limiter = RateLimiter(settings.rpm)
        self.client: Any = None

    def finished(self) -> int:
        return sum(1 for i in self.run.images if i.status != "pending")

    async def caption_all(self, todo: list[tuple[int, DatasetItem]]) -> None:
        from google.genai import types

        self.client = make_client(self.user_dir, self.settings.vertex_project, self.settings.vertex_location)
        self.config = types.GenerateContentConfig(
            response_mime_type="application/json", response_json_schema=response_schema(),
            max_output_tokens=4096,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            thinking_config=types.ThinkingConfig(thinking_level="LOW") if _thinks(self.settings.model) else None)
        pending = {asyncio.create_task(self._caption(index, item)) for index, item in todo}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
                # every failure retrieved (asyncio logs an unretrieved one, with its chain, to the server log)
                failures = [task.exception() for task in done]
                fatal = next((e for e in failures if isinstance(e, _Fatal)), None)
                if fatal is not None:
                    raise ServiceError(f"{fatal} {self._kept()}")
                for task in done:
                    task.result()
                if self.progress.interrupted():
                    raise Interrupted(f"Captioning interrupted. {self._kept()}")
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self.client.aio.aclose()

    def _kept(self) -> str:
        total = len(self.run.images)
        return (f"{self.finished()} of {total} captions are done and saved; queue the prompt again to finish "
                "the rest (finished images are not paid for again).")

    async def _caption(self, index: int, item: DatasetItem) -> None:
        from google.genai import errors, types

        result = self.run.images[index]
        contents = None
        rate_limited = 0
        while True:
            result.attempts += 1
            async with self.semaphore:   # FIFO: images go in the set's order
                if contents is None:
                    jpeg = await asyncio.to_thread(jpeg_for_gemini, self.run.dataset.image_path(item))
                    contents = [types.Content(role="user", parts=[
                        types.Part.from_bytes(data=jpeg, mime_type="image/jpeg"),
                        types.Part.from_text(text=PROMPT_TEXT + self.settings.instructions)])]
                await self.limiter.wait()
                self.run.requests += 1
                try:
                    response = await self.client.aio.models.generate_content(
                        model=self.settings.model, contents=contents, config=self.config)
                except errors.APIError as exc:
                    delay = self._after_error(exc, result, rate_limited)
                    rate_limited += exc.code == 429
                except (asyncio.TimeoutError, OSError, *_transport_errors()) as exc:   # flat: no nested tuple
                    delay = self._backoff(result, f"network error ({type(exc).__name__})")
                else:
                    self._save(index, item, response)
                    return
            if delay is None:
                self._report(result)
                return
            await asyncio.sleep(delay)

    def _after_error(self, exc: Any, result: ImageCaption, rate_limited: int) -> float | None:
        """Seconds to wait before trying again; None when this image is given up; _Fatal to stop the run
        (raised `from None`: the SDK's error, which may echo the key, stays out of every traceback)."""
        code, status = exc.code, exc.status or ""
        message = redact(str(exc.message or status), self.user_dir)[:300]
        if code == 429:
            quotas = quota_ids(exc.details)
            daily = [q for q in quotas if "PerDay" in q]
            if daily:
                raise _Fatal(f"Gemini's daily quota for {self.settings.model} is used up ({daily[0]}): no more "
                             "requests today on this key. Wait for the reset (midnight Pacific time), or use a "
                             "paid-tier key or Vertex AI.") from None
            delay = retry_delay_seconds(exc.details)
            if rate_limited >= MAX_RATE_LIMIT_RETRIES or (delay or 0) > self.settings.max_retry_delay:
                result.status, result.reason = "failed", f"rate limited by Gemini ({message}); lower rpm and queue again"
                return None
            log.info("Gemini asked to slow down (429); waiting %.1f s", delay or 0)
            return delay if delay is not None else self._backoff_delay(rate_limited + 1)
        if code in RETRY_STATUS:
            return self._backoff(result, f"Gemini answered {code} {status}")
        if code in (401, 403) or (code == 400 and "API_KEY_INVALID" in json.dumps(exc.details or {})):
            raise _Fatal(f"Gemini refused the credentials ({code} {status}: {message}). Check GEMINI_API_KEY "
                         "(or the key file in ComfyUI's user folder), or the Vertex AI project and its "
                         "application-default credentials.") from None
        if code == 404:
            raise _Fatal(f"Gemini has no model {self.settings.model!r} on {self.run.backend} ({message}). Pick a "
                         f"current model id, such as {DEFAULT_MODEL!r}, in the model widget.") from None
        result.status, result.reason = "failed", f"Gemini refused the request ({code} {status}: {message})"
        return None

    def _backoff(self, result: ImageCaption, what: str) -> float | None:
        if result.attempts >= self.settings.max_attempts:
            result.status, result.reason = "failed", f"{what} {result.attempts} times; queue again to retry"
            return None
        return self._backoff_delay(result.attempts)

    def _backoff_delay(self, attempt: int) -> float:
        delay = min(self.settings.backoff_initial * 2 ** (attempt - 1), self.settings.backoff_max)
        return delay * random.uniform(0.8, 1.0)  # noqa: S311 - jitter, not security

    def _save(self, index: int, item: DatasetItem, response: Any) -> None:
        """Records the cost, reads the answer, caches it and writes the side-car (no await: never half done)."""
        result, dataset = self.run.images[index], self.run.dataset
        usage = response.usage_metadata
        result.prompt_tokens = (usage and usage.prompt_token_count) or 0
        result.output_tokens = ((usage and usage.candidates_token_count) or 0) + \
                               ((usage and usage.thoughts_token_count) or 0)
        result.cost_usd = (result.prompt_tokens * self.price_in + result.output_tokens * self.price_out) / 1e6
        self.ledger.record(SpendEntry("gemini", f"caption of {item.image} ({self.settings.model})",
                                      result.cost_usd, ref=item.sha256))
        fields, problem = read_answer(response)
        key = cache_key(item.sha256, self.settings.model, self.settings.instructions, dataset.trigger_word)
        if problem and is_refusal(problem):   # the same photo gets the same refusal: not paid for twice
            result.status, result.reason = "blocked", problem
            self.cache.put(key, CachedCaption("", {}, self.settings.model, result.prompt_tokens,
                                              result.output_tokens, result.cost_usd, blocked=problem))
        elif problem:                         # a failure (token budget, not JSON): never cached, asked again
            result.status, result.reason = "failed", f"{problem}; queue again to ask again"
        else:
            caption = assemble_caption(fields, dataset.trigger_word)
            self.cache.put(key, CachedCaption(caption, fields, self.settings.model, result.prompt_tokens,
                                              result.output_tokens, result.cost_usd))
            txt = dataset.caption_path(item)
            if not self.settings.overwrite and self.files.is_hand_edit(txt):   # edited while we waited
                result.caption, result.status = self.files.read(txt), "kept"
            else:
                self.files.write(txt, caption)
                result.caption, result.status = caption, "captioned"
        self._report(result)

    def _report(self, result: ImageCaption) -> None:
        total = len(self.run.images)
        detail = f" ({result.reason})" if result.reason else ""
        self.progress.update(self.finished(), total,
                             f"{self.finished()}/{total} {result.image}: {result.status}{detail}")


# Answers that refuse the photo itself: asking again gets the same refusal, so they are cached. Any other
# answer without a caption (token budget, not JSON, empty) is a failure of that request: never cached.
BLOCKED_PREFIX = "Gemini blocked the photo"
WITHHELD_PREFIX = "Gemini withheld the answer"
REFUSAL_FINISH = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT"}


def is_refusal(reason: str) -> bool:
    return reason.startswith((BLOCKED_PREFIX, WITHHELD_PREFIX))


def read_answer(response: Any) -> tuple[dict[str, Any], str]:
    """(fields, "") from a usable answer, or ({}, why there is none): a refusal (`is_refusal`) or a failure."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        return {}, f"{BLOCKED_PREFIX} ({_name(feedback.block_reason)})"
    candidate = response.candidates[0] if response.candidates else None
    finish = _name(candidate.finish_reason) if candidate and candidate.finish_reason else "no answer"
    parts = (candidate.content.parts or []) if candidate and candidate.content else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if not text.strip():
        if finish in REFUSAL_FINISH or "SAFETY" in finish:
            return {}, f"{WITHHELD_PREFIX} for safety ({finish})"
        if finish == "MAX_TOKENS":
            return {}, ("Gemini used its whole token budget before writing the caption (MAX_TOKENS); try a "
                        "model with less thinking")
        return {}, f"Gemini sent an empty answer ({finish})"
    try:
        fields = json.loads(text)
    except json.JSONDecodeError:
        cut = " (cut off at MAX_TOKENS)" if finish == "MAX_TOKENS" else ""
        return {}, f"Gemini's answer was not the JSON asked for{cut}"
    if not isinstance(fields, dict):
        return {}, "Gemini's answer was not the JSON object asked for"
    return fields, ""


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))


def _transport_errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = []
    for module, name in (("aiohttp", "ClientError"), ("httpx", "TransportError"), ("httpx2", "TransportError")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)
