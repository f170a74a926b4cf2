from __future__ import annotations

import pytest

from likeness.money.credentials import gemini_key, redact, replicate_token
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


def test_third_party_tokens_come_from_the_environment_or_key_files_and_are_redacted(tmp_path, monkeypatch):
    """Guards issue 17 §13: HF_TOKEN, CIVITAI_API_TOKEN and WANDB_API_KEY are read as the Replicate token is
    (environment first, then a key file in the user folder), and every message the pack shows hides them."""
    from likeness.money.credentials import third_party_token

    for name in ("HF_TOKEN", "CIVITAI_API_TOKEN", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    hf, civitai, wandb = "hf_" "abcdefghijklmnopqrstuvwxyz012345", "c1v1ta1" "0123456789abcdef0123456789", \
        "wandb" "0123456789abcdef0123456789abcdef012345"
    monkeypatch.setenv("HF_TOKEN", hf)
    (tmp_path / "civitai_api_token").write_text(civitai + "\n")
    (tmp_path / "wandb_api_key").write_text(wandb)
    assert third_party_token("hf", tmp_path) == hf
    assert third_party_token("civitai", tmp_path) == civitai
    assert third_party_token("wandb", tmp_path) == wandb
    assert third_party_token("hf", None) == hf and third_party_token("civitai", None) is None
    cleaned = redact(f"failed: {hf} / {civitai} / {wandb}", tmp_path)
    assert hf not in cleaned and civitai not in cleaned and wandb not in cleaned


def test_token_like_url_parameters_are_stripped_from_what_is_stored_or_shown(tmp_path):
    """Guards issue 17 §13: `?token=` (and signed-URL signatures) never reach a message, a log or a store."""
    from likeness.money.credentials import strip_url_secrets

    url = ("https://civitai.com/api/download/models/111?type=Model&token=abc123secret&format=SafeTensor")
    assert strip_url_secrets(url) == "https://civitai.com/api/download/models/111?type=Model&format=SafeTensor"
    signed = "https://bucket.s3.amazonaws.com/x.safetensors?X-Amz-Credential=AKIA1&X-Amz-Signature=deadbeef"
    assert strip_url_secrets(signed) == "https://bucket.s3.amazonaws.com/x.safetensors"
    assert strip_url_secrets("someone/face") == "someone/face"
    text = redact(f"could not fetch {url} nor {signed}", tmp_path)
    assert "abc123secret" not in text and "deadbeef" not in text and "AKIA1" not in text
    assert "civitai.com/api/download/models/111" in text


def test_a_key_file_other_users_can_read_gets_a_warning_that_names_it_not_the_key(tmp_path, monkeypatch, caplog):
    """Key files readable by other local users are warned about (issue 17, item 14)."""
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    path = tmp_path / "replicate_api_token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o644)
    with caplog.at_level("WARNING", logger="likeness"):
        assert replicate_token(tmp_path) == TOKEN
        replicate_token(tmp_path)                                 # once per file, not on every read
    warnings = [r.getMessage() for r in caplog.records if "key file" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0] and "chmod 600" in warnings[0]
    assert TOKEN not in caplog.text
    caplog.clear()
    private = tmp_path / "private"
    private.mkdir()
    (private / "replicate_api_token").write_text(TOKEN)
    (private / "replicate_api_token").chmod(0o600)
    with caplog.at_level("WARNING", logger="likeness"):
        assert replicate_token(private) == TOKEN
    assert "key file" not in caplog.text
