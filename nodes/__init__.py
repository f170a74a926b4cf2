"""The one place that lists every node the pack registers (ids are a public contract: never rename)."""
from comfy_api.v0_0_2 import ComfyExtension, io

from . import captioner, dataset, flux_sampler, lora_stack, replicate_sampler, routes, trainer

NODE_MODULES = [dataset, captioner, lora_stack, flux_sampler, trainer, replicate_sampler]
routes.register()  # the caption review editor's HTTP routes


class LikenessExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [node for module in NODE_MODULES for node in module.NODES]
