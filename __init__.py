"""Likeness: ComfyUI node pack for personal FLUX.1-dev LoRAs (V3 entry point only)."""
from .nodes import comfy_entrypoint

WEB_DIRECTORY = "./web"

__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
