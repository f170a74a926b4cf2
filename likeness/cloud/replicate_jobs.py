"""What trainings and predictions share on Replicate: checking inputs against a version's own schema before
paying, and following a job until it ends — polling politely, noticing an interrupt while waiting."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import InputError, ServiceError
from ..money.credentials import redact
from ..progress import Progress
from .replicate_client import ReplicateApi, connect, web_url

log = logging.getLogger("likeness")

TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})


@dataclass(frozen=True)
class PollSettings:
    interval: float = 5.0                # seconds between status checks (env LIKENESS_REPLICATE_POLL_S)
    check_every: float = 0.25            # how often an interrupt is noticed while waiting
    max_errors: int = 8                  # consecutive failed checks before giving up (the job goes on)

    @classmethod
    def from_env(cls) -> PollSettings:
        interval = float(os.environ.get("LIKENESS_REPLICATE_POLL_S", cls.interval))
        return cls(interval=interval, check_every=min(cls.check_every, interval))


class ReplicateRun:
    """What a training run and a generation run share: a client connected on first use, progress text, and
    canceling the paid job when the user interrupts."""
    user_dir: Path
    progress: Progress
    _api: ReplicateApi | None

    @property
    def api(self) -> ReplicateApi:
        if self._api is None:
            self._api = connect(self.user_dir)
        return self._api

    def say(self, text: str) -> None:
        text = redact(text, self.user_dir)          # the log too: no token, no signed URL's signature
        log.info("Likeness: %s", text)
        if hasattr(self.progress, "text"):
            self.progress.text(text)

    def cancel_job(self, kind: str, job_id: str) -> dict:
        """Cancels the "training" or "prediction" `job_id` on Replicate; its JSON after canceling. (A raw POST:
        the SDK's models refuse the answer when Replicate had just aborted the job.)"""
        try:
            self.api.post_json(f"/v1/{kind}s/{job_id}/cancel", f"Canceling the {kind} on Replicate",
                               idempotent=True)
        except (ServiceError, InputError) as exc:
            raise ServiceError(f"Interrupted, but canceling {kind} {job_id} failed ({exc}). Cancel it on "
                               f"{web_url(f'p/{job_id}')} so it stops costing money.") from None
        return self.api.get_json(f"/v1/{kind}s/{job_id}", f"Reading the canceled {kind}") or {}


def find_job(api: ReplicateApi, kind: str, matches: Callable[[dict], bool], *, since: float = 0.0,
             max_pages: int = 20) -> dict | None:
    """The newest training or prediction (`kind`) on the account for which `matches(item)` holds, looked for
    page by page (Replicate lists 100 a page, newest first) until the pages reach jobs created before `since`
    (epoch seconds; 0 = no limit) or `max_pages` were read. None when there is none."""
    path = f"/v1/{kind}s"
    for _ in range(max_pages):
        page = api.get_json(path, f"Looking for the {kind} on Replicate") or {}
        items = page.get("results") or []
        for item in items:
            if matches(item):
                log.info("Likeness: found %s %s on Replicate", kind, item.get("id"))
                return item
        older = [epoch(item.get("created_at")) for item in items]
        if not page.get("next") or (since and older and max(older) < since):
            return None
        path = _relative_path(page["next"])
    return None


def epoch(stamp: str | None) -> float:
    """Seconds since the epoch of one of Replicate's ISO 8601 times (0 when missing or unreadable)."""
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _relative_path(url: str) -> str:
    """A `next` link as the SDK's client wants it: the path and query, against the configured base URL."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


@dataclass
class JobFollower:
    """Polls `GET path` until the job's status is terminal.

    `seen(data)` shows each answer; `cancel()` runs when the user interrupts (it cancels the job on Replicate
    and raises). After `poll.max_errors` failed checks in a row it gives up with `lost_hint`: the job itself
    goes on at Replicate, and queuing again picks it up.
    """
    api: ReplicateApi
    poll: PollSettings
    clock: Clock
    progress: Progress

    def follow(self, path: str, what: str, not_found: str, lost_hint: str,
               seen: Callable[[dict], None], cancel: Callable[[], None]) -> dict:
        errors = 0
        while True:
            if self.progress.interrupted():
                cancel()
            try:
                data = self.api.get_json(path, what, not_found=not_found)
            except ServiceError as exc:
                errors += 1
                if errors >= self.poll.max_errors:
                    raise ServiceError(f"{exc} {lost_hint}") from None
                log.warning("Likeness: %s failed (%s); trying again", what.lower(), exc)
            else:
                errors = 0
                seen(data)
                if data.get("status") in TERMINAL:
                    return data
            self.wait(self.poll.interval, cancel)

    def wait(self, seconds: float, cancel: Callable[[], None]) -> None:
        deadline = self.clock.monotonic() + seconds
        while (left := deadline - self.clock.monotonic()) > 0:
            if self.progress.interrupted():
                cancel()
            self.clock.sleep(min(self.poll.check_every, left))


def schema_problems(inputs: dict[str, Any], schema: dict, owner: str, optional: tuple[str, ...] = ()) -> list[str]:
    """Every input against a version's own schema (names, types, ranges, choices, secrets): what it would
    refuse, one line each. `schema` carries its `_components` for Cog's `$ref` choices."""
    props, components = schema.get("properties", {}), schema.get("_components", {})
    problems = []
    for key, value in inputs.items():
        prop = props.get(key)
        if prop is None:
            problems.append(f"{key}: not an input of {owner} (its inputs: {', '.join(sorted(props))})")
            continue
        prop = resolve_ref(prop, components)
        if prop.get("x-cog-secret") or prop.get("format") == "password":
            problems.append(f"{key}: a secret; secrets never go in a widget")
            continue
        problem = check_value(value, prop)
        if problem:
            problems.append(f"{key}: {problem}")
    missing = [k for k in schema.get("required", []) if k not in inputs and k not in optional]
    return problems + [f"{k}: required by {owner}" for k in missing]


def resolve_ref(prop: dict, components: dict) -> dict:
    """Cog writes choices as {"allOf": [{"$ref": "#/components/schemas/<name>"}]}: merge the target in."""
    merged = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            merged = {**components.get(ref.rsplit("/", 1)[1], {}), **merged}
        else:
            merged = {**part, **merged}
    return merged


def check_value(value: Any, prop: dict) -> str:
    """What is wrong with `value` for the schema property `prop` ("" when nothing)."""
    kind = prop.get("type")
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        if not (isinstance(value, float) and value.is_integer()):
            return f"{value!r} is not a whole number"
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"{value!r} is not a number"
    if kind == "boolean" and not isinstance(value, bool):
        return f"{value!r} is not true or false"
    if kind == "string" and not isinstance(value, str):
        return f"{value!r} is not text"
    if kind in ("integer", "number") and not isinstance(value, bool) and isinstance(value, (int, float)):
        if "minimum" in prop and value < prop["minimum"]:
            return f"{value} is below the minimum {prop['minimum']}"
        if "maximum" in prop and value > prop["maximum"]:
            return f"{value} is above the maximum {prop['maximum']}"
        if "exclusiveMinimum" in prop and value <= prop["exclusiveMinimum"]:
            return f"{value} must be above {prop['exclusiveMinimum']}"
        if "exclusiveMaximum" in prop and value >= prop["exclusiveMaximum"]:
            return f"{value} must be below {prop['exclusiveMaximum']}"
    if "enum" in prop and value not in prop["enum"]:
        return f"{value!r} is not one of {', '.join(map(str, prop['enum']))}"
    return ""
