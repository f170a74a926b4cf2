"""Preparing a folder of photos with LikenessDatasetLoader in a real ComfyUI, as the canvas queues it."""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from PIL import Image

from harness import photos
from harness.client import PromptRejected

TRIGGER = "pelarbues"


def loader(folder: str, trigger: str = TRIGGER, crop: str = "center", size: int = 512, convert: bool = True,
           output_folder: str = "") -> dict:
    return {"1": {"class_type": "LikenessDatasetLoader",
                  "inputs": {"folder": folder, "trigger_word": trigger, "crop": crop, "size": size,
                             "convert": convert, "output_folder": output_folder}}}


def report(result) -> str:
    """The loader's report as the canvas gets it: the `executed` message's ui text (not /history, which the
    server writes a moment after it announces success)."""
    texts = [t for e in result.events if e["type"] == "executed" and e["data"]["node"] == "1"
             for t in e["data"]["output"].get("text", [])]
    return "\n".join(texts)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def input_dir(comfy) -> Path:
    path = comfy.base_dir / "input"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def output_dir(comfy) -> Path:
    return comfy.base_dir / "output"


def test_prepare_a_folder_of_photos_writes_a_square_captioned_set(client, input_dir, output_dir):
    name, trigger = unique("photos"), unique("trig")
    sources = photos.photo_set(input_dir / name, 12, captions=trigger + ", a photo number {i}")
    before = {p: digest(p) for p in (input_dir / name).iterdir()}

    result = client.run(loader(name, trigger=trigger))

    assert result.status == "success", result.error_message
    text = report(result)
    assert "Prepared 12 photos" in text and "processed 12, reused 0" in text
    assert "Suggested training steps: 480" in text
    dest = output_dir / "likeness" / "datasets" / trigger
    images = sorted(dest.glob("*.jpg"))
    assert [p.name for p in images] == [p.name for p in sources]
    for image in images:
        with Image.open(image) as img:
            assert img.size == (512, 512)
        assert image.with_suffix(".txt").read_text(encoding="utf-8").startswith(f"{trigger}, a photo number")
    assert {p: digest(p) for p in (input_dir / name).iterdir()} == before, "originals must never change"
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(f".{trigger}.")], "no temporary folders left"
    bar = result.progress("1")
    assert bar and bar[-1]["value"] == bar[-1]["max"] == 12
    assert "12 of 12 photos ready" in " ".join(result.texts_for("1"))


def test_requeue_unchanged_is_cached_and_one_changed_photo_is_the_only_one_redone(client, input_dir):
    name, trigger = unique("photos"), unique("trig")
    paths = photos.photo_set(input_dir / name, 10)
    first = client.run(loader(name, trigger=trigger))
    assert first.status == "success", first.error_message

    again = client.run(loader(name, trigger=trigger))
    assert again.status == "success"
    assert "1" in again.cached_nodes(), "unchanged folder and inputs must come from ComfyUI's cache"

    photos.save(photos.scene(1200, 900, seed=999), paths[3], quality=90)
    os.utime(paths[3], ns=(paths[3].stat().st_atime_ns, paths[3].stat().st_mtime_ns + 10_000_000))
    changed = client.run(loader(name, trigger=trigger))
    assert changed.status == "success", changed.error_message
    assert "1" not in changed.cached_nodes()
    assert "processed 1, reused 9" in report(changed)


def test_deleting_the_prepared_set_makes_the_next_queue_rebuild_it(client, input_dir, output_dir):
    name, trigger = unique("photos"), unique("trig")
    photos.photo_set(input_dir / name, 2)
    assert client.run(loader(name, trigger=trigger)).status == "success"
    dest = output_dir / "likeness" / "datasets" / trigger
    for p in dest.iterdir():
        p.unlink()
    dest.rmdir()

    again = client.run(loader(name, trigger=trigger))

    assert again.status == "success" and "1" not in again.cached_nodes()
    assert "processed 2, reused 0" in report(again)
    assert sorted(p.name for p in dest.glob("*.jpg")) == ["photo00.jpg", "photo01.jpg"]


def test_convert_off_lists_other_formats_with_advice_and_convert_on_includes_them(client, input_dir, output_dir):
    name = unique("mixed")
    folder = input_dir / name
    photos.photo_set(folder, 2)
    photos.save(photos.scene(900, 700, 1), folder / "beach.webp")
    photos.save(photos.scene(900, 700, 2), folder / "park.webp")
    photos.save(photos.scene(900, 700, 3), folder / "hill.heic", fmt="HEIF")
    photos.save(photos.scene(900, 700, 4), folder / "scan.tif")

    off = client.run(loader(name, trigger=unique("off"), convert=False))
    assert off.status == "success", off.error_message
    text = report(off)
    assert "Prepared 2 photos" in text
    assert "2 .webp files" in text and "1 .heic file" in text and "enable convert" in text

    on_trigger = unique("on")
    on = client.run(loader(name, trigger=on_trigger, convert=True))
    assert on.status == "success", on.error_message
    assert "Prepared 6 photos" in report(on) and "converted 4 to JPEG" in report(on)
    written = sorted(p.name for p in (output_dir / "likeness" / "datasets" / on_trigger).glob("*.jpg"))
    assert written == ["beach.jpg", "hill.jpg", "park.jpg", "photo00.jpg", "photo01.jpg", "scan.jpg"]


def test_broken_files_are_skipped_and_listed_and_a_bomb_is_refused(client, input_dir):
    name = unique("broken")
    folder = input_dir / name
    photos.photo_set(folder, 3)
    photos.zero_byte(folder / "empty.jpg")
    photos.corrupt_file(folder / "garbage.jpg")
    photos.truncated_jpeg(folder / "cut.jpg")
    photos.png_bomb(folder / "huge.png")

    result = client.run(loader(name, trigger=unique("t")))

    assert result.status == "success", result.error_message
    text = report(result)
    assert "Prepared 3 photos" in text and "Skipped 4 files" in text
    assert "empty.jpg: empty file" in text
    assert "garbage.jpg: not a readable image" in text
    assert "cut.jpg: damaged or truncated" in text
    assert "huge.png: refused" in text


@pytest.mark.parametrize("make, folder_arg, expected", [
    ("nothing", "does-not-exist-{u}", "Photo folder not found"),
    ("empty", "{name}", "is empty"),
    ("webp_only", "{name}", "No supported photos"),
    ("all_broken", "{name}", "None of the photos could be read"),
    ("nothing", "../../{u}", "leads outside ComfyUI's input folder"),
    ("link_out", "{name}", "leads outside ComfyUI's input folder"),
])
def test_bad_folder_gets_a_clear_message_and_the_server_keeps_serving(client, input_dir, tmp_path, make,
                                                                      folder_arg, expected):
    name, u = unique("bad"), uuid.uuid4().hex[:8]
    folder = input_dir / name
    if make == "empty":
        folder.mkdir()
    elif make == "webp_only":
        photos.save(photos.scene(600, 400, 1), folder / "a.webp")
    elif make == "all_broken":
        folder.mkdir()
        photos.corrupt_file(folder / "a.jpg")
        photos.zero_byte(folder / "b.png")
    elif make == "link_out":
        outside = tmp_path / "outside"
        photos.photo_set(outside, 2)
        folder.symlink_to(outside, target_is_directory=True)
    convert = make != "webp_only"

    result = client.run(loader(folder_arg.format(name=name, u=u), trigger=unique("t"), convert=convert))

    assert result.status == "error"
    assert result.error_message.split(": ", 1)[0].endswith(".InputError")
    assert expected in result.error_message
    if make == "webp_only":
        assert "enable convert" in result.error_message
    status, _ = client.request("GET", "/object_info/LikenessDatasetLoader")
    assert status == 200


@pytest.mark.parametrize("trigger, expected", [("", "is empty"), ("pel arbues", "contains spaces"),
                                               ("pel,arbues", "contains a comma"), ("../x", "may only contain")])
def test_bad_trigger_word_is_refused_when_queued(client, input_dir, trigger, expected):
    name = unique("photos")
    photos.photo_set(input_dir / name, 1)
    with pytest.raises(PromptRejected) as rejected:
        client.queue(loader(name, trigger=trigger))
    errors = rejected.value.node_errors["1"]["errors"]
    assert any(expected in e["details"] and e["details"].startswith("trigger_word") for e in errors), errors


def test_face_crop_moves_the_square_onto_a_real_face(client, input_dir, output_dir):
    name, trigger = unique("faces"), unique("face")
    wide = photos.face_off_centre(2400, 800, face_x=0.75)
    photos.save(wide, input_dir / name / "right.jpg", quality=92)
    photos.save(photos.scene(1200, 900, 5), input_dir / name / "noface.jpg", quality=92)

    result = client.run(loader(name, trigger=trigger, crop="face", size=512))

    assert result.status == "success", result.error_message
    assert "no face found in noface.jpg:" in report(result)
    out = Image.open(output_dir / "likeness" / "datasets" / trigger / "right.jpg").convert("RGB")
    left = photos.crop_offset(wide, out)
    face_centre_x = photos.astronaut_face_centre_x(wide.shape[0], 0.75 * 2400)
    assert abs(left - (face_centre_x - 400)) <= 40, (left, face_centre_x)   # centred on the face
    assert abs(left - 800) > 200                                              # not the centre crop


def test_output_folder_that_is_not_a_likeness_set_is_refused(client, input_dir, output_dir):
    name = unique("photos")
    photos.photo_set(input_dir / name, 1)
    theirs = output_dir / unique("my-documents")
    theirs.mkdir(parents=True)
    (theirs / "thesis.docx").write_bytes(b"important")
    result = client.run(loader(name, output_folder=str(theirs)))
    assert result.status == "error"
    assert "was not made by the Likeness loader" in result.error_message
    assert (theirs / "thesis.docx").read_bytes() == b"important"
