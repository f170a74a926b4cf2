"""Replicate through its official SDK: the client, clear errors, safe retries, and raw reads of what it drops.

Shared by everything in the pack that talks to Replicate (trainings, FLUX predictions):

- `connect(user_dir)` builds a `replicate.Client` from the token in the environment or the user dir; the base
  URL is the SDK's own `REPLICATE_BASE_URL` (how tests point it at a local fake).
- `ReplicateApi.call(doing, fn, ...)` runs an SDK call and turns every failure into an `InputError` /
  `ServiceError` whose message says what to do — an answer that is not Replicate's (an HTML page from a proxy,
  a body the SDK's models refuse) included. It retries only what cannot spend money twice: a 429 is a
  refusal (nothing was created), so any call may be retried after it; other failures are retried only for
  calls the caller marks `idempotent` (GETs, a cancel, a file upload). A POST that may have created a
  paid job is never repeated blindly: an `Unconfirmed` error (no answer, a 5xx, an answer that is not the
  API's) tells the caller to look for what it may have created first; any other error is a refusal.
- `get_json(path)` / `post_json(path)` are raw calls through the same authenticated client, for fields the
  SDK's models drop (`metrics.predict_time`) or refuse (`status: "aborted"` fails the SDK's pydantic model).
- `download(url, fileobj, max_bytes)` streams a file from Replicate's own hosts with the Authorization header
  Replicate wants; a redirect is followed only to Replicate's hosts and is never saved as the file.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx
import replicate
from replicate.exceptions import ReplicateError

from ..money.credentials import redact, replicate_token
from ..errors import InputError, LikenessError, ServiceError

log = logging.getLogger("likeness.replicate")
T = TypeVar("T")

DEFAULT_BASE_URL = "https://api.replicate.com"
BILLING_URL = "https://replicate.com/account/billing#billing"
TOKENS_URL = "https://replicate.com/account/api-tokens"
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
REPLICATE_HOSTS = ("replicate.delivery", "replicate.com")    # and their subdomains
MAX_REDIRECTS = 3
_RESETS_IN = re.compile(r"(?:resets in|available in)\s*~?\s*(\d+(?:\.\d+)?)\s*s", re.IGNORECASE)


def connect(user_dir: str | Path | None, *, retry_wait_cap: float | None = None,
            sleep: Callable[[float], None] = time.sleep) -> ReplicateApi:
    """A client for the user's Replicate account (token from the environment or the user dir)."""
    token = replicate_token(user_dir)
    client = replicate.Client(api_token=token, timeout=httpx.Timeout(10.0, read=60.0, write=60.0, pool=10.0))
    cap = retry_wait_cap if retry_wait_cap is not None else float(
        os.environ.get("LIKENESS_REPLICATE_RETRY_CAP_S", "60"))
    return ReplicateApi(client, user_dir=user_dir, retry_wait_cap=cap, sleep=sleep)


def base_url() -> str:
    return (os.environ.get("REPLICATE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def web_url(path: str) -> str:
    """A replicate.com page for `path` (e.g. "p/<id>"); against a fake, its own base URL."""
    root = base_url()
    return f"https://replicate.com/{path}" if root == DEFAULT_BASE_URL else f"{root}/{path}"


def is_replicate_host(url: str, api_base: str | None = None) -> bool:
    """True for Replicate's own hosts (replicate.delivery, replicate.com and subdomains, over https) and the
    API base URL's host (the client's, else the configured one): the only places the API token may be sent."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if any(host == h or host.endswith("." + h) for h in REPLICATE_HOSTS):
        return parts.scheme == "https"
    own = urlsplit(api_base or base_url())
    return (parts.scheme, host, parts.port) == (own.scheme, (own.hostname or "").lower(), own.port)


class Unconfirmed(ServiceError):
    """Replicate gave no usable answer (no answer at all, a 5xx, a page that is not its API's): a POST may
    have been carried out anyway, so look for what it may have created before sending it again."""


class ReplicateApi:
    """The SDK client plus the pack's error mapping and retry rules."""

    def __init__(self, client: replicate.Client, *, user_dir: str | Path | None = None,
                 attempts: int = 4, retry_wait_cap: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.sdk = client
        self.user_dir = user_dir
        self.attempts = attempts
        self.retry_wait_cap = retry_wait_cap
        self.sleep = sleep

    # --- calls through the SDK -------------------------------------------------------------
    def call(self, doing: str, fn: Callable[..., T], *args: Any, idempotent: bool = False,
             not_found: str | None = None, missing_ok: bool = False, **kwargs: Any) -> T | None:
        """`fn(*args, **kwargs)` with errors explained; retried after a 429, and after 5xx/network errors
        only when `idempotent`. `not_found` is the message for a 404; `missing_ok` returns None instead."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, **kwargs)
            except ReplicateError as exc:
                if missing_ok and exc.status == 404:
                    return None
                retry = exc.status == 429 or (idempotent and exc.status in TRANSIENT_STATUSES)
                if not retry or attempt == self.attempts:
                    raise self.explain(exc, doing, not_found=not_found) from None
                wait = self._retry_wait(attempt, exc.detail)
            except httpx.TransportError as exc:
                if not idempotent or attempt == self.attempts:
                    raise self.explain(exc, doing) from None
                wait = self._retry_wait(attempt, None)
            except (LikenessError, OSError):
                raise                   # the pack's own errors, and this machine's (a full disk): not Replicate's
            except Exception as exc:  # noqa: BLE001 - a page that is not the API's answer, a body the SDK refuses
                if not idempotent or attempt == self.attempts:
                    raise self.explain(exc, doing) from None
                wait = self._retry_wait(attempt, None)
            log.info("Replicate: retrying %s in %.1f s (attempt %d of %d)", doing, wait, attempt + 1,
                     self.attempts)
            self.sleep(wait)
        raise AssertionError("unreachable")

    def is_own_host(self, url: str) -> bool:
        """Whether `url` is on Replicate's own hosts (or this client's API host): may it get the token?"""
        return is_replicate_host(url, str(self.sdk._client.base_url))

    # --- raw HTTP through the SDK's authenticated client ---------------------------------
    def get_json(self, path: str, doing: str, *, not_found: str | None = None,
                 missing_ok: bool = False) -> dict | None:
        """GET `path` (relative to the base URL) and return the JSON as the API sent it."""
        return self.call(doing, lambda: json_answer(self.sdk._request("GET", path)), idempotent=True,
                         not_found=not_found, missing_ok=missing_ok)

    def post_json(self, path: str, doing: str, *, idempotent: bool = False,
                  not_found: str | None = None) -> dict | None:
        """POST `path` with no body (a cancel) and return the JSON as the API sent it."""
        return self.call(doing, lambda: json_answer(self.sdk._request("POST", path)), idempotent=idempotent,
                         not_found=not_found)

    def download(self, url: str, out: IO[bytes], *, max_bytes: int, doing: str,
                 too_big: str = "more than a LoRA can be") -> int:
        """Stream `url` into `out` (bearer token attached, as Replicate's file URLs require);
        refuses more than `max_bytes` (`too_big` says why that is wrong). Returns the byte count.
        Only Replicate's own hosts are asked (the SDK client sends the token to whatever host a URL names);
        a redirect is followed only to them, and its body is never taken for the file."""
        if not self.is_own_host(url):
            raise ServiceError(f"{doing}: the file is at {urlsplit(url).hostname or url[:60]}, which is not one of "
                               "Replicate's hosts; the pack sends your token only to Replicate, so it did not "
                               "download it. Download it from the job's page on replicate.com.")

        def fetch() -> int:
            out.seek(0)
            out.truncate()
            written, here = 0, url
            for _ in range(MAX_REDIRECTS + 1):
                with self.sdk._client.stream("GET", here, timeout=httpx.Timeout(30.0, read=120.0)) as resp:
                    if resp.is_redirect:
                        here = self._redirect_target(resp, here, doing)
                        continue
                    if resp.status_code >= 400:
                        resp.read()
                        raise ReplicateError.from_response(resp)
                    if resp.status_code != 200:
                        raise ServiceError(f"{doing}: Replicate answered {resp.status_code} instead of the file; "
                                           "nothing was saved. Queue again in a few minutes.")
                    for chunk in resp.iter_bytes(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ServiceError(f"{doing}: the file is larger than {max_bytes / (1 << 20):.1f} MB, "
                                               f"{too_big}; refused and deleted")
                        out.write(chunk)
                    return written
            raise ServiceError(f"{doing}: more than {MAX_REDIRECTS} redirects; nothing was saved.")
        return self.call(doing, fetch, idempotent=True)

    def _redirect_target(self, resp: httpx.Response, here: str, doing: str) -> str:
        """Where a 3xx points, if it is Replicate's own host; otherwise a refusal that names it."""
        target = urljoin(here, resp.headers.get("Location", ""))
        if resp.headers.get("Location") and self.is_own_host(target):
            return target
        raise ServiceError(f"{doing}: Replicate's address answered with a redirect ({resp.status_code}) to "
                           f"{urlsplit(target).hostname or 'nowhere'} instead of the file (a proxy or a sign-in "
                           "page between you and Replicate?); nothing was saved. Check the network, then queue "
                           "again (nothing is paid again).")

    # --- errors ---------------------------------------------------------------------------
    def explain(self, exc: BaseException, doing: str, *, not_found: str | None = None) -> LikenessError:
        """The pack's error for a failed Replicate call: what happened and what to do."""
        if isinstance(exc, ReplicateError):
            return self._explain_status(exc, doing, not_found)
        if isinstance(exc, httpx.TransportError):
            return Unconfirmed(f"{doing}: could not reach Replicate at {base_url()} ({type(exc).__name__}: "
                               f"{self._redact(str(exc)) or 'no answer'}). Check the network and queue again.")
        if isinstance(exc, LikenessError):
            return exc
        if isinstance(exc, NotAnApiAnswer) or isinstance(exc, json.JSONDecodeError):
            return Unconfirmed(f"{doing}: what came back is not an answer from Replicate's API (a web page: a "
                               f"proxy, a captive portal or a firewall between you and {base_url()}?). Check the "
                               "network and queue again.")
        return Unconfirmed(f"{doing}: Replicate answered something this version of the pack does not "
                           f"understand ({type(exc).__name__}: {self._redact(str(exc))[:300]}). Queue again; if "
                           "it persists, update the pack.")

    def _explain_status(self, exc: ReplicateError, doing: str, not_found: str | None) -> LikenessError:
        detail = self._redact((exc.detail or exc.title or "").strip())
        status = exc.status
        if status == 401:
            return InputError(f"{doing}: Replicate refused the API token ({detail or 'unauthenticated'}). "
                              f"Create a token at {TOKENS_URL} and set REPLICATE_API_TOKEN (or the token file "
                              "in the pack's user folder), then restart ComfyUI.")
        if status == 402:
            return ServiceError(f"{doing}: your Replicate account has no credit left. Add credit at "
                                f"{BILLING_URL}, wait a few minutes, then queue again.")
        if status == 403:
            return InputError(f"{doing}: Replicate says this token may not do that ({detail}). Check the "
                              "owner name: it must be your account or an organisation you belong to.")
        if status == 404:
            return InputError(f"{doing}: {not_found or 'Replicate could not find it'} ({detail or 'not found'}).")
        if status == 409:
            return InputError(f"{doing}: {detail or 'it already exists'}.")
        if status == 413:
            return InputError(f"{doing}: the file is too large for Replicate ({detail or 'limit 100 MB'}).")
        if status == 422:
            return InputError(f"{doing}: Replicate refused the inputs: {detail or 'validation failed'}")
        if status == 429:
            return ServiceError(f"{doing}: Replicate is throttling requests ({detail or 'rate limited'}). "
                                "Wait a minute and queue again.")
        if status is not None and status >= 500:
            return Unconfirmed(f"{doing}: Replicate had a server error ({status}{': ' + detail if detail else ''}"
                                "). Try again in a few minutes; status at https://www.replicatestatus.com")
        return ServiceError(f"{doing}: Replicate answered {status}: {detail or 'no details'}")

    def _retry_wait(self, attempt: int, detail: str | None) -> float:
        """Seconds before the next attempt: what a 429's text says ("resets in ~5s"), else backoff."""
        match = _RESETS_IN.search(detail or "")
        wait = float(match.group(1)) if match else 2.0 ** (attempt - 1)
        return min(max(wait, 0.1), self.retry_wait_cap)

    def _redact(self, text: str) -> str:
        return redact(text, self.user_dir)


def is_status(exc: BaseException, *statuses: int) -> bool:
    return isinstance(exc, ReplicateError) and exc.status in statuses


class NotAnApiAnswer(ValueError):
    """A 2xx whose body is not JSON (an HTML page from a proxy)."""


def json_answer(resp: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; `NotAnApiAnswer` when it is something else (a proxy's page)."""
    try:
        return resp.json()
    except ValueError:
        raise NotAnApiAnswer(resp.headers.get("Content-Type", "no content type")) from None
