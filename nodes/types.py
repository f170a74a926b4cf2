"""The custom socket types the pack's nodes pass between each other."""
from comfy_api.v0_0_2 import io

Dataset = io.Custom("LIKENESS_DATASET")
Training = io.Custom("LIKENESS_TRAINING")
Battery = io.Custom("LIKENESS_BATTERY")
# The ecosystem's de-facto stack type (Efficiency, Comfyroll, LoRA Manager): [(lora_name, model_strength, clip_strength)]
LoraStack = io.Custom("LORA_STACK")
