"""Whose prompt is running, and who sends a request: ComfyUI's users under --multi-user.

With --multi-user ComfyUI keeps one profile per user (the canvas sends a `Comfy-User` header with every
request) but runs all prompts in one queue, and a queued prompt does not carry its user. The pack notes who
queued each prompt (a middleware on POST /prompt), so that what a node records — seed-journal entries,
training statuses — belongs to that user, the pack's routes show each user only their own, and the pack's
live events go only to the page that queued the prompt, not to every open page.

Without --multi-user there is one user: nothing is filtered and events go where they always went.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict

from aiohttp import web
from comfy.cli_args import args

from ..likeness.generation.seed_journal import set_owner_lookup

log = logging.getLogger("likeness")
PROMPT_PATHS = ("/prompt", "/api/prompt")
_REMEMBERED = 1000                          # prompts whose user is remembered (the queue rarely holds more)
_queued_by: OrderedDict[str, str] = OrderedDict()


def multi_user() -> bool:
    return bool(getattr(args, "multi_user", False))


def install(server) -> None:
    """Notes who queues each prompt (custom nodes load before the server starts, so the middleware list is
    still open), and lets the seed journal stamp each new entry with the user of the running prompt."""
    set_owner_lookup(prompt_user)
    if getattr(server, "app", None) is not None and not server.app.frozen:
        server.app.middlewares.append(_remember_who_queued)
    elif multi_user():
        log.warning("likeness: could not watch POST /prompt; under --multi-user the pack's journal and training "
                    "statuses will not know which user queued a prompt")


@web.middleware
async def _remember_who_queued(request: web.Request, handler):
    response = await handler(request)
    if multi_user() and request.method == "POST" and request.path in PROMPT_PATHS and response.status == 200:
        try:
            prompt_id = json.loads(response.text)["prompt_id"]
        except (AttributeError, TypeError, ValueError, KeyError):
            return response
        _queued_by[str(prompt_id)] = _known_user(request) or ""     # queued already: never refuse it here
        while len(_queued_by) > _REMEMBERED:
            _queued_by.popitem(last=False)
    return response


def request_user(request: web.Request) -> str:
    """The ComfyUI user a request comes from: "" without --multi-user; 403 for a user ComfyUI does not know
    (as its own /userdata routes answer)."""
    if not multi_user():
        return ""
    user = _known_user(request)
    if user is None:
        raise web.HTTPForbidden(text="Unknown user: choose a user in ComfyUI's user menu")
    return user


def _known_user(request: web.Request) -> str | None:
    from server import PromptServer

    try:
        return PromptServer.instance.user_manager.get_request_user_id(request)
    except KeyError:
        return None


def prompt_user() -> str:
    """The user who queued the running prompt: "" without --multi-user (or for a prompt queued before the
    pack was loaded)."""
    if not multi_user():
        return ""
    from server import PromptServer

    return _queued_by.get(str(getattr(PromptServer.instance, "last_prompt_id", "") or ""), "")


def prompt_client() -> str | None:
    """Where a node's live events go: under --multi-user the page that queued the running prompt only (None
    when it queued without a client id: then nothing is sent); otherwise None, every page, as before."""
    if not multi_user():
        return None
    from server import PromptServer

    return PromptServer.instance.client_id


def may_send() -> bool:
    """False under --multi-user when the prompt has no page to send to (a broadcast would reach every user)."""
    return not multi_user() or prompt_client() is not None
