"""The one place that lists every node the pack registers (ids are a public contract: never rename)."""
from comfy_api.v0_0_2 import ComfyExtension, io

from . import (battery_report, captioner, dataset, flux_sampler, lora_reference, lora_stack, playground_routes,
               prompt_refiner, replicate_sampler, review_gate, routes, score, strength_sweep, trainer, training_battery)

NODE_MODULES = [dataset, captioner, review_gate, lora_stack, flux_sampler, trainer, replicate_sampler, prompt_refiner,
                score, strength_sweep, training_battery, battery_report, lora_reference]
routes.register()  # the caption review editor's HTTP routes
playground_routes.register()  # the playground page at /likeness/playground and its routes


class LikenessExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [node for module in NODE_MODULES for node in module.NODES]
