"""The battery's tables: the base and the variations, expanded one factor at a time or as a full grid."""
from __future__ import annotations

import pytest

from likeness.errors import InputError
from likeness.training.battery_plan import (DEFAULT_BASE, MAX_VARIANTS, MODES, SEED_BASE, parse_value,
                                            plan_battery, training_settings)
from likeness.training.training import SEED_REGEX, build_inputs

ONE, GRID = MODES
SEED_TABLE = "lora_rank: 16, 32, 64\nsteps_per_image: 30, 40, 50\nlayers: 7/12/16/20, all"


def test_the_default_base_is_the_seeds_recipe():
    plan = plan_battery(DEFAULT_BASE, "", ONE)
    assert plan.base == SEED_BASE
    assert [v.label for v in plan.variants] == ["base"]


def test_one_factor_at_a_time_trains_the_base_and_each_other_value_once():
    plan = plan_battery(DEFAULT_BASE, SEED_TABLE, ONE)
    assert [v.label for v in plan.variants] == ["base", "lora_rank 16", "lora_rank 64", "steps_per_image 30",
                                                "steps_per_image 50", "layers all"]
    base = plan.variants[0].values
    for variant in plan.variants[1:]:
        differs = {k for k in base if variant.values[k] != base[k]}
        assert differs == set(variant.changed) and len(differs) == 1, variant.label
    assert plan.describe().startswith("6 trainings (one factor at a time around the base): base, lora_rank 16")


def test_full_grid_trains_every_combination():
    plan = plan_battery(DEFAULT_BASE, SEED_TABLE, GRID)
    assert len(plan.variants) == 18
    combos = {(v.values["lora_rank"], v.values["steps_per_image"], v.values["layers"]) for v in plan.variants}
    assert len(combos) == 18
    assert plan.variants[0].label == "lora_rank 16 · steps_per_image 30 · layers 7/12/16/20"


def test_file_names_say_each_varied_setting_and_differ_between_variants():
    plan = plan_battery(DEFAULT_BASE, SEED_TABLE, ONE)
    suffixes = [v.file_suffix() for v in plan.variants]
    assert suffixes[0] == "rank32-spi40-layers7.12.16.20"
    assert suffixes[-1] == "rank32-spi40-layersall"
    assert len(set(suffixes)) == len(suffixes)


def test_a_value_given_twice_or_equal_to_the_base_is_not_trained_twice():
    plan = plan_battery(DEFAULT_BASE, "lora_rank: 16, 16, 32", ONE)
    assert [v.label for v in plan.variants] == ["base", "lora_rank 16"]


def test_semicolons_separate_values_that_hold_commas():
    plan = plan_battery(DEFAULT_BASE, "resolution: 1024; 512, 768, 1024", ONE)
    assert [v.values["resolution"] for v in plan.variants] == ["1024", "512,768,1024"]


@pytest.mark.parametrize("layers, preset, regex", [
    ("7/12/16/20", "7/12/16/20", SEED_REGEX),
    ("7 / 20", "7/20", "transformer.single_transformer_blocks.(7|20).proj_out"),
    ("3/9", "custom regex", "transformer.single_transformer_blocks.(3|9).proj_out"),
    ("all", "all", None),
    (r"transformer_blocks\.0\.attn", "custom regex", r"transformer_blocks\.0\.attn"),
])
def test_layers_become_the_trainers_preset_or_regex(layers, preset, regex, make_dataset):
    plan = plan_battery(f"layers: {layers}", "", ONE)
    settings = training_settings(plan.variants[0].values, 26, "me/face")
    assert settings.layers == preset
    assert build_inputs(make_dataset(2), settings).get("layers_to_optimize_regex") == regex


def test_steps_per_image_multiplies_by_the_photos_and_fixed_steps_win():
    spi = plan_battery(DEFAULT_BASE, "steps_per_image: 30", ONE).variants[1]
    assert training_settings(spi.values, 26, "me/face").steps == 780
    fixed = plan_battery("steps: 1000", "", ONE).variants[0]
    assert training_settings(fixed.values, 26, "me/face").steps == 1000


def test_other_trainer_inputs_pass_through_typed(make_dataset):
    plan = plan_battery(DEFAULT_BASE, "cache_latents_to_disk: true, false\ngradient_checkpointing: on", GRID)
    inputs = build_inputs(make_dataset(2), training_settings(plan.variants[0].values, 2, "me/face"))
    assert inputs["cache_latents_to_disk"] is True and inputs["gradient_checkpointing"] is True
    assert parse_value("wandb_sample_interval", "100") == 100


@pytest.mark.parametrize("base, variations, mode, words", [
    (DEFAULT_BASE, "lora_rank: 16, big", ONE, "variations line 1 ('lora_rank: 16, big'): lora_rank takes whole"),
    (DEFAULT_BASE, "lora_rank 16, 32", ONE, "write a setting and its values"),
    (DEFAULT_BASE, "lora_rank: 16\nlora_rank: 32", ONE, "already set on an earlier line"),
    (DEFAULT_BASE, "trigger_word: a, b", ONE, "the dataset's trigger word is used"),
    (DEFAULT_BASE, "steps: 500, 1000\nsteps_per_image: 30", ONE, "vary one of them"),
    ("steps: 900", "steps_per_image: 30, 50", ONE, "would change nothing"),
    (DEFAULT_BASE, "learning_rate: fast", ONE, "numbers like 0.0004"),
    (DEFAULT_BASE, "autocaption: maybe", ONE, "true or false"),
    (DEFAULT_BASE, "lora_rank: 16", "random search", "expand must be one of"),
])
def test_a_bad_table_says_where_and_what_to_write(base, variations, mode, words):
    with pytest.raises(InputError) as refused:
        plan_battery(base, variations, mode)
    assert words in str(refused.value)


def test_a_grid_over_the_limit_is_refused_before_anything():
    table = "\n".join(f"{name}: {', '.join(str(v) for v in values)}" for name, values in [
        ("lora_rank", (8, 16, 32, 64)), ("steps_per_image", (20, 30, 40, 50)), ("batch_size", (1, 2, 4, 8, 16))])
    with pytest.raises(InputError) as refused:
        plan_battery(DEFAULT_BASE, table, GRID)
    assert f"makes 80 trainings; one battery runs at most {MAX_VARIANTS}" in str(refused.value)
    assert len(plan_battery(DEFAULT_BASE, table, ONE).variants) == 1 + 3 + 3 + 4
