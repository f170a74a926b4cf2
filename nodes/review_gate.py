"""LikenessReviewGate: the workflow stops after the captions until the user has reviewed them."""
from __future__ import annotations

from comfy_api.v0_0_2 import io
from comfy_execution.graph_utils import ExecutionBlocker

from .types import Dataset


class ReviewGate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessReviewGate",
            display_name="Likeness Review Gate",
            category="Likeness",
            description="Stops a workflow after captioning for the review the seed insists on (\"thoroughly "
                        "review and edit any auto-generated captions\"): while reviewed is off, the nodes after "
                        "it (the trainer and what follows) do not run and nothing is paid. Read and fix the "
                        "captions on the captioner, switch reviewed on, and queue again. A caption edited later "
                        "still reaches the trainer: it trains again on the next queue.",
            inputs=[
                Dataset.Input("dataset", tooltip="The captioned set, from Likeness Gemini Captioner."),
                io.Boolean.Input("reviewed", default=False,
                                 tooltip="Off: stop here (nothing after this node runs or is paid). On: you have "
                                         "read the captions; the set goes on to the trainer."),
            ],
            outputs=[
                Dataset.Output("reviewed_dataset", display_name="dataset",
                               tooltip="The same set, once reviewed is on (nothing flows while it is off)."),
            ],
            is_output_node=True,   # shows what to do even when nothing after it is wired yet
        )

    @classmethod
    def execute(cls, dataset, reviewed) -> io.NodeOutput:
        count = len(dataset.items)
        if reviewed:
            return io.NodeOutput(dataset, ui={"text": [f"Reviewed: the {count} captions go on to training."]})
        text = (f"Stopped for review: read the {count} captions on the captioner and fix any that are wrong "
                "(no eye colour or face shape; the trigger word first). Then switch reviewed on here and queue "
                "again. Nothing after this node ran, and nothing was paid.")
        return io.NodeOutput(ExecutionBlocker(None), ui={"text": [text]})   # None: stop without an error


NODES = [ReviewGate]
