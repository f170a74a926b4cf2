"""May this request write: the checks every POST route of the pack shares.

- Same origin. A browser names the page that sent a request (`Origin`, and `Sec-Fetch-Site` on modern ones).
  ComfyUI refuses a foreign Origin only while it listens on a loopback address; a server opened to the phone
  with `--listen` has no such check, so any web page the user visits could post to it. A write whose Origin is
  not this server's own (or the one the user let in with `--enable-cors-header`) is refused here (403). Tools
  that send neither header (curl, scripts) are not browsers a foreign page can drive, and pass.
- JSON only. A form or a `text/plain` post is the one kind of cross-site request a browser sends without asking
  the server first; a write must be `application/json` (415 otherwise), and not larger than it needs to be.

Who the request speaks for is `users.request_user`.
"""
from __future__ import annotations

import json
import urllib.parse
from typing import Any

from aiohttp import web
from comfy.cli_args import args

MAX_BODY_BYTES = 256 * 1024
_PORTS = {"http": 80, "https": 443}


async def json_body(request: web.Request, shape: str = "", max_bytes: int = MAX_BODY_BYTES) -> Any:
    """The request's JSON, after the same-origin and JSON-only checks (403, 415, 413 or 400 otherwise);
    `shape` tells the sender what the body should be."""
    expected = f": {shape}" if shape else ""
    if not same_origin(request):
        raise web.HTTPForbidden(text="Refused: this request comes from a page of another site")
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text=f"Send JSON (Content-Type: application/json){expected}")
    if request.content_length is not None and request.content_length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=request.content_length)
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_size=max_bytes, actual_size=len(raw))
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):   # RecursionError: JSON nested thousands deep
        raise web.HTTPBadRequest(text=f"The body must be JSON{expected}") from None


def same_origin(request: web.Request) -> bool:
    """False when the browser says the request comes from another origin (Sec-Fetch-Site, or an Origin whose
    host and port differ from the Host asked for)."""
    origin = request.headers.get("Origin")
    allowed = getattr(args, "enable_cors_header", None)    # an origin the user let in when starting ComfyUI
    if allowed and allowed != "*" and origin and origin.rstrip("/") == allowed.rstrip("/"):
        return True
    if request.headers.get("Sec-Fetch-Site", "same-origin").lower() not in ("same-origin", "none"):
        return False
    if origin is None:
        return True
    try:
        parsed, host = urllib.parse.urlsplit(origin), urllib.parse.urlsplit(f"//{request.host}")
        origin_port, host_port = parsed.port or _PORTS.get(parsed.scheme), host.port or _PORTS.get(request.scheme)
    except ValueError:                                 # a port that is not a number
        return False
    if not parsed.hostname:
        return False                                   # "null": a sandboxed frame or a file:// page
    return parsed.hostname.lower() == (host.hostname or "").lower() and origin_port == host_port
