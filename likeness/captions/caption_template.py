"""The seed's caption template: the instructions sent to Gemini, the JSON fields asked for, and the caption
assembled from them in code, trigger word first.

Gemini never sees the trigger word and is never asked for identity traits (eye colour, face shape, skin
tone): the response schema has no field for them, so the LoRA learns them from the trigger word instead.
"""
from __future__ import annotations

import re
from typing import Any

TEMPLATE_VERSION = 1

# The seed's prompt ("Captioning"), adapted to structured output: the template's parts become JSON fields,
# the trigger word is added by the pack, and the example no longer mentions eye colour.
DEFAULT_INSTRUCTIONS = """\
Generate a caption of the image; consider the gender to use the correct subject.
The caption follows this template:
[type of image] of a [subject description] with [hair description] and [clothing description]. He/she is \
[action/pose] in [background description]. Describe his/her [facial expression]. [Additional details if \
needed]. [Camera and Lighting].

Example:
A photo of a young woman with curly brown hair tied in a ponytail, wearing a red hoodie and blue jeans. She is \
sitting on a park bench with autumn leaves scattered around. She is looking directly at the camera, with a \
relaxed smile. Back view, soft lighting, natural background, DSLR photo, autumn ambiance.

Here's a breakdown of the main elements:
1. Type of image: photo, render, painting.
2. Subject description: age, gender, hair style and colour. Do not include the colour of the eyes, the shape \
of the face or any other feature that cannot be changed.
3. Clothing description: clothes, accessories.
4. Action/Setting: where the person is, their pose or actions.
5. Facial expression: describe their expression, gaze and mouth (never eye colour).
6. Environment: details about the background or surroundings.
7. Camera and lighting: the camera shot (closeup, medium shot, cowboy shot...), angle (eye level shot, low \
angle, high angle...), lighting (natural, flash, backlight...), camera focus (focus full, shallow focus, deep \
focus...) and medium (analog, digital).

Do not name the person. Answer with the JSON fields only."""

DEFAULT_FORBIDDEN_TRAITS = (
    "eye color, eye colour, blue eyes, green eyes, brown eyes, hazel eyes, grey eyes, gray eyes, amber eyes, "
    "face shape, oval face, round face, square face, heart-shaped face, jawline, skin tone, complexion, "
    "ethnicity")

# (field, description for Gemini, required) in the order the caption reads.
FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("image_type", "Type of image with its article, e.g. 'a photo', 'a close-up photo', 'a painting'.", True),
    ("subject", "The subject with an article: age and gender only, e.g. 'a young woman', 'a man in his "
                "forties'. No name, no eye colour, no face shape.", True),
    ("pronoun", "The pronoun for the subject.", True),
    ("hair", "Hair style and colour, e.g. 'short dark hair'.", True),
    ("clothing", "Clothes and accessories, e.g. 'a red hoodie and blue jeans'.", True),
    ("action_pose", "What the person does or how they pose, as a phrase after 'is', e.g. 'sitting on a "
                    "bench'.", True),
    ("background", "Where the person is, as a phrase after 'in', e.g. 'a park with autumn leaves'.", True),
    ("facial_expression", "One sentence on the facial expression, gaze and mouth, without eye colour, e.g. "
                          "'Looking directly at the camera with a relaxed smile'.", True),
    ("additional_details", "Other changeable details worth a sentence; empty when none.", False),
    ("camera_and_lighting", "Shot, angle, lighting, focus and medium as a comma list, e.g. 'medium shot, eye "
                            "level, soft natural light, shallow focus, digital photo'.", True),
)
PRONOUNS = ("he", "she", "they")


def response_schema() -> dict[str, Any]:
    """The JSON Schema Gemini must answer with (sent as responseJsonSchema)."""
    properties: dict[str, Any] = {}
    for name, description, _ in FIELDS:
        properties[name] = {"type": "string", "description": description}
    properties["pronoun"]["enum"] = list(PRONOUNS)
    return {"type": "object", "properties": properties,
            "required": [name for name, _, required in FIELDS if required]}


def assemble_caption(fields: dict[str, Any], trigger_word: str) -> str:
    """The seed's sentence shape, from the answer's fields, with the trigger word first."""
    f = {name: _clean(fields.get(name)) for name, _, _ in FIELDS}
    pronoun = f["pronoun"].lower() if f["pronoun"].lower() in PRONOUNS else "they"
    verb = "are" if pronoun == "they" else "is"
    first = f["image_type"] or "a photo"
    if f["subject"]:
        first += f" of {_with_article(f['subject'])}"
    if f["hair"]:
        first += f" with {f['hair']}"
    if f["clothing"]:
        first += f", wearing {f['clothing']}"
    sentences = [first]
    if f["action_pose"]:
        where = f" in {f['background']}" if f["background"] else ""
        sentences.append(f"{pronoun.capitalize()} {verb} {f['action_pose']}{where}")
    elif f["background"]:
        sentences.append(f"The background is {f['background']}")
    for name in ("facial_expression", "additional_details", "camera_and_lighting"):
        if f[name]:
            sentences.append(f[name][0].upper() + f[name][1:])
    body = ". ".join(s.rstrip(".") for s in sentences) + "."
    return f"{trigger_word}, {body[0].lower() + body[1:]}"


def _clean(value: Any) -> str:
    text = re.sub(r"\s+", " ", str(value or "")).strip()
    return text.rstrip(".").strip()


def _with_article(subject: str) -> str:
    if re.match(r"(?i)^(a|an|the|one|two|three|\d+)\b", subject):
        return subject
    return ("an " if subject[:1].lower() in "aeiou" else "a ") + subject
