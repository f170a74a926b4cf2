"""The prompt refiner against the fake Gemini server, through the real google-genai SDK (no patching)."""
from __future__ import annotations

import pytest

from conftest import CANARY_KEY
from likeness.errors import BudgetError, InputError, ServiceError
from likeness.generation.prompt_refiner import (RefineSettings, idea_for_gemini, refine_prompt_sync,
                                                without_identity_traits)
from likeness.money.spend_ledger import SpendLedger

ANSWER = ("An analog portrait of a man in a 1960s diner, seated at the counter with a cup of coffee. He wears a "
          "brown corduroy jacket over a white shirt. Warm tungsten light from the ceiling lamps, a medium shot at "
          "eye level, shallow focus and visible film grain.")


def refine(idea, user, trigger="pelarbues", **settings):
    return refine_prompt_sync(idea, trigger, RefineSettings(**settings), user)


def test_an_idea_becomes_a_detailed_prompt_with_the_trigger_word_first(gemini_env, tmp_path):
    gemini_env.script("ok", fields={"prompt": ANSWER})
    result = refine("pelarbues in a 60s diner, film look", tmp_path)
    assert result.prompt == f"pelarbues, {ANSWER}"
    assert not result.cached and result.cost_usd > 0 and result.estimate_usd > 0
    (call,) = gemini_env.generate_calls()
    assert call.path == "/v1beta/models/gemini-3.8-flash:generateContent" and call.api_key == CANARY_KEY
    sent = " ".join(call.texts)
    assert "pelarbues" not in sent.lower(), "the trigger word is the LoRA's; Gemini never sees it"
    assert "60s diner, film look" in sent and "eye colour" in sent     # the idea, and the rule against traits
    assert call.body["generationConfig"]["responseJsonSchema"]["required"] == ["prompt"]


def test_the_same_idea_is_paid_once_and_answered_from_the_cache(gemini_env, tmp_path):
    gemini_env.script("ok", fields={"prompt": ANSWER})
    first = refine("a portrait in a diner", tmp_path)
    again = refine("a   portrait in a diner ", tmp_path)            # the same idea, spaced differently
    assert len(gemini_env.generate_calls()) == 1
    assert again.cached and again.cost_usd == 0 and again.prompt == first.prompt
    assert "nothing paid" in again.summary()
    assert SpendLedger(tmp_path).month_total() == pytest.approx(first.cost_usd, abs=1e-6)


def test_another_version_of_an_idea_is_one_more_call_with_its_own_seed(gemini_env, tmp_path):
    refine("a portrait in a diner", tmp_path)
    refine("a portrait in a diner", tmp_path, variant=2)
    refine("a portrait in a diner", tmp_path, variant=2)
    calls = gemini_env.generate_calls()
    assert len(calls) == 2
    assert "seed" not in calls[0].body["generationConfig"] and calls[1].body["generationConfig"]["seed"] == 2


def test_sentences_naming_identity_traits_are_left_out(gemini_env, tmp_path):
    gemini_env.script("ok", fields={"prompt": ANSWER + " His striking blue eyes catch the light. A square face."})
    result = refine("a portrait in a diner", tmp_path)
    assert "blue eyes" not in result.prompt and "square face" not in result.prompt.lower()
    assert result.prompt.endswith("visible film grain.")
    assert result.removed == ["His striking blue eyes catch the light.", "A square face."]
    assert "Left out" in result.summary()


def test_an_answer_of_only_traits_is_refused_and_not_cached(gemini_env, tmp_path):
    gemini_env.script("ok", fields={"prompt": "Piercing green eyes and an oval face."})
    with pytest.raises(ServiceError, match="only the person's fixed traits"):
        refine("a close-up", tmp_path)
    gemini_env.script("ok", fields={"prompt": ANSWER})
    assert refine("a close-up", tmp_path).prompt.startswith("pelarbues, An analog")
    assert len(gemini_env.generate_calls()) == 2


def test_over_the_monthly_budget_nothing_is_sent(gemini_env, tmp_path, monkeypatch):
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", "0")
    with pytest.raises(BudgetError, match="refused before anything was paid"):
        refine("a portrait in a diner", tmp_path)
    assert gemini_env.generate_calls() == []


def test_a_blocked_idea_says_so_and_is_not_cached(gemini_env, tmp_path):
    gemini_env.script("blocked")
    with pytest.raises(ServiceError, match="Gemini gave no prompt: Gemini blocked"):
        refine("something", tmp_path)
    refine("something", tmp_path)
    assert len(gemini_env.generate_calls()) == 2


def test_a_rate_limit_is_waited_out(gemini_env, tmp_path):
    gemini_env.script("rate_minute", retry_delay="0.05s")
    assert refine("a portrait in a diner", tmp_path).prompt.startswith("pelarbues, ")
    assert [c.status for c in gemini_env.generate_calls()] == [429, 200]


def test_a_bad_key_is_a_clear_message_without_the_key(gemini_env, tmp_path):
    gemini_env.script("invalid_key", echo_key=True)
    with pytest.raises(InputError, match="Check GEMINI_API_KEY") as caught:
        refine("a portrait", tmp_path)
    assert CANARY_KEY not in str(caught.value)


def test_an_unknown_model_names_a_current_one(gemini_env, tmp_path):
    with pytest.raises(InputError, match="no model 'gemini-0-nope'"):
        refine("a portrait", tmp_path, model="gemini-0-nope")


@pytest.mark.parametrize("idea, sent", [
    ("pelarbues at the beach", "the person at the beach"),
    ("Pelarbues, walking in Paris", "walking in Paris"),
    ("  a   cowboy  shot ", "a cowboy shot"),
])
def test_the_idea_gemini_gets(idea, sent):
    assert idea_for_gemini(idea, "pelarbues") == sent


def test_an_empty_idea_is_refused_before_anything_is_sent():
    with pytest.raises(InputError, match="The idea is empty"):
        idea_for_gemini("  pelarbues ", "pelarbues")


def test_traits_are_matched_as_words_not_inside_other_words():
    kept, removed = without_identity_traits("Soft complexion. A jawline-length bob. Eye level shot.")
    assert removed == ["Soft complexion."] and kept == "A jawline-length bob. Eye level shot."
