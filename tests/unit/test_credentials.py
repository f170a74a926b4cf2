from __future__ import annotations

import pytest

from likeness.credentials import gemini_key, redact, replicate_token
from likeness.errors import InputError

TOKEN = "r8_" "abcdefghijklmnopqrstuvwxyz0123456789"


def test_token_from_env_wins_over_file(tmp_path, monkeypatch):
    (tmp_path / "replicate_api_token").write_text("r8_fromfile000000000000000000000\n")
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    assert replicate_token(tmp_path) == TOKEN
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    assert replicate_token(tmp_path) == "r8_" "fromfile000000000000000000000"


def test_missing_token_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    with pytest.raises(InputError, match="REPLICATE_API_TOKEN") as err:
        replicate_token(tmp_path)
    assert str(tmp_path / "replicate_api_token") in str(err.value)


def test_gemini_key_env_names(tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza" "SyGOOGLEKEY0000000000000000000000000")
    assert gemini_key(tmp_path) == "AIza" "SyGOOGLEKEY0000000000000000000000000"
    monkeypatch.delenv("GOOGLE_API_KEY")
    assert gemini_key(tmp_path) is None


def test_redact_known_values_and_key_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN", "plain-secret-value")
    text = "GET https://x/?key=AIza" "SyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA failed; auth plain-secret-value; " + TOKEN
    cleaned = redact(text, tmp_path)
    assert "plain-secret-value" not in cleaned and "AIza" not in cleaned and "r8_" not in cleaned
    assert cleaned.count("***") == 3
