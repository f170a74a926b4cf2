"""The bad-input corpus, generated: photos, captions and LoRA files a user may really have, each with what the
pack must say about it (words that name the file and the problem)."""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from harness import photos

LONG_STEM = "a-very-long-photo-name-" + "x" * 200          # 223 + ".jpg": near the 255-byte limit


@dataclass(frozen=True)
class Expect:
    """A file of the corpus: `used` True when it must end up in the prepared set (converted or as is),
    otherwise the words the loader's report must hold beside its name."""
    name: str
    used: bool
    words: tuple[str, ...] = ()


def photo_corpus(folder: Path, trigger: str) -> list[Expect]:
    folder.mkdir(parents=True, exist_ok=True)
    scene = photos.scene(320, 240, seed=3)
    out: list[Expect] = []
    seeds = iter(range(500, 600))

    def good(name: str, writer) -> None:
        nonlocal rgb
        rgb = Image.fromarray(photos.scene(320, 240, seed=next(seeds)))    # distinct shots: no duplicate warnings
        writer(folder / name)
        out.append(Expect(name, True))

    rgb = Image.fromarray(scene)

    def bad(name: str, writer, *words: str) -> None:
        writer(folder / name)
        out.append(Expect(name, False, words))

    good("plain.jpg", lambda p: rgb.save(p, quality=90))
    good("cmyk.jpg", lambda p: rgb.convert("CMYK").save(p, "JPEG"))
    good("sixteen-bit.png", lambda p: Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
                                                      .astype(np.uint16)).save(p))
    good("palette-alpha.png", lambda p: _palette_with_alpha(rgb).save(p, transparency=0))
    good("exif-rotated.jpg", lambda p: photos.save(photos.stored_for_orientation(scene, 6), p, orientation=6,
                                                   quality=90))
    good("a png named.jpg", lambda p: rgb.save(p, "PNG"))              # wrong extension, readable content
    good("photo.webp", lambda p: rgb.save(p, "WEBP"))
    good("photo.heic", _heic)
    good("zoë ñ 照片 ✓.jpg", lambda p: rgb.save(p, quality=85))
    good("with   spaces .jpg", lambda p: rgb.save(p, quality=80))
    good(LONG_STEM + ".jpg", lambda p: rgb.save(p, quality=75))
    good("latin1-caption.jpg", lambda p: rgb.save(p, quality=70))
    (folder / "latin1-caption.txt").write_bytes(f"{trigger}, un homme au caf\xe9, \xe9t\xe9".encode("latin-1"))
    good("nul-caption.jpg", lambda p: rgb.save(p, quality=65))
    (folder / "nul-caption.txt").write_bytes(f"{trigger}, a man\x00 in a hat\x00".encode())
    good("small.jpg", lambda p: rgb.resize((80, 64)).save(p, quality=90))   # short side 64: upscaled, kept

    bad("one-pixel.png", lambda p: Image.new("RGB", (1, 1), (90, 90, 90)).save(p), "too small", "1×1",
        "before captioning or upload")
    bad("corrupt.jpg", photos.corrupt_file, "not a readable image")
    bad("truncated.jpg", lambda p: photos.truncated_jpeg(p, 320, 240), "truncated")
    bad("zero-bytes.jpg", photos.zero_byte, "empty file")
    bad("text-named.png", lambda p: p.write_text("just some notes, not a photo\n"), "not a readable image")
    bad("bomb.png", lambda p: photos.png_bomb(p, 20000, 20000), "too many pixels")
    bad("loop-a.jpg", lambda p: os.symlink("loop-b.jpg", p), "cannot be read")
    bad("loop-b.jpg", lambda p: os.symlink("loop-a.jpg", p), "cannot be read")
    return out


def _palette_with_alpha(rgb: Image.Image) -> Image.Image:
    return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)


def _heic(path: Path) -> None:
    from pillow_heif import from_pillow

    from_pillow(Image.fromarray(photos.scene(320, 240, seed=4))).save(path, quality=80)


# --- LoRA files that are not what their name says ---------------------------------------------------
def not_safetensors(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 this is a zip, or a pickle, or anything but safetensors" * 10)
    return path


def huge_header(path: Path) -> Path:
    """A safetensors file whose first 8 bytes claim a 2 GB JSON header (the file is 1 KB)."""
    path.write_bytes(struct.pack("<Q", 2 << 30) + b"{" + b" " * 1000)
    return path


def lfs_pointer(path: Path) -> Path:
    """What `git clone` without git-lfs leaves in place of a LoRA (the spec's three lines)."""
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:9b1e5a4c3d2f10e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4\n"
                    "size 19012345\n", encoding="ascii")
    return path


def html_page(path: Path) -> Path:
    """A sign-in page saved under the LoRA's name (a download link that needed a login)."""
    path.write_text("<!DOCTYPE html>\n<html><head><title>Log in</title></head><body><form></form></body></html>\n",
                    encoding="utf-8")
    return path


def sd15_lora(path: Path) -> Path:
    """A real safetensors LoRA for SD 1.5's UNet (kohya names): nothing in it applies to FLUX."""
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    save_file({f"{base}.lora_down.weight": torch.randn(4, 320, generator=g),
               f"{base}.lora_up.weight": torch.randn(320, 4, generator=g),
               f"{base}.alpha": torch.tensor(4.0)}, str(path),
              metadata={"ss_base_model_version": "sd_v1", "ss_network_dim": "4"})
    return path


def workflow_with_unknown_fields(workflow: dict) -> dict:
    """The workflow as a newer frontend (or another pack) might save it: unknown fields everywhere."""
    wf = json.loads(json.dumps(workflow))
    wf["future_field"] = {"nested": [1, 2, 3]}
    wf.setdefault("extra", {})["unknown_extension_state"] = "x" * 100
    for node in wf["nodes"]:
        node["unknown_node_field"] = True
        node.setdefault("properties", {})["unknown_property"] = [None, {"a": 1}]
    return wf
