"""A test-only ComfyUI pack: a tiny FLUX of the real architecture, a tiny CLIP, fixtures and probes.

Linked into the test server's custom_nodes by tests/harness. `lora_files` is pure (no ComfyUI), so tests
and benchmarks import it directly; everything that needs ComfyUI is imported only by `comfy_entrypoint`.
"""


async def comfy_entrypoint():
    from .nodes import TestPackExtension, write_taef1_fixtures

    write_taef1_fixtures()
    return TestPackExtension()
