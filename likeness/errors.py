"""Errors the pack raises: each message tells the user what to do next."""
import re

# "…already exists.." — a service's own sentence (ending in a full stop) put where a message adds one. Only a
# stop after a word or a bracket and before a space or the end is collapsed: '..' in a path and "…" stay.
_DOUBLED_STOP = re.compile(r"(?<=[\w)\]\"'’])\.\.(?=\s|$)")


def tidy(message: str) -> str:
    """The message with each doubled full stop made single."""
    return _DOUBLED_STOP.sub(".", message)


class LikenessError(Exception):
    """Base class; ComfyUI shows the message on the node that raised it."""

    def __init__(self, message: object = "", *args: object):
        super().__init__(tidy(message) if isinstance(message, str) else message, *args)


class InputError(LikenessError):
    """A node input or a file the user pointed at cannot be used as it is."""


class ServiceError(LikenessError):
    """A cloud service (Gemini, Replicate) refused or failed a request."""


class BudgetError(LikenessError):
    """A paid call would exceed the user's monthly budget; nothing was spent."""


# ComfyUI titles an error with the class's module path ("comfyui-likeness.likeness.errors.InputError");
# users should read "likeness.InputError: …" instead.
for _cls in (LikenessError, InputError, ServiceError, BudgetError):
    _cls.__module__ = "likeness"
