"""The pack's library: plain Python that knows nothing of ComfyUI (never import `comfy` here)."""
