"""Likeness: ComfyUI node pack for personal FLUX.1-dev LoRAs (V3 entry point only)."""
import logging
import os
import re
import sys

WEB_DIRECTORY = "./web"
OLDEST_COMFYUI = (0, 3, 75)     # the oldest ComfyUI the pack is tested on (README: "Tested ComfyUI versions")


async def comfy_entrypoint():
    refusal = _comfyui_too_old()
    if refusal:
        raise RuntimeError(refusal)   # ComfyUI logs it ("Error while calling comfy_entrypoint …") and goes on
    # Imported here, not at module level: ComfyUI calls this inside its host, while tools and pytest may
    # import the package without one.
    from .nodes import LikenessExtension

    return LikenessExtension()


def _comfyui_too_old() -> str:
    """What to tell the user when the ComfyUI running this pack is older than the oldest one tested; else ""."""
    if "folder_paths" not in sys.modules or os.environ.get("LIKENESS_SKIP_VERSION_CHECK"):
        return ""                     # not inside ComfyUI (tools, tests), or the user chose to try anyway
    try:
        from comfyui_version import __version__ as version
    except ImportError:
        version = "unknown (no comfyui_version.py)"
    numbers = tuple(int(n) for n in re.findall(r"\d+", str(version))[:3])
    if len(numbers) == 3 and numbers >= OLDEST_COMFYUI:
        return ""
    oldest = ".".join(map(str, OLDEST_COMFYUI))
    return (f"Likeness needs ComfyUI {oldest} or newer, and this ComfyUI is {version}: its nodes are not loaded. "
            f"Update ComfyUI (git pull, or the Manager's 'Update ComfyUI'), then restart it. "
            f"To try it on this version anyway, start ComfyUI with LIKENESS_SKIP_VERSION_CHECK=1.")


# Logged when ComfyUI imports the pack, so even a ComfyUI too old to call comfy_entrypoint says why.
if _comfyui_too_old():
    logging.getLogger("likeness").error(_comfyui_too_old())

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
