"""Errors the pack raises: each message tells the user what to do next."""


class LikenessError(Exception):
    """Base class; ComfyUI shows the message on the node that raised it."""


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
