"""LikenessPromptRefiner: a short idea → a detailed FLUX prompt, trigger word first, no identity traits (Gemini)."""
from __future__ import annotations

from comfy_api.v0_0_2 import io

from ..likeness.captions.captioning import DEFAULT_MODEL
from ..likeness.generation.prompt_refiner import RefineSettings, refine_prompt
from .captioner import check_gemini_model, model_choices
from .host import user_dir, user_errors


class PromptRefiner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LikenessPromptRefiner",
            display_name="Likeness Prompt Refiner",
            category="Likeness",
            description="Turns a short idea into a detailed, natural FLUX prompt in the style of the seed's examples "
                        "(type of image, camera, light, setting, clothing, pose, mood), with your trigger word first. "
                        "It never describes identity traits such as eye colour or face shape: your LoRA carries "
                        "those. Uses Gemini with the captioner's key, cache and spend ledger: the same idea is paid "
                        "once (a fraction of a cent), and the cost shows on the node.",
            inputs=[
                io.String.Input("idea", multiline=True, default="",
                                tooltip="A few words about the picture, e.g. 'portrait in a 1960s diner, film look'. "
                                        "Your trigger word may appear in it; it is never sent to Gemini."),
                io.String.Input("trigger_word", default="",
                                tooltip="Your LoRA's trigger word (connect the stack's trigger_words): it is put at "
                                        "the start of the prompt."),
                io.Combo.Input("model", options=model_choices(), default=DEFAULT_MODEL,
                               tooltip="Gemini model, from the price table; type any other id in custom_model."),
                io.String.Input("custom_model", default="",
                                tooltip="A Gemini model id to use instead of the list. Empty: use model."),
                io.Int.Input("variant", default=0, min=0, max=1000,
                             tooltip="0: the first answer for this idea (cached). 1, 2 …: another version of the "
                                     "same idea (each one paid once, then cached)."),
                io.String.Input("vertex_project", default="", optional=True,
                                tooltip="Google Cloud project to use Vertex AI with application-default "
                                        "credentials instead of a Gemini API key. Empty: Gemini API key."),
                io.String.Input("vertex_location", default="global", optional=True,
                                tooltip="Vertex AI location (only with vertex_project)."),
            ],
            outputs=[
                io.String.Output(display_name="prompt",
                                 tooltip="The refined prompt, trigger word first, for a sampler's prompt input."),
            ],
        )

    @classmethod
    def validate_inputs(cls, model, custom_model) -> bool | str:
        return check_gemini_model(model, custom_model)

    @classmethod
    async def execute(cls, idea, trigger_word, model, custom_model, variant, vertex_project="",
                      vertex_location="global") -> io.NodeOutput:
        settings = RefineSettings(model=custom_model.strip() or model, variant=variant,
                                  vertex_project=vertex_project or "", vertex_location=vertex_location or "")
        with user_errors():
            refined = await refine_prompt(idea, trigger_word, settings, user_dir())
        return io.NodeOutput(refined.prompt, ui={"text": [f"{refined.prompt}\n\n{refined.summary()}"]})


NODES = [PromptRefiner]
