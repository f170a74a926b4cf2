"""A LoRA stack with no model (for Replicate): the same balancing as with one, the LORA_STACK, trigger words."""
from __future__ import annotations

import pytest

from likeness.errors import InputError
from likeness.loras.lora_formats import LoraInfo
from likeness.loras.stack_plan import plan_stack
from likeness.loras.strength_balance import StackRow, balance_strengths

WORDS = {"me.safetensors": ("pelarbues",), "film.safetensors": ("analog film", "Pelarbues"), "grain.safetensors": (),
         "sd15.safetensors": ("inkstyle",)}


def describe(name: str) -> LoraInfo:
    if name not in WORDS:
        raise InputError(f"LoRA file {name!r} is not in models/loras")
    return LoraInfo(name, "kohya" if name.startswith("sd") else "diffusers", "sd" if name.startswith("sd") else "flux",
                    ("m",), False, 4, {}, WORDS[name])


def rows(*items) -> list[StackRow]:
    return [StackRow(name, strength, on) for name, strength, on in items]


def test_strengths_are_the_stacks_own_balancing():
    stack = rows(("me.safetensors", 0.9, True), ("film.safetensors", 0.2, True), ("grain.safetensors", 0.3, True))
    planned = plan_stack(stack, "anchor", target_total=1.2, clamp=(0.15, 0.25), anchor=0, describe=describe)
    expected = balance_strengths(stack, "anchor", target_total=1.2, clamp=(0.15, 0.25), anchor=0)
    assert planned.strengths == expected.strengths and planned.total == expected.total
    assert planned.lora_stack == [(r.lora, s, s) for r, s in zip(stack, expected.strengths)]


def test_rows_that_are_off_are_left_out_and_trigger_words_put_the_personal_first():
    stack = rows(("film.safetensors", 0.2, True), ("me.safetensors", 0.9, True), ("grain.safetensors", 0.3, False))
    planned = plan_stack(stack, "off", target_total=1.2, clamp=(0.15, 0.25), anchor=1, describe=describe)
    assert [name for name, _, _ in planned.lora_stack] == ["film.safetensors", "me.safetensors"]
    assert planned.trigger_words == "pelarbues, analog film"          # personal first, no duplicate (any case)
    assert "3. grain.safetensors: off" in planned.report
    assert "2. me.safetensors (personal): 0.9 → 0.900" in planned.report


def test_effect_needs_a_model_so_the_anchor_rule_is_used_and_said():
    stack = rows(("me.safetensors", 0.9, True), ("film.safetensors", 0.2, True))
    planned = plan_stack(stack, "effect", target_total=1.2, clamp=(0.15, 0.25), anchor=0, describe=describe)
    anchor = plan_stack(stack, "anchor", target_total=1.2, clamp=(0.15, 0.25), anchor=0, describe=describe)
    assert planned.strengths == anchor.strengths
    assert "with no model connected the anchor rule was used" in planned.report


def test_a_missing_file_is_named():
    with pytest.raises(InputError, match="gone.safetensors"):
        plan_stack(rows(("gone.safetensors", 0.9, True)), "anchor", target_total=1.2, clamp=(0.15, 0.25), anchor=0,
                   describe=describe)


def test_an_sd_lora_is_left_out_before_balancing_as_the_stack_with_a_model_does():
    stack = rows(("me.safetensors", 0.9, True), ("sd15.safetensors", 0.2, True), ("grain.safetensors", 0.6, True))
    planned = plan_stack(stack, "anchor", target_total=1.2, clamp=(0.15, 0.25), anchor=0, describe=describe)
    without = plan_stack([stack[0], StackRow("sd15.safetensors", 0.2, False), stack[2]], "anchor", target_total=1.2,
                         clamp=(0.15, 0.25), anchor=0, describe=describe)
    assert planned.strengths == without.strengths == pytest.approx([0.9, 0.0, 0.25])   # 0.3 left, clamped
    assert [name for name, _, _ in planned.lora_stack] == ["me.safetensors", "grain.safetensors"]
    assert "2. sd15.safetensors: left out — an SD 1.5 / SDXL LoRA" in planned.report
    assert "inkstyle" not in planned.trigger_words
