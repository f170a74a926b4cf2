"""LikenessReplicateTrainer: the captioned dataset → a FLUX LoRA trained on Replicate, installed in models/loras."""
from __future__ import annotations

from typing import Any

from comfy_api.v0_0_2 import io

from ..likeness.dataset.set_changes import SetWatch
from ..likeness.errors import InputError
from ..likeness.money.credentials import redact
from ..likeness.training.training import (ALLOWED_TRAINERS_ENV, LAYER_PRESETS, MAX_PHOTOS, OPTIMIZERS, SEED_REGEX,
                                          TrainingSettings, check_trainer_allowed, train_lora)
from ..likeness.training.training_status import status_board
from .host import NodeProgress, executing_node_id, loras_dir, user_dir, user_errors
from .users import may_send, prompt_client, prompt_user
from .types import Dataset, Training

STATUS_EVENT = "likeness.training"      # the server event the canvas's training status listens to
SETS = SetWatch()      # the set each trainer node last trained on: a caption edited since makes it train again


class ReplicateTrainer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessReplicateTrainer",
            display_name="Likeness Replicate Trainer",
            category="Likeness",
            description="Trains your personal FLUX.1-dev LoRA on Replicate (ostris/flux-dev-lora-trainer) with the "
                        "seed's recipe: zips and uploads the captioned photos, follows the training live, and "
                        "installs the LoRA into models/loras. Costs money on Replicate: the estimate is shown "
                        "before and the real cost after. Queuing the same work again never starts a second "
                        "training: it re-attaches to the running one or reuses the finished LoRA; a caption edited "
                        "in the set since trains again. While it trains it holds ComfyUI's queue (Cancel cancels it "
                        "on Replicate). The API token comes from REPLICATE_API_TOKEN (never a widget).",
            inputs=[
                Dataset.Input("dataset", tooltip="The captioned training set from the dataset loader or the "
                                                 "Gemini captioner."),
                io.String.Input("destination", default="",
                                tooltip="The Replicate model that receives the LoRA: <your username>/<model name> "
                                        "(or just a model name for your own account). Created, private, if "
                                        "missing. The installed file is named after it."),
                io.Int.Input("steps", default=0, min=0, max=6000, step=10,
                             tooltip="Training steps; 0 = auto, 40 per photo (the seed: 26 photos → 1040)."),
                io.Int.Input("lora_rank", default=32, min=1, max=128,
                             tooltip="LoRA rank (network dimension). The seed uses 32; 64–128 for complex "
                                     "concepts, at a larger file and cost."),
                io.Float.Input("learning_rate", default=0.0004, min=0.00001, max=0.01, step=0.00001,
                               round=0.00001, tooltip="Learning rate; the seed keeps 0.0004."),
                io.Combo.Input("layers", options=list(LAYER_PRESETS), default="7/12/16/20",
                               tooltip="Which transformer layers to train. 7/12/16/20: the seed's choice "
                                       f"({SEED_REGEX}), a small, focused LoRA; 7/20: TheLastBen's minimum; "
                                       "all: every layer (much larger file); custom regex: use the field "
                                       "below."),
                io.String.Input("custom_layers_regex", default="",
                                tooltip="Used when layers is 'custom regex': a regular expression searched in "
                                        "layer names such as transformer.single_transformer_blocks.7.proj_out."),
                io.Combo.Input("optimizer", options=OPTIMIZERS, default="adamw8bit",
                               tooltip="Optimizer; the seed uses adamw8bit."),
                io.Int.Input("batch_size", default=1, min=1, max=16,
                             tooltip="Photos per step; the seed uses 1 (above 1 turns gradient checkpointing "
                                     "on)."),
                io.String.Input("resolution", default="1024",
                                tooltip="Training resolution(s), comma-separated (e.g. 512,768,1024); the seed "
                                        "uses 1024."),
                io.Float.Input("caption_dropout_rate", default=0.1, min=0.0, max=1.0, step=0.01,
                               tooltip="How often a caption is dropped during training; the seed uses 0.1."),
                io.Boolean.Input("autocaption", default=False,
                                 tooltip="Let Replicate caption photos with LLaVA. Off: your captions (Gemini "
                                         "or .txt files) are used, as in the seed."),
                io.String.Input("trainer_version", default="",
                                tooltip="Empty: the latest ostris/flux-dev-lora-trainer. Or a 64-character "
                                        "version id, or owner/name:<version id>, to pin one. Only that trainer "
                                        "and Replicate's own FLUX trainers are used; another model must be "
                                        f"allowed outside the workflow ({ALLOWED_TRAINERS_ENV} or "
                                        "allowed_trainers in the user folder's likeness/config.json): it would "
                                        "get your photos and run on your bill."),
                io.String.Input("extra_inputs", default="{}", multiline=True,
                                tooltip="Any other trainer input as a JSON object, e.g. "
                                        "{\"cache_latents_to_disk\": true, \"gradient_checkpointing\": true}. "
                                        "Checked against the trainer's schema before anything is uploaded. "
                                        "Never put tokens here: hf_repo_id uses HF_TOKEN, W&B inputs use "
                                        "WANDB_API_KEY (environment or key files)."),
                io.Boolean.Input("allow_over_30_photos", default=False, optional=True,
                                 tooltip=f"Off: a set of more than {MAX_PHOTOS} photos is refused (the seed saw "
                                         "such LoRAs lose focus, and auto steps make them cost more; the message "
                                         "gives both costs). On: train on all of them."),
            ],
            outputs=[
                io.String.Output("lora_name", display_name="lora_name",
                                 tooltip="The installed LoRA's file name in models/loras (listed by LoraLoader "
                                         "and the LoRA stack at once)."),
                io.String.Output("trigger_word", display_name="trigger_word",
                                 tooltip="The word that stands for the person; start prompts with it."),
                Training.Output("training", display_name="training",
                                tooltip="The training record: id, destination version, LoRA file, trigger "
                                        "word, cost, URLs (for the Replicate FLUX sampler)."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, trainer_version) -> bool | str:
        # Someone else's "trainer" is refused when the prompt is queued, before anything runs.
        if not isinstance(trainer_version, str):
            return True
        try:
            check_trainer_allowed(trainer_version, user_dir())
        except InputError as exc:
            return str(exc)
        return True

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> str:
        # ComfyUI's cache would serve the old LoRA after a caption edit in the prepared set; this changes then.
        return SETS.fingerprint(executing_node_id())

    @classmethod
    def execute(cls, dataset, destination, steps, lora_rank, learning_rate, layers, custom_layers_regex,
                optimizer, batch_size, resolution, caption_dropout_rate, autocaption, trainer_version,
                extra_inputs, allow_over_30_photos=False) -> io.NodeOutput:
        settings = TrainingSettings(destination, steps, lora_rank, learning_rate, layers, custom_layers_regex,
                                    optimizer, batch_size, resolution, caption_dropout_rate, autocaption,
                                    trainer_version, extra_inputs, allow_over_30_photos)
        with user_errors():
            record = train_lora(dataset, settings, user_dir=user_dir(), loras_dir=loras_dir(),
                                progress=NodeProgress(cls.hidden.unique_id),
                                status=StatusEvents(cls.hidden.unique_id))
        SETS.ran(cls.hidden.unique_id, dataset)
        return io.NodeOutput(record.lora_file, record.trigger_word, record, ui={"text": [record.summary()]})


class StatusEvents:
    """The training's live status: kept on the pack's status board (GET /likeness/training/status) and sent
    to the page as a `likeness.training` event, so the canvas shows it live and after a reload. A battery's
    variants use the board key "<node id>#<variant>" (`board_suffix`)."""

    def __init__(self, node_id: str | None, board_suffix: str = ""):
        self.node_id = str(node_id or "")
        self.key = self.node_id + board_suffix

    def __call__(self, status: dict[str, Any]) -> None:
        from server import PromptServer  # the running server; absent when imported outside ComfyUI

        user = prompt_user()                       # --multi-user: the status is that user's, sent to their page
        status = {**status, "message": redact(status.get("message", ""), user_dir()), "user": user,
                  "node": self.node_id}
        entry = status_board(user_dir()).update(f"{user}/{self.key}" if user else self.key, status)
        if PromptServer.instance is not None and may_send():
            PromptServer.instance.send_sync(STATUS_EVENT, {"node": self.node_id, **entry}, prompt_client())


NODES = [ReplicateTrainer]
