"""The one place a Gemini client is made: the Gemini API with a key, or Vertex AI with a project, a location
and application-default credentials (as the seed used). Both serve the same `generate_content` calls.

The base URL is the SDK's own: `GOOGLE_GEMINI_BASE_URL` (Gemini API) or `GOOGLE_VERTEX_BASE_URL` (Vertex AI),
so a proxy or a local test server is chosen in the environment, never in a widget.
"""
from __future__ import annotations

from pathlib import Path

from ..money.credentials import GEMINI_FILE, gemini_key, redact
from ..errors import InputError

GEMINI_API_VERSION = "v1beta"
VERTEX_API_VERSION = "v1beta1"
REQUEST_TIMEOUT_MS = 120_000


def make_client(user_dir: str | Path | None, vertex_project: str = "", vertex_location: str = ""):
    """A `google.genai.Client`; keep it referenced while its requests run (the SDK closes it when collected)."""
    from google import genai
    from google.genai import types

    if vertex_project.strip():
        http = types.HttpOptions(api_version=VERTEX_API_VERSION, timeout=REQUEST_TIMEOUT_MS)
        try:
            return genai.Client(vertexai=True, project=vertex_project.strip(),
                                location=vertex_location.strip() or "global", http_options=http)
        except Exception as exc:  # noqa: BLE001 - google-auth raises several types; all mean the same to the user
            raise InputError(
                f"Vertex AI could not start for project {vertex_project!r}: {redact(str(exc), user_dir)}. Set up "
                "application-default credentials (`gcloud auth application-default login`, or "
                "GOOGLE_APPLICATION_CREDENTIALS pointing at a service-account key) for the user that starts "
                "ComfyUI, or clear vertex_project to use a Gemini API key.") from None
    key = gemini_key(user_dir)
    if not key:
        hint = Path(user_dir) / GEMINI_FILE if user_dir else f"<ComfyUI user dir>/likeness/{GEMINI_FILE}"
        raise InputError(
            "No Gemini API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment that starts ComfyUI, "
            f"or put the key alone in {hint}; or fill vertex_project to use Vertex AI. (Keys never go in a "
            "widget: widgets are saved into workflows and image metadata.)")
    http = types.HttpOptions(api_version=GEMINI_API_VERSION, timeout=REQUEST_TIMEOUT_MS)
    return genai.Client(api_key=key, http_options=http)


def describe_backend(vertex_project: str = "", vertex_location: str = "") -> str:
    if vertex_project.strip():
        return f"Vertex AI (project {vertex_project.strip()}, {vertex_location.strip() or 'global'})"
    return "the Gemini API"
