"""LoRA files with known factors in every key format, for a tiny FLUX (hidden 128) or the full width (3072).

Pure torch + safetensors (no ComfyUI), so unit tests, integration tests and the benchmark share it.
A module is named canonically (`single_blocks.0.linear2`, `double_blocks.0.img_attn.qkv`, or a slice of
a fused weight: `double_blocks.0.img_attn.qkv:q`) and written under each trainer's names.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

SLICES = {"q": 0, "k": 1, "v": 2}


@dataclass
class Factor:
    module: str                  # canonical, e.g. "single_blocks.0.linear2" or "double_blocks.0.img_attn.qkv:k"
    up: torch.Tensor             # B: out × r
    down: torch.Tensor           # A: r × in
    alpha: float | None = None

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.down.shape[0]

    def target(self, hidden: int) -> tuple[str, int]:
        """(ComfyUI weight key, first row) the factor patches."""
        base, _, part = self.module.partition(":")
        return f"diffusion_model.{base}.weight", (SLICES[part] * hidden if part else 0)


def factors(hidden: int = 128, rank: int = 4, seed: int = 0, alpha: float | None = None,
            modules: tuple[str, ...] = ("single_blocks.0.linear2", "double_blocks.0.img_attn.qkv:q"),
            magnitude: float = 0.05) -> list[Factor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"single_blocks.0.linear2": (hidden, 5 * hidden), "double_blocks.0.img_attn.qkv": (3 * hidden, hidden),
              "double_blocks.0.img_attn.proj": (hidden, hidden)}
    out = []
    for module in modules:
        base, _, part = module.partition(":")
        rows, cols = shapes[base]
        rows = hidden if part else rows
        out.append(Factor(module, torch.randn(rows, rank, generator=g) * magnitude,
                          torch.randn(rank, cols, generator=g) * magnitude, alpha))
    return out


def key_prefix(fmt: str, module: str) -> str:
    base, _, part = module.partition(":")
    block, n, layer = base.split(".", 2)          # e.g. single_blocks, 0, linear2
    if part and fmt in ("bfl", "kohya", "xlabs"):
        raise ValueError(f"{fmt} names whole weights only, not the slice {module}")
    if fmt == "xlabs":                            # x-flux: lora1 = image stream, lora2 = text stream
        return f"{block}.{n}.processor." + {"img_attn.qkv": "qkv_lora1", "img_attn.proj": "proj_lora1"}[layer]
    if fmt == "bfl":
        return f"diffusion_model.{base}"
    if fmt == "kohya":
        return f"lora_unet_{base.replace('.', '_')}"
    diffusers = _diffusers_name(block, n, layer, part)
    if fmt == "diffusers":
        return f"transformer.{diffusers}"
    if fmt == "onetrainer":
        return f"lora_transformer_{diffusers.replace('.', '_')}"
    raise ValueError(fmt)


def _diffusers_name(block: str, n: str, layer: str, part: str) -> str:
    if block == "single_blocks":
        return {"linear2": f"single_transformer_blocks.{n}.proj_out"}[layer]
    if layer == "img_attn.qkv":
        return f"transformer_blocks.{n}.attn.to_{part or 'q'}"
    return {"img_attn.proj": f"transformer_blocks.{n}.attn.to_out.0"}[layer]


def write_lora(path: Path, fmt: str, parts: list[Factor], metadata: dict[str, str] | None = None,
               dtype: torch.dtype = torch.float32) -> Path:
    """Writes `parts` under `fmt`'s names: diffusers (lora_A/lora_B, alpha only if given), kohya / bfl /
    onetrainer (lora_down/lora_up + alpha), xlabs (down/up of the double blocks' image stream; x-flux saves no alpha). Slices (`:q`) exist in diffusers only; kohya/bfl get full weights."""
    sd: dict[str, torch.Tensor] = {}
    for f in parts:
        prefix = key_prefix(fmt, f.module)
        if fmt == "diffusers":
            sd[f"{prefix}.lora_A.weight"], sd[f"{prefix}.lora_B.weight"] = f.down, f.up
        elif fmt == "xlabs":
            sd[f"{prefix}.down.weight"], sd[f"{prefix}.up.weight"] = f.down, f.up
        else:
            sd[f"{prefix}.lora_down.weight"], sd[f"{prefix}.lora_up.weight"] = f.down, f.up
        if f.alpha is not None:
            sd[f"{prefix}.alpha"] = torch.tensor(float(f.alpha))
    return _save(path, sd, metadata, dtype)


def write_xlabs_lora(path: Path, hidden: int = 128, rank: int = 4, blocks: int = 1) -> Path:
    g = torch.Generator().manual_seed(7)
    sd = {}
    for b in range(blocks):
        for name, (rows, cols) in {"qkv_lora1": (3 * hidden, hidden), "qkv_lora2": (3 * hidden, hidden),
                                   "proj_lora1": (hidden, hidden), "proj_lora2": (hidden, hidden)}.items():
            sd[f"double_blocks.{b}.processor.{name}.down.weight"] = torch.randn(rank, cols, generator=g)
            sd[f"double_blocks.{b}.processor.{name}.up.weight"] = torch.randn(rows, rank, generator=g)
    return _save(path, sd, None, torch.float32)


def write_sd_lora(path: Path, rank: int = 4) -> Path:
    """A kohya SD 1.5 LoRA (U-Net + text encoder keys): FLUX has none of its layers."""
    g = torch.Generator().manual_seed(8)
    sd = {}
    for prefix in ("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
                   "lora_unet_up_blocks_1_attentions_0_proj_in", "lora_unet_mid_block_attentions_0_proj_out",
                   "lora_te_text_model_encoder_layers_0_self_attn_q_proj"):
        sd[f"{prefix}.lora_down.weight"] = torch.randn(rank, 320, generator=g)
        sd[f"{prefix}.lora_up.weight"] = torch.randn(320, rank, generator=g)
        sd[f"{prefix}.alpha"] = torch.tensor(float(rank))
    return _save(path, sd, {"ss_base_model_version": "sd_v1"}, torch.float32)


def _save(path: Path, sd, metadata, dtype) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: (v.to(dtype) if v.ndim else v).contiguous() for k, v in sd.items()}
    save_file(sd, str(path), metadata=metadata)
    return path
