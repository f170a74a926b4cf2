"""Test-only nodes: TinyFluxModel, TinyFluxClip, TinyLoraStack, TinyModelWeights, FullWidthFluxCheckpoint."""
from __future__ import annotations

import json
import logging
import os

import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.supported_models
import folder_paths
import torch
from comfy_api.v0_0_2 import ComfyExtension, io
from safetensors.torch import save_file

HIDDEN = 128
UNET_CONFIG = dict(image_model="flux", in_channels=16, out_channels=16, patch_size=2, vec_in_dim=32,
                   context_in_dim=64, hidden_size=HIDDEN, mlp_ratio=4.0, num_heads=2, depth=1,
                   depth_single_blocks=1, axes_dim=[16, 24, 24], theta=10000, qkv_bias=True, guidance_embed=True)
TOKENS = 8


def flux_config(**config) -> dict:
    """A FLUX.1 model config for this ComfyUI: from 0.33 FluxParams requires `txt_ids_dims` ([] for FLUX.1)."""
    import dataclasses

    import comfy.ldm.flux.model

    fields = {f.name for f in dataclasses.fields(comfy.ldm.flux.model.FluxParams)}
    return {**config, "txt_ids_dims": []} if "txt_ids_dims" in fields else config
LoraStack = io.Custom("LORA_STACK")


def random_state_dict(shapes: dict[str, tuple], seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith(".scale"):
            out[key] = torch.ones(shape, dtype=dtype)
        elif key.endswith(".bias"):
            out[key] = torch.zeros(shape, dtype=dtype)
        else:
            out[key] = (torch.randn(shape, generator=g) * 0.02).to(dtype)
    return out


def build_tiny_flux(seed: int) -> comfy.model_patcher.ModelPatcher:
    model_config = comfy.supported_models.Flux(flux_config(**UNET_CONFIG))
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    model_config.set_inference_dtype(torch.float32, mm.unet_manual_cast(torch.float32, load_device,
                                                                           model_config.supported_inference_dtypes))
    model = model_config.get_model({}, "", device=offload_device)
    shapes = {k: tuple(v.shape) for k, v in model.diffusion_model.state_dict().items()}
    model.load_model_weights(random_state_dict(shapes, seed), "")   # keys relative to diffusion_model
    if any(not torch.isfinite(p).all() for p in model.diffusion_model.state_dict().values()):
        raise RuntimeError("tiny FLUX has uninitialised weights")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


class TinyFluxModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TinyFluxModel", category="likeness_test", description="A 1 M-param FLUX.",
                         inputs=[io.Int.Input("seed", default=0, min=0, max=2**31, tooltip="weights seed")],
                         outputs=[io.Model.Output(tooltip="tiny FLUX")])

    @classmethod
    def execute(cls, seed) -> io.NodeOutput:
        return io.NodeOutput(build_tiny_flux(seed))


# --- a tiny text encoder behind a real comfy.sd.CLIP ------------------------------------------------
class TinyTokenizer:
    def __init__(self, embedding_directory=None, tokenizer_data=None):
        pass

    def tokenize_with_weights(self, text, return_word_ids=False, **kwargs):
        ids = list(text.encode("utf-8"))[:TOKENS]
        ids += [0] * (TOKENS - len(ids))
        return {"tiny": [[(i, 1.0) for i in ids]]}

    def untokenize(self, token_weight_pair):
        return token_weight_pair

    def state_dict(self):
        return {}


def _nest(root: torch.nn.Module, path: str, leaf: torch.nn.Module) -> None:
    parts = path.split(".")
    node = root
    for part in parts[:-1]:
        if not hasattr(node, part):
            node.add_module(part, torch.nn.Module() if not part.isdigit() else torch.nn.Module())
        node = getattr(node, part)
    node.add_module(parts[-1], leaf)


Q_PROJ = "clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj"


class TinyTextEncoder(torch.nn.Module):
    """Bytes → embedding (64) + a CLIP-L-named q_proj (so kohya `lora_te1_` keys map) → cond, pooled (32)."""

    def __init__(self, device=None, dtype=None, model_options=None):
        super().__init__()
        self.dtypes = {torch.float32}
        self.embed = torch.nn.Embedding(256, 64)
        _nest(self, Q_PROJ, torch.nn.Linear(64, 64, bias=False))
        self.pool = torch.nn.Linear(64, 32, bias=False)
        g = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def q_proj(self) -> torch.nn.Linear:
        return self.get_submodule(Q_PROJ)

    def reset_clip_options(self):
        pass

    def set_clip_options(self, options):
        pass

    def encode_token_weights(self, token_weight_pairs):
        logging.info("likeness test pack: tiny clip encoded a prompt")      # counted by the tests
        ids = torch.tensor([[t for t, _ in token_weight_pairs["tiny"][0]]], device=self.embed.weight.device)
        h = self.embed(ids)
        h = h + self.q_proj()(h)
        return h.float(), self.pool(h.mean(1)).float()


class _TinyTarget:
    params: dict = {}
    clip = TinyTextEncoder
    tokenizer = TinyTokenizer


class TinyFluxClip(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TinyFluxClip", category="likeness_test",
                         description="A real comfy.sd.CLIP over a tiny text encoder (cond 64, pooled 32).",
                         inputs=[], outputs=[io.Clip.Output(tooltip="tiny CLIP")])

    @classmethod
    def execute(cls) -> io.NodeOutput:
        return io.NodeOutput(comfy.sd.CLIP(target=_TinyTarget(), parameters=1))


class TinyLoraStack(io.ComfyNode):
    """Emits a LORA_STACK the way other packs (Efficiency, Comfyroll) do."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TinyLoraStack", category="likeness_test", description="LORA_STACK from JSON.",
                         inputs=[io.String.Input("stack", default="[]", tooltip='[["name", 0.5, 0.5]]')],
                         outputs=[LoraStack.Output(tooltip="LORA_STACK")])

    @classmethod
    def execute(cls, stack) -> io.NodeOutput:
        return io.NodeOutput([tuple(row) for row in json.loads(stack)])


class TinyModelWeights(io.ComfyNode):
    """Patches the model (and CLIP) as sampling would, and saves their weights for the test to compare."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TinyModelWeights", category="likeness_test", is_output_node=True,
                         description="Dumps patched weights to output/<name>.safetensors.",
                         inputs=[io.Model.Input("model", tooltip="model"),
                                 io.String.Input("name", default="weights", tooltip="file name"),
                                 io.Clip.Input("clip", optional=True, tooltip="clip")],
                         outputs=[])

    @classmethod
    def execute(cls, model, name, clip=None) -> io.NodeOutput:
        mm.load_models_gpu([model], force_patch_weights=True)
        sd = {f"model.{k}": v.detach().float().cpu().clone()
              for k, v in model.model.state_dict().items() if k.startswith("diffusion_model.")}
        if clip is not None:
            mm.load_models_gpu([clip.patcher], force_patch_weights=True)
            sd.update({f"clip.{k}": v.detach().float().cpu().clone()
                       for k, v in clip.cond_stage_model.state_dict().items()})
        return io.NodeOutput(ui={"text": [save_to_output(name, sd)]})


class TinyShow(io.ComfyNode):
    """Shows any value (a string, a LORA_STACK) as JSON in the node's ui output, for tests to read."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TinyShow", category="likeness_test", is_output_node=True,
                         description="ui text = json of the value.",
                         inputs=[io.AnyType.Input("value", tooltip="anything")], outputs=[])

    @classmethod
    def execute(cls, value) -> io.NodeOutput:
        return io.NodeOutput(ui={"text": [json.dumps(value, default=str)]})


class TinyTensorDump(io.ComfyNode):
    """Saves an IMAGE and/or LATENT to output/<name>.safetensors, so tests compare them bit for bit."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="TinyTensorDump", category="likeness_test", is_output_node=True,
                         description="Dumps tensors.",
                         inputs=[io.String.Input("name", default="tensors", tooltip="file name"),
                                 io.Image.Input("image", optional=True, tooltip="image"),
                                 io.Latent.Input("latent", optional=True, tooltip="latent")], outputs=[])

    @classmethod
    def execute(cls, name, image=None, latent=None) -> io.NodeOutput:
        sd = {}
        if image is not None:
            sd["image"] = image.detach().cpu().contiguous()
        if latent is not None:
            sd["latent"] = latent["samples"].detach().cpu().contiguous()
        return io.NodeOutput(ui={"text": [save_to_output(name, sd)]})


class FullWidthFluxCheckpoint(io.ComfyNode):
    """Writes the reference's full-width one-block FLUX (hidden 3072) into models/diffusion_models."""

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="FullWidthFluxCheckpoint", category="likeness_test", is_output_node=True,
                         description="Generates fw_flux_d1.safetensors (about 1 GB, bf16).",
                         inputs=[io.String.Input("name", default="fw_flux_d1.safetensors", tooltip="file name")],
                         outputs=[])

    @classmethod
    def execute(cls, name) -> io.NodeOutput:
        import comfy.ldm.flux.model
        import comfy.ops

        path = os.path.join(folder_paths.get_folder_paths("diffusion_models")[0], name)
        if not os.path.exists(path):
            cfg = dict(in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=64, hidden_size=3072,
                       mlp_ratio=4.0, num_heads=24, depth=1, depth_single_blocks=1, axes_dim=[16, 56, 56],
                       theta=10000, qkv_bias=True, guidance_embed=True, patch_size=2)
            meta = comfy.ldm.flux.model.Flux(image_model="flux", dtype=torch.bfloat16, device="meta",
                                             operations=comfy.ops.disable_weight_init, **flux_config(**cfg))
            shapes = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
            os.makedirs(os.path.dirname(path), exist_ok=True)
            save_file(random_state_dict(shapes, 0, torch.bfloat16), path + ".partial")
            os.replace(path + ".partial", path)
        return io.NodeOutput(ui={"text": [path]})


def write_taef1_fixtures() -> None:
    """Random-weight TAEF1 files in models/vae_approx, so VAELoader offers "taef1" (a real, tiny VAE)."""
    from comfy.taesd.taesd import Decoder, Encoder

    folder = folder_paths.get_folder_paths("vae_approx")[0]
    os.makedirs(folder, exist_ok=True)
    for name, cls in (("taef1_encoder", Encoder), ("taef1_decoder", Decoder)):
        path = os.path.join(folder, f"{name}.safetensors")
        if not os.path.exists(path):
            shapes = {k: tuple(v.shape) for k, v in cls(16).state_dict().items()}   # comfy ops: uninitialised
            sd = random_state_dict(shapes, 0)
            sd = {k: (v * 5 if k.endswith(".weight") else v) for k, v in sd.items()}   # std 0.1
            save_file({k: v.contiguous() for k, v in sd.items()}, path)
            logging.info("likeness test pack: wrote %s", path)


class TestPackExtension(ComfyExtension):
    async def get_node_list(self):
        return [TinyFluxModel, TinyFluxClip, TinyLoraStack, TinyModelWeights, TinyShow, TinyTensorDump,
                FullWidthFluxCheckpoint]


def save_to_output(name: str, tensors: dict) -> str:
    """Writes `tensors` to output/<name>.safetensors; the path goes in the node's ui for tests to read."""
    path = os.path.join(folder_paths.get_output_directory(), f"{name}.safetensors")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path)
    return path
