"""ComfyUI strength ↔ Replicate lora_scale: the rule per model, read from the model's own schema."""
from __future__ import annotations

import math

import pytest

from fakes.replicate import flux_dev_lora_openapi_schema, trained_version_openapi_schema
from likeness.errors import InputError
from likeness.generation.replicate_scale import OFFICIAL, TRAINED, multiplier_from_schema, scale_rule


def described(schema: dict) -> str:
    return schema["components"]["schemas"]["Input"]["properties"]["lora_scale"]["description"]


OFFICIAL_TEXT = described(flux_dev_lora_openapi_schema())


def test_the_go_fast_multiplier_is_read_from_flux_dev_loras_schema():
    assert multiplier_from_schema(OFFICIAL_TEXT) == 1.5
    assert multiplier_from_schema("Determines how strongly the main LoRA should be applied.") == 1.0
    assert multiplier_from_schema("For go_fast we apply a 2x multiplier to this value") == 2.0
    assert multiplier_from_schema(None) == 1.0


def test_flux_dev_lora_with_go_fast_divides_by_one_and_a_half():
    rule = scale_rule(OFFICIAL, go_fast=True, has_extra=False, lora_scale_description=OFFICIAL_TEXT,
                      schema_has_go_fast=True)
    assert rule.to_replicate(0.9) == pytest.approx(0.6)           # the reference: Replicate 0.9 ≈ ComfyUI 1.35
    assert rule.to_comfy(0.9) == pytest.approx(1.35)
    assert rule.to_replicate(0.2) == pytest.approx(0.2 / 1.5)
    assert "1.5" in rule.why


def test_flux_dev_lora_without_go_fast_is_one_to_one():
    rule = scale_rule(OFFICIAL, go_fast=False, has_extra=True, lora_scale_description=OFFICIAL_TEXT,
                      schema_has_go_fast=True)
    assert rule.to_replicate(0.9) == 0.9 and rule.to_comfy(-0.5) == -0.5


def test_a_trained_version_with_one_lora_applies_the_scale_twice():
    text = described(trained_version_openapi_schema("fine-tuner"))
    rule = scale_rule(TRAINED, go_fast=True, has_extra=False, lora_scale_description=text,
                      schema_has_go_fast=False)                       # the fine-tuner has no go_fast
    assert rule.squared
    assert rule.to_replicate(0.81) == pytest.approx(0.9)              # 0.9² = 0.81
    assert rule.to_replicate(0.9) == pytest.approx(math.sqrt(0.9))
    assert rule.to_comfy(rule.to_replicate(0.7)) == pytest.approx(0.7)
    with pytest.raises(InputError, match="negative"):
        rule.to_replicate(-0.3)


def test_a_trained_version_with_an_extra_lora_applies_each_scale_once():
    rule = scale_rule(TRAINED, go_fast=False, has_extra=True, lora_scale_description="",
                      schema_has_go_fast=True)
    assert not rule.squared and rule.to_replicate(0.9) == 0.9 and rule.to_replicate(-0.2) == -0.2


def test_go_fast_on_the_hot_swap_endpoint_uses_its_stated_multiplier_once():
    text = described(trained_version_openapi_schema("hotswap"))
    fast = scale_rule(TRAINED, go_fast=True, has_extra=False, lora_scale_description=text, schema_has_go_fast=True)
    slow = scale_rule(TRAINED, go_fast=False, has_extra=False, lora_scale_description=text,
                      schema_has_go_fast=True)
    assert not fast.squared and fast.to_replicate(0.9) == pytest.approx(0.6)
    assert slow.squared and slow.to_replicate(0.9) == pytest.approx(math.sqrt(0.9))


@pytest.mark.parametrize("strength", [0.0, 0.15, 0.9, 1.2, 2.5])
def test_conversions_round_trip(strength):
    for target, fast, extra in [(OFFICIAL, True, False), (OFFICIAL, False, True), (TRAINED, False, False),
                                (TRAINED, False, True)]:
        rule = scale_rule(target, go_fast=fast, has_extra=extra, lora_scale_description=OFFICIAL_TEXT,
                          schema_has_go_fast=True)
        assert rule.to_comfy(rule.to_replicate(strength)) == pytest.approx(strength)


def test_an_image_input_or_a_custom_size_runs_bf16_whatever_go_fast_says():
    """Guards issue 17 §1: cog-flux turns go_fast off for a custom aspect ratio (trained versions) and for an
    image input (both models); the conversion must follow the bf16 path then."""
    text = described(trained_version_openapi_schema("hotswap"))
    custom = scale_rule(TRAINED, go_fast=True, has_extra=False, lora_scale_description=text,
                        schema_has_go_fast=True, custom_size=True)
    image = scale_rule(OFFICIAL, go_fast=True, has_extra=False, lora_scale_description=OFFICIAL_TEXT,
                       schema_has_go_fast=True, image_input=True)
    assert custom.squared and custom.to_replicate(0.9) == pytest.approx(math.sqrt(0.9))
    assert "custom size" in custom.why and "bf16" in custom.why
    assert not image.squared and image.to_replicate(0.9) == 0.9 and "image" in image.why
