"""The seed's caption template: the fields asked for, and the caption assembled in code."""
from __future__ import annotations

import json
import re

from likeness.captions.caption_template import DEFAULT_INSTRUCTIONS, FIELDS, assemble_caption, response_schema

ANSWER = {"image_type": "a photo", "subject": "young woman", "pronoun": "she",
          "hair": "curly brown hair tied in a ponytail", "clothing": "a red hoodie and blue jeans",
          "action_pose": "sitting on a park bench", "background": "a park with autumn leaves",
          "facial_expression": "looking directly at the camera with a relaxed smile.",
          "additional_details": "", "camera_and_lighting": "medium shot, eye level, soft natural light"}


def test_schema_asks_for_the_template_fields_and_no_identity_trait():
    schema = response_schema()
    names = list(schema["properties"])
    assert names == [name for name, _, _ in FIELDS]
    assert set(schema["required"]) <= set(names)
    assert {"clothing", "action_pose", "background", "camera_and_lighting"} <= set(schema["required"])
    identity = re.compile(r"eye|face_shape|skin|ethnic|jaw|name|trigger", re.IGNORECASE)
    assert [n for n in names if identity.search(n)] == []
    assert schema["properties"]["pronoun"]["enum"] == ["he", "she", "they"]
    json.dumps(schema)  # goes on the wire as responseJsonSchema


def test_caption_starts_with_the_trigger_word_and_reads_like_the_seed():
    caption = assemble_caption(ANSWER, "pelarbues")
    assert caption == ("pelarbues, a photo of a young woman with curly brown hair tied in a ponytail, wearing a red "
                       "hoodie and blue jeans. She is sitting on a park bench in a park with autumn leaves. Looking "
                       "directly at the camera with a relaxed smile. Medium shot, eye level, soft natural light.")


def test_trigger_word_is_first_even_when_the_answer_names_someone():
    caption = assemble_caption({**ANSWER, "image_type": "Pelarbues posing, a photo"}, "ohwx")
    assert caption.startswith("ohwx, ")


def test_missing_fields_leave_no_gaps():
    caption = assemble_caption({"image_type": "a photo", "subject": "man", "pronoun": "he",
                                "camera_and_lighting": "close-up."}, "ohwx")
    assert caption == "ohwx, a photo of a man. Close-up."
    assert "  " not in caption and ".." not in caption and " ." not in caption


def test_unknown_pronoun_falls_back_to_they():
    caption = assemble_caption({**ANSWER, "pronoun": "it"}, "ohwx")
    assert "They are sitting on a park bench" in caption


def test_default_instructions_are_the_seeds_prompt_without_eye_colour():
    assert "[type of image] of a [subject description] with [hair description]" in DEFAULT_INSTRUCTIONS
    assert "Do not include the colour of the eyes" in DEFAULT_INSTRUCTIONS
    assert "Camera and lighting" in DEFAULT_INSTRUCTIONS
    assert "green eyes" not in DEFAULT_INSTRUCTIONS.lower()
