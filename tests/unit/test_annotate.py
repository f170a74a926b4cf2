"""The score node's preview: the scored face boxed in the verdict's colour, the rank and number on top."""
from __future__ import annotations

import numpy as np
from PIL import Image

from likeness.identity import Face, ImageScore
from likeness.identity.annotate import NONE, SAME, annotated


def test_the_face_is_boxed_in_the_verdicts_colour_and_the_label_sits_top_left():
    image = Image.new("RGB", (512, 512), (128, 128, 128))
    face = Face((200, 200, 300, 300), ((280, 230), (260, 230), (220, 230), (240, 230), (250, 270)), 1.0)
    out = np.asarray(annotated(image, ImageScore(72.0, "", 0.34, "dlib", True, 1, face), rank=1))
    assert out.shape == (512, 512, 3) and np.asarray(image).sum() != out.sum()
    assert tuple(out[250, 200]) == SAME and tuple(out[300, 250]) == SAME        # the box's edges
    assert tuple(out[250, 250]) == (128, 128, 128)                                 # inside left alone
    assert (out[:20, :100] == SAME).all(axis=2).any()                            # the label's text


def test_an_image_without_a_number_says_why_in_red():
    image = Image.new("RGB", (256, 256), (128, 128, 128))
    out = np.asarray(annotated(image, ImageScore(None, "no face", None, "dlib", None, 0), rank=3))
    assert (out[:20, :120] == NONE).all(axis=2).any()
    assert tuple(out[200, 200]) == (128, 128, 128)
