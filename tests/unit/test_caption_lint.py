"""The review lint: forbidden identity traits, the trigger word, and a structure that differs from the set."""
from __future__ import annotations

from likeness.captions.caption_cache import CaptionFiles
from likeness.captions.caption_lint import lint_captions, parse_traits, review_folder

GOOD = ("pelarbues, a photo of a man with short dark hair, wearing a white shirt. He is standing in a studio. "
        "Looking at the camera with a smile. Medium shot, soft light.")


def kinds(flags, image=None):
    return sorted(f.kind for f in flags if image is None or f.image == image)


def test_a_clean_set_has_no_flags():
    assert lint_captions([("a.jpg", GOOD), ("b.jpg", GOOD), ("c.jpg", GOOD)], "pelarbues") == []


def test_forbidden_traits_are_flagged_case_insensitively_as_whole_phrases():
    flags = lint_captions([("a.jpg", GOOD.replace("with a smile", "with Blue Eyes")),
                           ("b.jpg", GOOD.replace("white shirt", "blue eyeshadow and a shirt"))], "pelarbues")
    assert kinds(flags, "a.jpg") == ["forbidden"]
    assert "blue eyes" in flags[0].detail
    assert kinds(flags, "b.jpg") == []


def test_forbidden_traits_are_configurable():
    caption = GOOD.replace("white shirt", "shirt showing a tattoo") + " Oval face."
    assert kinds(lint_captions([("a.jpg", caption)], "pelarbues", parse_traits("tattoo"))) == ["forbidden"]
    assert kinds(lint_captions([("a.jpg", caption)], "pelarbues", parse_traits(""))) == []
    assert kinds(lint_captions([("a.jpg", caption)], "pelarbues", parse_traits(None))) == ["forbidden"]


def test_a_missing_or_late_trigger_word_is_flagged():
    flags = lint_captions([("a.jpg", GOOD.replace("pelarbues, ", "")),
                           ("b.jpg", "A photo of pelarbues. " + GOOD[11:]),
                           ("c.jpg", GOOD)], "pelarbues")
    assert kinds(flags, "a.jpg") == ["trigger"]
    assert kinds(flags, "b.jpg") == ["trigger"]
    assert kinds(flags, "c.jpg") == []


def test_a_caption_whose_structure_differs_from_the_others_is_flagged():
    short = "pelarbues, a man."
    flags = lint_captions([("a.jpg", GOOD), ("b.jpg", GOOD), ("c.jpg", GOOD), ("d.jpg", short)], "pelarbues")
    assert [f.image for f in flags if f.kind == "structure"] == ["d.jpg"]


def test_an_empty_caption_is_flagged():
    assert kinds(lint_captions([("a.jpg", "  ")], "pelarbues")) == ["empty"]


def test_review_folder_lists_images_captions_edits_and_flags(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("001.jpg", "002.png", "003.jpg"):
        (folder / name).write_bytes(b"x")
    (folder / "notes.md").write_text("not an image")
    files = CaptionFiles(tmp_path / "user")
    files.write(folder / "001.txt", GOOD)
    files.save_hand_edit(folder / "002.txt", "a man with green eyes")
    items = review_folder(folder, "pelarbues", parse_traits(None), files)
    assert [i["image"] for i in items] == ["001.jpg", "002.png", "003.jpg"]
    assert [i["hand_edit"] for i in items] == [False, True, False]
    assert items[0]["flags"] == []
    assert any("trigger word" in f for f in items[1]["flags"]) and any("green eyes" in f for f in items[1]["flags"])
    assert items[2]["caption"] == "" and items[2]["flags"] == ["no caption"]
