"""Likeness: ComfyUI node pack for personal FLUX.1-dev LoRAs (V3 entry point only)."""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    # Imported here, not at module level: ComfyUI calls this inside its host, while tools and pytest may
    # import the package without one.
    from .nodes import LikenessExtension

    return LikenessExtension()


__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
