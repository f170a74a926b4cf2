"""Reading a LoRA's format, modules and trigger words from its safetensors header and side-cars."""
from __future__ import annotations

import json

import pytest

from comfy_test_pack.lora_files import factors, write_lora, write_sd_lora, write_xlabs_lora
from likeness.errors import InputError
from likeness.loras.lora_formats import describe_lora, detect_format, module_of, read_header, trigger_words

FULL = ("single_blocks.0.linear2", "double_blocks.0.img_attn.qkv")


@pytest.mark.parametrize("fmt, modules, alpha, label", [
    ("diffusers", ("single_blocks.0.linear2", "double_blocks.0.img_attn.qkv:q", "double_blocks.0.img_attn.qkv:k"),
     None, "diffusers / ai-toolkit"),
    ("kohya", FULL, 2.0, "kohya"),
    ("bfl", FULL, None, "BFL / ComfyUI"),
    ("onetrainer", ("single_blocks.0.linear2", "double_blocks.0.img_attn.qkv:v"), 4.0, "OneTrainer"),
])
def test_each_trainer_format_is_recognised(tmp_path, fmt, modules, alpha, label):
    path = write_lora(tmp_path / f"{fmt}.safetensors", fmt, factors(rank=4, alpha=alpha, modules=modules))
    info = describe_lora(path)
    assert (info.format, info.format_label, info.architecture) == (fmt, label, "flux")
    assert len(info.modules) == len(modules)
    assert info.rank == 4
    assert info.has_alpha is (alpha is not None)


def test_xlabs_and_sd_loras_are_named_for_what_they_are(tmp_path):
    xlabs = describe_lora(write_xlabs_lora(tmp_path / "x.safetensors", blocks=2))
    assert (xlabs.format, len(xlabs.modules)) == ("xlabs", 8)
    sd = describe_lora(write_sd_lora(tmp_path / "sd.safetensors"))
    assert (sd.format, sd.architecture) == ("kohya", "sd")
    assert "SD 1.5" in sd.format_label
    assert detect_format(["something.weight"]) == "unknown"


def test_module_prefixes_strip_every_tensor_suffix():
    assert module_of("transformer.single_transformer_blocks.7.proj_out.lora_A.weight") == \
        "transformer.single_transformer_blocks.7.proj_out"
    assert module_of("lora_unet_single_blocks_7_linear2.alpha") == "lora_unet_single_blocks_7_linear2"
    assert module_of("double_blocks.0.processor.qkv_lora1.down.weight") == "double_blocks.0.processor.qkv_lora1"


def test_header_is_read_without_the_tensors(tmp_path):
    path = write_lora(tmp_path / "a.safetensors", "kohya", factors(modules=FULL), {"ss_network_dim": "4"})
    tensors, metadata = read_header(path)
    assert tensors["lora_unet_single_blocks_0_linear2.lora_down.weight"]["shape"] == [4, 640]
    assert metadata == {"ss_network_dim": "4"}


def test_broken_or_missing_files_are_input_errors(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{nope")
    with pytest.raises(InputError, match="not a safetensors"):
        read_header(tmp_path / "bad.safetensors")
    with pytest.raises(InputError, match="does not exist"):
        read_header(tmp_path / "gone.safetensors")


def test_trigger_words_from_every_source_most_trusted_first(tmp_path):
    meta = {"likeness_trigger_word": "pelarbues",
            "ss_trigger_words": json.dumps(["ink style"]),
            "training_info": json.dumps({"config": {"process": [{"trigger_word": "tok"}]}}),
            "ss_tag_frequency": json.dumps({"10_x": {"ignored": 9}})}
    path = write_lora(tmp_path / "me.safetensors", "diffusers", factors(), meta)
    (tmp_path / "me.txt").write_text("sidecar word, Pelarbues\n")
    assert trigger_words(path, meta) == ["pelarbues", "ink style", "tok", "sidecar word"]
    assert describe_lora(path).trigger_words == ("pelarbues", "ink style", "tok", "sidecar word")


def test_trigger_words_from_likeness_sidecar_and_tag_frequency(tmp_path):
    path = write_lora(tmp_path / "v.safetensors", "kohya", factors(modules=FULL),
                      {"ss_tag_frequency": json.dumps({"26_violeta": {"violeta": 26, "smiling": 4},
                                                       "5_bg": {"forest": 5}})})
    assert describe_lora(path).trigger_words == ("violeta", "forest")
    (tmp_path / "v.likeness.json").write_text(json.dumps({"trigger_word": "vltx"}))
    assert describe_lora(path).trigger_words == ("vltx",)    # tag frequency only when nothing better


LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4f1c0a6c7b8a12b3e0f1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b\n"
               b"size 171966000\n")
HTML_PAGE = b"\n<!DOCTYPE html>\n<html lang=\"en\"><head><title>Sign in | Civitai</title></head><body></body></html>"


@pytest.mark.parametrize("content, words", [
    (LFS_POINTER, ("is a Git LFS pointer of the real 164.0 MB file", "git lfs pull")),
    (HTML_PAGE, ("is a web page (HTML), not the LoRA", "download the file again")),
    (b"<html><body>403 Forbidden</body></html>", ("is a web page (HTML)",)),
])
def test_a_git_lfs_pointer_or_a_web_page_saved_as_safetensors_is_named_as_such(tmp_path, content, words):
    """A failed download saved under the LoRA's name must be called what it is (issue 17, item 20)."""
    path = tmp_path / "style.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        describe_lora(path)
    assert str(path) in str(err.value) and all(w in str(err.value) for w in words), str(err.value)
