"""A short idea → a detailed, natural FLUX prompt in the style of the seed's examples, trigger word first.

The seed: "I refine them using ChatGPT, which adds an extra level of structure and makes them more natural,
rather than just concatenating tags separated by commas." `refine_prompt` asks Gemini for that, through the
captioner's client (key or Vertex AI), its cache (so the same idea is never paid twice) and the spend ledger:

1. the idea is cleaned (the trigger word never goes to Gemini: it is a made-up token the LoRA owns);
2. the cache is asked first; otherwise the estimate is checked against the monthly budget;
3. Gemini answers one JSON field, `prompt`: camera, light, setting, clothing, pose, mood — the instructions
   forbid identity traits (eye colour, face shape, skin tone), which the LoRA carries;
4. any sentence that still names a forbidden trait is dropped (and listed), and the trigger word is put first.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..captions.caption_cache import CachedCaption, CaptionCache, cache_key
from ..captions.caption_lint import parse_traits
from ..captions.captioning import (DEFAULT_MODEL, RETRY_STATUS, CaptionSettings, checked_settings, quota_ids,
                                   read_answer, retry_delay_seconds)
from ..cloud.gemini_client import describe_backend, make_client
from ..errors import InputError, ServiceError
from ..money.credentials import redact
from ..money.prices import PriceTable, format_usd, load_prices
from ..money.spend_ledger import SpendEntry, SpendLedger
from .seed_journal import put_trigger_first

REFINER_VERSION = 1
MAX_IDEA_CHARS = 2000
MAX_ATTEMPTS = 3                     # 408/5xx and rate limits, with the wait Gemini names (at most MAX_WAIT_S)
MAX_WAIT_S = 30.0
OUTPUT_TOKENS = 350                  # a paragraph of about 120 words, for the estimate
THINKING_TOKENS = 400

# The seed's two example prompts, with the trigger word and the person's fixed traits taken out.
INSTRUCTIONS = """\
You write prompts for FLUX.1-dev, an image model, for photos of one particular person. Turn the idea below \
into one detailed, natural paragraph of 60 to 120 words, in the style of these examples:

- A captivating, photorealistic image with RAW quality, cinematic grain, and eye-catching light. The scene \
features an analog portrait of a man from 1966, retro charm. He wears vibrant, psychedelic attire. Posing \
confidently in a lush green field, surrounded by colorful wildflowers, his smile and gaze exude an \
irresistible allure. The shoot features vibrant colors, hyper-detailed dynamic style.
- An analog portrait of a 40-year-old man dressed in formal attire. He wears a collared white shirt, black \
necktie, black vest, and a black suit jacket. A stylish hat tops his look as he gazes thoughtfully downward. \
His hands rest casually in his pockets. The low-key lighting casts soft shadows against a gray studio \
background, and the visible film grain adds a timeless, classic feel to this upper-body shot.

Describe: the type of image and medium (photo, analog, digital, painting), the camera shot and angle, the \
light, the setting and background, the clothing and accessories, the pose or action, the expression and the \
mood. Write full sentences, not a list of tags. Keep what the idea asks for; add only what fits it.
Never describe the person's identity: no eye colour, face shape, jawline, nose, skin tone, complexion or \
ethnicity, and no name — a separate model carries the person's likeness. Refer to the person as "a man", \
"a woman" or "a person", as the idea suggests.

Answer with the JSON field `prompt` only.

The idea: """

PERSON = "the person"


@dataclass(frozen=True)
class RefineSettings:
    model: str = DEFAULT_MODEL
    variant: int = 0                  # 0: the first answer; 1, 2 …: another version of the same idea (paid once each)
    vertex_project: str = ""
    vertex_location: str = ""


@dataclass
class RefinedPrompt:
    prompt: str                       # trigger word first, ready for a sampler
    idea: str
    model: str
    backend: str
    cached: bool = False
    estimate_usd: float = 0.0
    cost_usd: float = 0.0             # paid now (0 when cached)
    prompt_tokens: int = 0
    output_tokens: int = 0
    removed: list[str] = field(default_factory=list)   # sentences dropped for naming an identity trait

    def summary(self) -> str:
        if self.cached:
            head = f"Refined with {self.model} earlier (cached): nothing paid."
        else:
            head = (f"Refined with {self.model} on {self.backend}: cost {format_usd(self.cost_usd)} (estimate "
                    f"{format_usd(self.estimate_usd)}; {self.prompt_tokens:,} input + {self.output_tokens:,} "
                    "output tokens).")
        lines = [head]
        if self.removed:
            lines.append("Left out (identity traits belong to the LoRA): " + " | ".join(self.removed))
        return "\n".join(lines)


async def refine_prompt(idea: str, trigger_word: str, settings: RefineSettings, user_dir: str | Path) -> RefinedPrompt:
    """The idea as a detailed FLUX prompt with the trigger word first (see the module's docstring)."""
    model = checked_settings(CaptionSettings(model=settings.model)).model
    sent = idea_for_gemini(idea, trigger_word)
    prices = load_prices(user_dir)
    result = RefinedPrompt("", idea, model, describe_backend(settings.vertex_project, settings.vertex_location))
    cache, key = CaptionCache(user_dir), refiner_key(sent, model, settings.variant)
    cached = cache.get(key)
    if cached is not None and cached.caption:
        result.cached, result.prompt_tokens, result.output_tokens = True, cached.prompt_tokens, cached.output_tokens
        return finish(result, cached.caption, trigger_word)
    result.estimate_usd = estimate_cost(sent, model, prices)
    ledger = SpendLedger(user_dir)
    ledger.check(result.estimate_usd, f"Refining a prompt with {model}")
    response = await ask_gemini(sent, model, settings, user_dir)
    usage = response.usage_metadata
    result.prompt_tokens = (usage and usage.prompt_token_count) or 0
    result.output_tokens = ((usage and usage.candidates_token_count) or 0) + ((usage and usage.thoughts_token_count) or 0)
    price_in, price_out = prices.gemini_per_million(model)
    result.cost_usd = (result.prompt_tokens * price_in + result.output_tokens * price_out) / 1e6
    ledger.record(SpendEntry("gemini", f"prompt refinement ({model})", result.cost_usd, ref=key[:16]))
    text = answer_prompt(response)
    finish(result, text, trigger_word)             # first: an unusable answer is never cached
    cache.put(key, CachedCaption(text, {"prompt": text}, model, result.prompt_tokens, result.output_tokens,
                                 result.cost_usd))
    return result


def refine_prompt_sync(idea: str, trigger_word: str, settings: RefineSettings, user_dir: str | Path) -> RefinedPrompt:
    """`refine_prompt` for synchronous callers; in a thread of its own when this one runs an event loop."""
    def run() -> RefinedPrompt:
        return asyncio.run(refine_prompt(idea, trigger_word, settings, user_dir))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="likeness-refine") as pool:
        return pool.submit(run).result()


def idea_for_gemini(idea: str, trigger_word: str) -> str:
    """The idea as Gemini gets it: trimmed, and with the trigger word replaced by "the person"."""
    text = " ".join((idea or "").split())
    for word in [w.strip() for w in (trigger_word or "").split(",") if w.strip()]:
        text = re.sub(rf"(?i)(?<![\w-]){re.escape(word)}(?![\w-])", PERSON, text)
    text = re.sub(rf"^(?:{PERSON}\s*(?:,\s*|$))+", "", text, flags=re.IGNORECASE).strip()   # a bare trigger word
    if not text:
        raise InputError("The idea is empty: write a few words about the picture you want (for example "
                         "'portrait in a 1960s diner, film look'); the refiner writes the rest.")
    if len(text) > MAX_IDEA_CHARS:
        raise InputError(f"The idea has {len(text)} characters; keep it under {MAX_IDEA_CHARS} (a sentence or "
                         "two is enough).")
    return text


def refiner_key(sent: str, model: str, variant: int) -> str:
    """The caption cache's key, in a namespace of its own: the idea's hash + model + instructions + variant."""
    idea_hash = hashlib.sha256(sent.encode("utf-8")).hexdigest()
    return cache_key(idea_hash, model, f"prompt-refiner v{REFINER_VERSION} variant {int(variant)}\n{INSTRUCTIONS}", "")


def response_schema() -> dict[str, Any]:
    return {"type": "object", "required": ["prompt"], "properties": {"prompt": {
        "type": "string", "description": "The detailed FLUX prompt: one paragraph of full sentences, no identity "
                                         "traits, no name."}}}


def estimate_cost(sent: str, model: str, prices: PriceTable) -> float:
    price_in, price_out = prices.gemini_per_million(model)
    tokens_in = (len(INSTRUCTIONS) + len(sent) + len(json.dumps(response_schema()))) // 4
    tokens_out = OUTPUT_TOKENS + (THINKING_TOKENS if model.startswith("gemini-3") else 0)
    return (tokens_in * price_in + tokens_out * price_out) / 1e6


async def ask_gemini(sent: str, model: str, settings: RefineSettings, user_dir: str | Path) -> Any:
    """One generateContent call, retried on 408/5xx and rate limits; every refusal becomes a clear error."""
    from google.genai import errors, types

    client = make_client(user_dir, settings.vertex_project, settings.vertex_location)
    config = types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=response_schema(), max_output_tokens=2048,
        seed=int(settings.variant) if settings.variant else None, temperature=1.0 if settings.variant else None,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=types.ThinkingConfig(thinking_level="LOW") if model.startswith("gemini-3") else None)
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await client.aio.models.generate_content(model=model, contents=INSTRUCTIONS + sent,
                                                                config=config)
            except errors.APIError as exc:
                wait = _wait_after(exc, model, attempt, user_dir)
            except (asyncio.TimeoutError, OSError) as exc:
                if attempt == MAX_ATTEMPTS:
                    raise ServiceError(f"Gemini could not be reached ({type(exc).__name__}) after {attempt} tries; "
                                       "check the network and press Refine again.") from None
                wait = 2.0 ** attempt
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")   # the loop returns or raises
    finally:
        await client.aio.aclose()


def _wait_after(exc: Any, model: str, attempt: int, user_dir: str | Path) -> float:
    """Seconds before the next try, or the error to show (raised `from None`: the SDK's may echo the key)."""
    code, status = exc.code, exc.status or ""
    message = redact(str(exc.message or status), user_dir)[:300]
    if code == 429:
        daily = [q for q in quota_ids(exc.details) if "PerDay" in q]
        delay = retry_delay_seconds(exc.details)
        if daily or attempt == MAX_ATTEMPTS or (delay or 0) > MAX_WAIT_S:
            raise ServiceError(f"Gemini's quota for {model} is used up for now ({message}). Wait a minute (or "
                               "until tomorrow for a daily quota) and press Refine again, or use a paid key.") from None
        return delay if delay is not None else 2.0 ** attempt
    if code in RETRY_STATUS and attempt < MAX_ATTEMPTS:
        return 2.0 ** attempt
    if code in (401, 403) or (code == 400 and "API_KEY_INVALID" in json.dumps(exc.details or {})):
        raise InputError(f"Gemini refused the credentials ({code} {status}: {message}). Check GEMINI_API_KEY (or "
                         "the key file in ComfyUI's user folder), or the Vertex AI project and its credentials.") from None
    if code == 404:
        raise InputError(f"Gemini has no model {model!r} ({message}); pick a current model id, such as "
                         f"{DEFAULT_MODEL!r}.") from None
    raise ServiceError(f"Gemini refused the request ({code} {status}: {message}).") from None


def answer_prompt(response: Any) -> str:
    """The `prompt` field of Gemini's answer, or the reason there is none (a blocked or empty answer)."""
    fields, why = read_answer(response)
    text = " ".join(str(fields.get("prompt") or "").split()) if not why else ""
    if why or not text:
        raise ServiceError(f"Gemini gave no prompt: {why or 'the prompt field was empty'}. Reword the idea and "
                           "press Refine again (nothing is cached for a refusal).")
    return text


def finish(result: RefinedPrompt, text: str, trigger_word: str) -> RefinedPrompt:
    """Drops sentences that name an identity trait, and puts the trigger word first."""
    kept, result.removed = without_identity_traits(text)
    if not kept:
        raise ServiceError("Gemini's prompt described only the person's fixed traits (eye colour, face shape…), "
                           "which the LoRA carries; reword the idea around the scene, clothing and light.")
    result.prompt = put_trigger_first(kept, trigger_word)
    return result


def without_identity_traits(text: str, traits: list[str] | None = None) -> tuple[str, list[str]]:
    """(the text without the sentences that name a forbidden trait, those sentences)."""
    traits = parse_traits(None) if traits is None else traits
    pattern = re.compile("|".join(rf"(?<![\w-]){re.escape(t)}(?![\w-])" for t in traits), re.IGNORECASE)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]
    kept = [s for s in sentences if not pattern.search(s)]
    removed = [s for s in sentences if pattern.search(s)]
    return " ".join(kept), removed
