"""One client factory for the Gemini API (key) and Vertex AI (project + location + ADC), against the fake."""
from __future__ import annotations

import json
import urllib.request

import pytest

from conftest import CANARY_KEY
from likeness.errors import InputError
from likeness.cloud.gemini_client import describe_backend, make_client


def ask(client, model="gemini-3.8-flash"):
    return client.models.generate_content(model=model, contents="Say hello.")


def test_gemini_api_key_from_the_environment_and_base_url_from_the_sdk_variable(gemini_env, tmp_path):
    client = make_client(tmp_path)
    assert ask(client).text
    (call,) = gemini_env.generate_calls()
    assert call.backend == "gemini" and call.path == "/v1beta/models/gemini-3.8-flash:generateContent"
    assert call.api_key == CANARY_KEY and call.bearer is None


def test_gemini_api_key_from_the_key_file_in_the_user_folder(gemini_env, tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    gemini_env.api_keys = {"AIza" "FROMTHEFILE0000000000000000000000000"}
    (tmp_path / "gemini_api_key").write_text("AIza" "FROMTHEFILE0000000000000000000000000\n")
    client = make_client(tmp_path)
    assert ask(client).text
    assert gemini_env.generate_calls()[0].api_key == "AIza" "FROMTHEFILE0000000000000000000000000"


def test_no_key_and_no_vertex_project_says_where_to_put_a_key(gemini_env, tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(InputError) as err:
        make_client(tmp_path)
    assert "GEMINI_API_KEY" in str(err.value) and str(tmp_path / "gemini_api_key") in str(err.value)


def test_vertex_ai_uses_project_location_and_application_default_credentials(gemini_env, tmp_path):
    client = make_client(tmp_path, "likeness-test", "europe-west4")
    assert ask(client).text
    oauth = [r for r in gemini_env.requests if r.operation == "token"]
    (call,) = gemini_env.generate_calls()
    assert len(oauth) == 1          # google-auth exchanged the service-account key at the fake's token_uri
    assert call.backend == "vertex"
    assert call.path == ("/v1beta1/projects/likeness-test/locations/europe-west4/publishers/google/models/"
                         "gemini-3.8-flash:generateContent")
    assert call.bearer == "fake-access-token" and call.api_key is None   # the Gemini key is not sent to Vertex
    assert describe_backend("likeness-test", "europe-west4") == "Vertex AI (project likeness-test, europe-west4)"


def test_the_fake_speaks_v1_and_snake_case_too(gemini_env):
    body = {"contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": "iVBORw0K"}},
                                                    {"text": "hi"}]}],
            "generation_config": {"response_mime_type": "application/json",
                                  "response_json_schema": {"type": "object",
                                                           "properties": {"clothing": {"type": "string"}}}}}
    req = urllib.request.Request(f"{gemini_env.url}/v1/models/gemini-3.8-flash:generateContent",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"x-goog-api-key": CANARY_KEY, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as response:
        answer = json.load(response)
    assert set(json.loads(answer["candidates"][0]["content"]["parts"][0]["text"])) == {"clothing"}
    (call,) = gemini_env.generate_calls()
    assert call.version == "v1" and call.images[0][0] == "image/png" and call.texts == ["hi"]
