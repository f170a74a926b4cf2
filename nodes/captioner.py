"""LikenessGeminiCaptioner: captions a prepared set with Gemini in the seed's template, trigger word first."""
from __future__ import annotations

import os

from comfy_api.v0_0_2 import io

from ..likeness.captions.caption_template import DEFAULT_FORBIDDEN_TRAITS, DEFAULT_INSTRUCTIONS
from ..likeness.captions.captioning import DEFAULT_MODEL, CaptionRun, CaptionSettings, caption_dataset, checked_settings
from ..likeness.dataset.set_changes import SetWatch
from ..likeness.errors import InputError
from ..likeness.money.prices import load_prices
from .host import NodeProgress, executing_node_id, output_dir, user_dir, user_errors
from .types import Dataset

SETS = SetWatch()      # the set each captioner node last ran on: a caption edited since makes it run again


def check_gemini_model(model: object, custom_model: object) -> bool | str:
    """True, or why the chosen Gemini model cannot be used. Any model id is accepted (the list is a suggestion,
    not a closed set); a linked input (not a string yet) is checked when it runs."""
    if not isinstance(model, str):
        return True
    try:
        checked_settings(CaptionSettings(model=str(custom_model or "").strip() or model))
    except InputError as exc:
        return str(exc)
    return True


def model_choices() -> list[str]:
    """The models of the editable price table (yours first), current default on top; any other id is typed
    into custom_model."""
    known = [m for m in load_prices(user_dir()).data.get("gemini_per_million_tokens", {}) if m != "default"]
    return [DEFAULT_MODEL] + [m for m in known if m != DEFAULT_MODEL]


class GeminiCaptioner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessGeminiCaptioner",
            display_name="Likeness Gemini Captioner",
            category="Likeness",
            description="Captions every photo of the set with Gemini in the seed's template (type of image, "
                        "subject, hair, clothing, pose, background, expression, camera and lighting), puts the "
                        "trigger word first, and writes each caption into the photo's .txt. Captions you edited "
                        "are kept, answers are cached so nothing is paid twice, and the report shows the cost "
                        "and anything to review. The key comes from GEMINI_API_KEY or the key file, never a "
                        "widget.",
            inputs=[
                Dataset.Input("dataset", tooltip="The prepared set from Likeness Dataset Loader."),
                io.Combo.Input("model", options=model_choices(), default=DEFAULT_MODEL,
                               tooltip="Gemini model. The list comes from the price table (prices.json); "
                                       "type any other id in custom_model."),
                io.String.Input("custom_model", default="",
                                tooltip="A Gemini model id to use instead of the list (model ids change every "
                                        "few months), e.g. gemini-3.5-flash-lite. Empty: use model."),
                io.String.Input("instructions", default=DEFAULT_INSTRUCTIONS, multiline=True,
                                dynamic_prompts=False,
                                tooltip="What Gemini is asked (the seed's prompt). Gemini fills the template's "
                                        "fields; the pack writes the sentence and puts the trigger word first. "
                                        "Changing this captions the set again."),
                io.Boolean.Input("overwrite", default=False,
                                 tooltip="Also replace captions you edited by hand (or brought with the photos). "
                                         "Off: your edits always win."),
                io.Int.Input("concurrency", default=4, min=1, max=16,
                             tooltip="How many images are sent to Gemini at the same time."),
                io.Int.Input("rpm", default=60, min=0, max=10000,
                             tooltip="At most this many requests per minute (the free tier allows about 10); "
                                     "0: no limit."),
                io.String.Input("forbidden_traits", default=DEFAULT_FORBIDDEN_TRAITS, multiline=True,
                                dynamic_prompts=False,
                                tooltip="Comma-separated words the review flags in a caption: identity traits "
                                        "the trigger word should learn, never the caption."),
                io.String.Input("vertex_project", default="", optional=True,
                                tooltip="Google Cloud project to use Vertex AI with application-default "
                                        "credentials instead of a Gemini API key. Empty: Gemini API key."),
                io.String.Input("vertex_location", default="global", optional=True,
                                tooltip="Vertex AI location, e.g. global or us-central1 (only with "
                                        "vertex_project)."),
            ],
            outputs=[
                Dataset.Output("captioned_dataset", display_name="dataset",
                               tooltip="The same set with its captions, for the trainer."),
                io.String.Output("caption_list", display_name="captions", is_output_list=True,
                                 tooltip="Each photo's caption, in the set's order."),
                io.String.Output("report", display_name="report",
                                 tooltip="What was captioned, cached, kept or blocked, the cost, and the lint "
                                         "flags to review."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,   # writes the .txt side-cars: worth running on its own
        )

    @classmethod
    def validate_inputs(cls, model, custom_model) -> bool | str:
        return check_gemini_model(model, custom_model)

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> str:
        # ComfyUI's cache would serve the old captions after an edit in the prepared set; this changes then.
        return SETS.fingerprint(executing_node_id())

    @classmethod
    async def execute(cls, dataset, model, custom_model, instructions, overwrite, concurrency, rpm,
                      forbidden_traits, vertex_project="", vertex_location="global") -> io.NodeOutput:
        settings = CaptionSettings(model=custom_model.strip() or model, instructions=instructions,
                                   overwrite=overwrite, concurrency=concurrency, rpm=rpm,
                                   forbidden_traits=forbidden_traits, vertex_project=vertex_project or "",
                                   vertex_location=vertex_location or "")
        with user_errors():
            run = await caption_dataset(dataset, settings, user_dir(),
                                        NodeProgress(cls.hidden.unique_id, len(dataset.items)))
        SETS.ran(cls.hidden.unique_id, run.dataset, unfinished=run.count("failed") > 0)
        report = run.report()
        return io.NodeOutput(run.dataset, run.captions, report,
                             ui={"text": [report], "likeness_review": [review_ui(run, forbidden_traits)]})


def review_ui(run: CaptionRun, forbidden_traits: str) -> dict:
    """What the canvas editor needs to load the set through the pack's route."""
    folder = os.path.realpath(run.dataset.folder)
    root = os.path.realpath(output_dir())
    inside = folder.startswith(root + os.sep)
    return {"folder": os.path.relpath(folder, root) if inside else "", "trigger_word": run.dataset.trigger_word,
            "forbidden_traits": forbidden_traits,
            "flags": [{"image": f.image, "kind": f.kind, "detail": f.detail} for f in run.flags]}


NODES = [GeminiCaptioner]
