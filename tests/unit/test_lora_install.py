"""Installing the trained LoRA from trained_model.tar: only the LoRA, safely, atomically, never overwriting."""
from __future__ import annotations

import io
import json
import struct
import tarfile
from pathlib import Path

import pytest
from safetensors import safe_open

from fakes.replicate import build_trained_model_tar, make_lora
from likeness.errors import ServiceError
from likeness.training.lora_install import check_lora, extract_lora, install_lora, read_header, safe_stem


def fetch_from(data: bytes):
    def fetch(out, limit):
        out.write(data)
        return len(data)
    return fetch


def install(tmp_path: Path, variant: str = "normal", name: str = "pelarbues", **kwargs):
    return install_lora(fetch_from(build_trained_model_tar(variant)), tmp_path / "loras", name,
                        {"likeness_trigger_word": "pelarbues", "likeness_inputs": {"steps": 1040}}, **kwargs)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_installs_the_lora_with_the_packs_metadata_and_its_tensors_unchanged(tmp_path):
    installed = install(tmp_path)
    assert installed.name == "pelarbues.safetensors" and installed.renamed_from == ""
    assert listing(tmp_path / "loras") == ["pelarbues.safetensors"]       # no temp files left behind
    header, _ = read_header(installed.path)
    meta = header["__metadata__"]
    assert meta["likeness_trigger_word"] == "pelarbues"
    assert json.loads(meta["likeness_inputs"]) == {"steps": 1040}
    assert meta["ss_output_name"] == "flux_train_replicate"               # the trainer's own metadata is kept
    original = Path(tmp_path / "orig.safetensors")
    original.write_bytes(make_lora())
    with safe_open(installed.path, "np") as new, safe_open(original, "np") as old:
        assert sorted(new.keys()) == sorted(old.keys())
        assert len(new.keys()) == 8
        key = "transformer.single_transformer_blocks.7.proj_out.lora_A.weight"
        assert (new.get_tensor(key) == old.get_tensor(key)).all()
        assert new.get_tensor(key).shape == (4, 15360)


def test_same_file_again_is_reused_and_a_different_one_gets_a_versioned_name(tmp_path):
    first = install(tmp_path)
    again = install(tmp_path)
    assert again.path == first.path and again.renamed_from == ""
    first.path.write_bytes(first.path.read_bytes()[:-8] + b"\0" * 8)      # the user's own, different file
    mine = first.path.read_bytes()
    other = install(tmp_path)
    assert other.name == "pelarbues-v2.safetensors"
    assert other.renamed_from == "pelarbues.safetensors"
    assert "kept it" in other.note and "pelarbues-v2.safetensors" in other.note
    assert first.path.read_bytes() == mine                                 # never overwritten


@pytest.mark.parametrize("variant, words", [
    ("traversal", "outside the archive"),
    ("symlink", "a link"),
    ("hardlink", "a link"),
    ("oversized", "over the"),
    ("no_lora", "no output/flux_train_replicate/lora.safetensors"),
    ("two_loras", "more than one"),
    ("not_lora", "without LoRA keys"),
])
def test_bad_or_malicious_tars_are_refused_and_nothing_is_left(tmp_path, variant, words):
    with pytest.raises(ServiceError, match=words):
        install(tmp_path, variant)
    assert listing(tmp_path / "loras") == []
    assert not Path("/tmp/likeness-escaped.safetensors").exists()


def test_a_full_disk_is_an_input_error_that_says_so_and_nothing_is_left(tmp_path):
    import errno
    import os

    from likeness.errors import InputError

    def fetch_onto_a_full_disk(out, limit):
        out.write(build_trained_model_tar()[:4096])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(InputError) as err:
        install_lora(fetch_onto_a_full_disk, tmp_path / "loras", "pelarbues", {})
    assert "is full" in str(err.value) and str(tmp_path / "loras") in str(err.value)
    assert "queue again" in str(err.value) and "not be paid again" in str(err.value)
    assert listing(tmp_path / "loras") == []


def test_a_lora_over_the_size_limit_is_refused_even_if_its_header_is_small(tmp_path):
    with pytest.raises(ServiceError, match="over the 0.1 MB limit"):
        install(tmp_path, max_bytes=100_000)                               # the real LoRA is ~590 kB
    assert listing(tmp_path / "loras") == []


def test_a_truncated_lora_is_refused(tmp_path):
    lora = make_lora()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("output/flux_train_replicate/lora.safetensors")
        cut = lora[: len(lora) // 2]
        info.size = len(cut)
        tar.addfile(info, io.BytesIO(cut))
    with pytest.raises(ServiceError, match="cut short"):
        install_lora(fetch_from(buf.getvalue()), tmp_path / "loras", "x", {})
    assert listing(tmp_path / "loras") == []


def test_not_a_tar_at_all_is_refused(tmp_path):
    with pytest.raises(ServiceError, match="not a readable tar"):
        install_lora(fetch_from(b"<html>nope</html>" * 100), tmp_path / "loras", "x", {})


def test_extract_lora_accepts_a_dot_slash_prefix_and_check_lora_counts_tensors(tmp_path):
    lora = make_lora(rank=2, blocks=(7, 20))
    tar_path = tmp_path / "t.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("./output/flux_train_replicate/lora.safetensors")
        info.size = len(lora)
        tar.addfile(info, io.BytesIO(lora))
    out = tmp_path / "out.safetensors"
    assert extract_lora(tar_path, out) == len(lora)
    assert check_lora(out) == 4


def test_a_header_claiming_an_impossible_length_is_not_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(ServiceError, match="not safetensors"):
        check_lora(path)


def test_safe_stem_keeps_names_inside_the_loras_folder():
    assert safe_stem("../../etc/passwd") == "etc-passwd"
    assert safe_stem("pelarbues-lora.safetensors") == "pelarbues-lora"
