"""The trainer's pure steps: inputs from the seed's recipe, schema validation, progress lines, zip, estimate."""
from __future__ import annotations

import zipfile

import pytest

from fakes.replicate import _tqdm, trainer_openapi_schema
from likeness.errors import InputError
from likeness.money.prices import load_prices
from likeness.training.training import (SEED_REGEX, TrainingSettings, build_inputs, estimate_cost, flux_layers,
                               layers_regex, parse_progress, validate_inputs, zip_dataset)

SCHEMA = {**trainer_openapi_schema()["components"]["schemas"]["TrainingInput"], "_components": {}}


def test_defaults_are_the_seeds_recipe_with_auto_steps_of_40_per_photo(make_dataset):
    inputs = build_inputs(make_dataset(26), TrainingSettings("me/x"))
    assert inputs == {"trigger_word": "pelarbues", "steps": 1040, "lora_rank": 32, "learning_rate": 0.0004,
                      "optimizer": "adamw8bit", "batch_size": 1, "resolution": "1024",
                      "caption_dropout_rate": 0.1, "autocaption": False,
                      "layers_to_optimize_regex": "transformer.single_transformer_blocks.(7|12|16|20).proj_out"}
    validate_inputs(inputs, SCHEMA, "trainer")      # the seed's recipe is valid for the trainer


def test_explicit_steps_layers_presets_and_extra_inputs(make_dataset):
    ds = make_dataset(3)
    inputs = build_inputs(ds, TrainingSettings("me/x", steps=500, layers="7/20",
                                               extra_inputs='{"cache_latents_to_disk": true}'))
    assert inputs["steps"] == 500
    assert inputs["layers_to_optimize_regex"] == "transformer.single_transformer_blocks.(7|20).proj_out"
    assert inputs["cache_latents_to_disk"] is True
    assert "layers_to_optimize_regex" not in build_inputs(ds, TrainingSettings("me/x", layers="all"))


def test_layer_presets_match_the_layers_the_seed_names():
    matched = [name for name in flux_layers() if __import__("re").search(SEED_REGEX, name)]
    assert len(flux_layers()) == 494
    assert matched == [f"transformer.single_transformer_blocks.{b}.proj_out" for b in (7, 12, 16, 20)]
    assert layers_regex("7/20", "") .endswith("(7|20).proj_out")


@pytest.mark.parametrize("preset, custom, words", [
    ("custom regex", "", "custom_layers_regex is empty"),
    ("custom regex", "transformer.(", "not a valid regular expression"),
    ("custom regex", "unet.down_blocks", "matches none of FLUX's 494"),
    ("everything", "", "layers must be one of"),
])
def test_bad_layer_choices_are_refused_before_anything_is_paid(preset, custom, words):
    with pytest.raises(InputError, match=words):
        layers_regex(preset, custom)


@pytest.mark.parametrize("extra, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"steps": 10}', "has its own inputs"),
    ('{"hf_token": "hf_abc"}', "secrets never go in a widget"),
    ('{"input_images": "https://x/y.zip"}', "uploads the dataset itself"),
])
def test_bad_extra_inputs_are_refused(make_dataset, extra, words):
    with pytest.raises(InputError, match=words):
        build_inputs(make_dataset(2), TrainingSettings("me/x", extra_inputs=extra))


def test_bad_resolution_is_refused(make_dataset):
    with pytest.raises(InputError, match="resolution must be"):
        build_inputs(make_dataset(2), TrainingSettings("me/x", resolution="1024px"))


@pytest.mark.parametrize("inputs, words", [
    ({"steps": 7000}, "steps: 7000 is above the maximum 6000"),
    ({"steps": 2}, "steps: 2 is below the minimum 3"),
    ({"lora_rank": 256}, "lora_rank: 256 is above the maximum 128"),
    ({"caption_dropout_rate": 1.5}, "above the maximum 1"),
    ({"autocaption": "no"}, "autocaption: 'no' is not true or false"),
    ({"steps": "1000"}, "not a whole number"),
    ({"learning_rate": "fast"}, "not a number"),
    ({"wandb_sample_interval": 0}, "below the minimum 1"),
    ({"stepz": 5}, "stepz: not an input of this trainer"),
    ({"hf_token": "x"}, "a secret"),
])
def test_inputs_are_validated_against_the_trainer_versions_own_schema(inputs, words):
    with pytest.raises(InputError, match=words) as info:
        validate_inputs(inputs, SCHEMA, "ostris/flux-dev-lora-trainer:26dce37af90b")
    assert "nothing was uploaded or paid" in str(info.value)


def test_cog_choice_references_are_followed():
    schema = {"properties": {"optimizer": {"allOf": [{"$ref": "#/components/schemas/optimizer"}]}},
              "_components": {"optimizer": {"type": "string", "enum": ["adamw8bit", "prodigy"]}}}
    validate_inputs({"optimizer": "prodigy"}, schema, "t")
    with pytest.raises(InputError, match="'lion' is not one of adamw8bit, prodigy"):
        validate_inputs({"optimizer": "lion"}, schema, "t")


def test_progress_is_the_last_flux_train_replicate_line_not_other_bars():
    logs = "\n".join([
        "Caching latents to memory:  50%|█████     | 12/24 [00:02<00:02,  4.52it/s]",
        "flux_train_replicate:   0%|          | 0/1000 [00:00<?, ?it/s]",
        "flux_train_replicate:  45%|████▌     | 450/1000 [07:52<09:37,  1.05s/it, lr: 4.0e-04 loss: 3.812e-01]",
        "some other line",
    ])
    p = parse_progress(logs)
    assert (p.step, p.total, p.percent, p.elapsed, p.remaining) == (450, 1000, 45, "07:52", "09:37")
    assert p.text() == "step 450/1000 (45%), 07:52 elapsed, about 09:37 left"
    assert parse_progress("Caching latents to memory:  50%|█████     | 12/24 [00:02<00:02]") is None
    assert parse_progress(None) is None
    start = parse_progress(_tqdm(0, 1040, 1.05))
    assert (start.step, start.remaining) == (0, "?") and "left" not in start.text()
    hours = parse_progress("flux_train_replicate:  83%|████████▎ | 2482/3000 [1:43:27<09:04,  1.05s/it]")
    assert hours.elapsed == "1:43:27"


def test_estimate_is_steps_times_seconds_per_step_plus_setup_times_the_h100_price():
    prices = load_prices(None)
    assert estimate_cost(1040, prices) == pytest.approx((1040 * 1.05 + 240) * 0.001525)


def test_zip_is_flat_with_every_photo_and_caption(make_dataset, tmp_path):
    ds = make_dataset(3)
    path = zip_dataset(ds, tmp_path / "uploads")
    with zipfile.ZipFile(path) as z:
        names = sorted(z.namelist())
        assert names == ["000.jpg", "000.txt", "001.jpg", "001.txt", "002.jpg", "002.txt"]
        assert z.read("001.txt").decode() == "pelarbues, a man smiling, photo 1"
        assert z.getinfo("000.jpg").compress_type == zipfile.ZIP_STORED


def test_zip_over_the_files_api_limit_is_refused_with_advice_and_removed(make_dataset, tmp_path):
    with pytest.raises(InputError, match="fewer photos"):
        zip_dataset(make_dataset(3), tmp_path / "uploads", max_bytes=1000)
    assert list((tmp_path / "uploads").iterdir()) == []
