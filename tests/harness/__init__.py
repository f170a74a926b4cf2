"""Test harness: a real ComfyUI server, a client that talks to it as the canvas does, a real browser."""
