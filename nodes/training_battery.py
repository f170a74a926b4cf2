"""LikenessTrainingBattery: variants of the training settings, trained in parallel on Replicate under one budget."""
from __future__ import annotations

from typing import Any

from comfy_api.v0_0_2 import io

from ..likeness.errors import InputError
from ..likeness.training.battery import CONCURRENCY, CONFIRM_ABOVE, BatterySettings, run_battery
from ..likeness.training.battery_plan import DEFAULT_BASE, DEFAULT_VARIATIONS, MODES, plan_battery
from .host import NodeProgress, loras_dir, user_dir, user_errors
from .trainer import StatusEvents
from .types import Battery, Dataset


class TrainingBattery(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessTrainingBattery",
            display_name="Likeness Training Battery",
            category="Likeness",
            description="The seed's 'test batteries': trains several variants of your LoRA (rank, steps per image, "
                        "layers, …) from one captioned dataset, in parallel on Replicate "
                        f"({CONCURRENCY} at a time). Before anything is paid it checks every variant against the "
                        "trainer's schema, shows the total estimated cost and time, refuses a battery that would go "
                        "over your monthly budget as a whole, and asks for a tick above "
                        f"{CONFIRM_ABOVE} new trainings. Each variant is one never-twice training: queuing again "
                        "re-attaches to running ones and reuses finished ones. Each LoRA is installed with its "
                        "variant in its file name and metadata. Cancel stops every running training. Compare them "
                        "with Likeness Battery Report.",
            inputs=[
                Dataset.Input("dataset", tooltip="The captioned training set (dataset loader, then the Gemini "
                                                 "captioner)."),
                io.String.Input("destination", default="",
                                tooltip="The Replicate model that receives the LoRAs: <your username>/<model name> "
                                        "(or just a model name). Created, private, if missing; each variant "
                                        "becomes one version of it. The LoRA files are named after it plus the "
                                        "variant, e.g. me-lora-rank16.safetensors."),
                io.String.Input("base", default=DEFAULT_BASE, multiline=True,
                                tooltip="The base configuration, one 'setting: value' per line; the seed's recipe "
                                        "by default (and for any setting left out). Settings: steps_per_image or "
                                        "steps, lora_rank, learning_rate, layers (7/12/16/20, 7/20, a list like "
                                        "7/12, all, or a regex), optimizer, batch_size, resolution, "
                                        "caption_dropout_rate, autocaption, or any other trainer input by name."),
                io.String.Input("variations", default=DEFAULT_VARIATIONS, multiline=True,
                                tooltip="What to try, one 'setting: value, value, …' per line (semicolons instead "
                                        "of commas when a value holds commas), e.g.\nlora_rank: 16, 32, 64\n"
                                        "steps_per_image: 30, 40, 50\nlayers: 7/12/16/20, all"),
                io.Combo.Input("expand", options=list(MODES), default=MODES[0],
                               tooltip="one factor at a time: the base plus one training per value that differs "
                                       "from it (the table above: 6). full grid: every combination (18). The node "
                                       "shows how many trainings it makes."),
                io.Boolean.Input("confirm_large_battery", default=False,
                                 tooltip=f"Tick to allow more than {CONFIRM_ABOVE} new trainings in one battery "
                                         "(each costs a couple of dollars). Change the number with "
                                         "battery_confirm_above in ComfyUI/user/likeness/config.json."),
                io.String.Input("trainer_version", default="",
                                tooltip="Empty: the latest ostris/flux-dev-lora-trainer. Or a 64-character version "
                                        "id, or owner/name:<version id>, to pin one for every variant."),
                io.String.Input("wandb_project", default="",
                                tooltip="Optional W&B monitoring, as the seed did: a Weights & Biases project name "
                                        "makes each variant log its sample images there every 100 steps (one run "
                                        "per variant). Needs WANDB_API_KEY in the environment or the file "
                                        "ComfyUI/user/likeness/wandb_api_key (never a widget). Empty: off."),
            ],
            outputs=[
                Battery.Output("battery", display_name="battery",
                               tooltip="Every variant, its LoRA, cost and training time, for Likeness Battery "
                                       "Report."),
                io.String.Output("lora_names", display_name="lora_names", is_output_list=True,
                                 tooltip="The installed LoRA file of each finished variant (in models/loras)."),
                io.String.Output("summary", display_name="summary",
                                 tooltip="What was trained, reused or failed, with costs and Replicate links."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, base=None, variations=None, expand=None) -> bool | str:
        # the tables are checked when the prompt is queued, before the dataset is even prepared (a table that
        # comes from another node's output is checked when the battery runs)
        if base is None or variations is None or expand is None:
            return True
        try:
            plan_battery(base, variations, expand)
        except InputError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, dataset, destination, base, variations, expand, confirm_large_battery, trainer_version,
                wandb_project="") -> io.NodeOutput:
        settings = BatterySettings(destination, base, variations, expand, confirm_large_battery, trainer_version,
                                   wandb_project)
        with user_errors():
            record = run_battery(dataset, settings, user_dir=user_dir(), loras_dir=loras_dir(),
                                 progress=NodeProgress(cls.hidden.unique_id),
                                 status=VariantStatusEvents(cls.hidden.unique_id))
        names = [run.record.lora_file for run in record.finished]
        return io.NodeOutput(record, names, record.summary(), ui={"text": [record.summary()]})


class VariantStatusEvents:
    """Each variant's live status, in the trainer's shapes and through its StatusEvents: on the pack's status
    board under "<node id>#<variant>" and sent as a `likeness.training` event that names the battery node, so
    the canvas shows every variant live and after a reload."""

    def __init__(self, node_id: str | None):
        self.node_id = node_id

    def __call__(self, index: int, status: dict[str, Any]) -> None:
        StatusEvents(self.node_id, f"#{index}")(status)


NODES = [TrainingBattery]
