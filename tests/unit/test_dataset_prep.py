"""prepare_dataset: folders and paths, captions, checks, the per-photo cache and the atomic swap."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from harness import photos
from likeness.dataset.dataset_prep import (MANIFEST, check_trigger_word, default_destination, folder_fingerprint,
                                   prepare_dataset, read_caption)
from likeness.errors import InputError
from likeness.progress import Interrupted
from likeness.storage import sha256_file

REPO = Path(__file__).resolve().parents[2]
T = "pelarbues"


@pytest.fixture
def roots(tmp_path):
    (tmp_path / "input").mkdir()
    (tmp_path / "output").mkdir()
    return tmp_path / "input", tmp_path / "output"


def prep(roots, folder="photos", trigger=T, **kw):
    kw.setdefault("crop", "center")
    kw.setdefault("size", 256)
    return prepare_dataset(folder, trigger, input_root=roots[0], output_root=roots[1], **kw)


def set_dir(roots, trigger=T) -> Path:
    return roots[1] / "likeness" / "datasets" / trigger


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (sha256_file(p), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


# --- the happy path -------------------------------------------------------------------------------

def test_a_folder_becomes_a_square_captioned_set_and_a_dataset(roots):
    src = roots[0] / "photos"
    photos.photo_set(src, 3, width=600, height=400, captions=T + ", photo {i}")
    before = snapshot(src)

    prepared = prep(roots)

    dest = set_dir(roots)
    ds = prepared.dataset
    assert ds.folder == str(dest) and ds.trigger_word == T
    assert [i.image for i in ds.items] == ["photo00.jpg", "photo01.jpg", "photo02.jpg"]
    assert ds.captions == [f"{T}, photo {i}" for i in range(3)]
    for item, img in zip(ds.items, prepared.images):
        assert item.sha256 == sha256_file(dest / item.image)
        assert (item.width, item.height) == (256, 256) == img.size and img.mode == "RGB"
        assert Path(item.source).parent == src.resolve()
        assert (dest / item.caption_file).read_text(encoding="utf-8") == item.caption + "\n"
    assert len(ds.content_hash()) == 64
    assert prepared.report.processed == 3 and prepared.report.suggested_steps == 120
    assert "Suggested training steps: 120 (40 × 3 photos)" in prepared.report.text()
    assert snapshot(src) == before, "originals are only read"
    assert sorted(p.name for p in dest.parent.iterdir()) == [T], "no temporary folders left beside the set"
    assert (dest / MANIFEST).is_file()


def test_crop_none_keeps_the_aspect_ratio_with_the_long_side_at_size(roots):
    photos.save(photos.scene(1200, 900, 1), roots[0] / "photos" / "wide.jpg")
    photos.save(photos.stored_for_orientation(photos.scene(600, 900, 2), 6), roots[0] / "photos" / "tall.jpg",
                orientation=6)
    prepared = prep(roots, crop="none", size=256)
    assert [(i.image, i.width, i.height) for i in prepared.dataset.items] == [("tall.jpg", 171, 256),
                                                                               ("wide.jpg", 256, 192)]


def test_output_names_are_stable_safe_and_unique(roots):
    src = roots[0] / "photos"
    for name in ("Día de playa.jpg", "a.jpg", "a.png", "A.jpeg", "x y!.png"):
        photos.save(photos.scene(300, 300, len(name)), src / name)
    names = [i.image for i in prep(roots).dataset.items]
    assert names == ["A.jpg", "a-2.jpg", "a-3.jpg", "Dia_de_playa.jpg", "x_y.jpg"]
    assert [i.image for i in prep(roots).dataset.items] == names


def test_other_formats_are_converted_to_jpeg_only_when_asked(roots):
    src = roots[0] / "photos"
    photos.save(photos.scene(300, 300, 1), src / "a.jpg")
    photos.save(photos.scene(300, 300, 2), src / "b.webp")
    photos.save(photos.scene(300, 300, 3), src / "c.bmp")
    (src / "notes.md").write_text("hello")
    off = prep(roots, convert=False)
    assert [i.image for i in off.dataset.items] == ["a.jpg"]
    assert any("found 1 .bmp file, 1 .webp file: Replicate accepts only .jpg/.jpeg/.png; enable convert" in w
               for w in off.dataset.warnings)
    assert any("1 × .md" in w for w in off.dataset.warnings)
    on = prep(roots, convert=True, trigger="other")
    assert [i.image for i in on.dataset.items] == ["a.jpg", "b.jpg", "c.jpg"] and on.report.converted == 2
    with Image.open(set_dir(roots, "other") / "b.jpg") as img:
        assert img.format == "JPEG"


# --- inputs that are refused -----------------------------------------------------------------------

@pytest.mark.parametrize("word, message", [("", "is empty"), ("   ", "is empty"), ("pel arbues", "contains spaces"),
                                           ("pel,arbues", "contains a comma"), ("a/b", "may only contain"),
                                           ("..", "may only contain")])
def test_bad_trigger_words_are_refused_with_advice(word, message):
    with pytest.raises(InputError, match=message):
        check_trigger_word(word)


def test_good_trigger_words_pass():
    assert check_trigger_word(" pelarbues ") == "pelarbues"
    assert check_trigger_word("ohwx_man-2") == "ohwx_man-2"


def test_folder_paths(roots, tmp_path):
    photos.photo_set(roots[0] / "photos", 1, 300, 300)
    outside = tmp_path / "elsewhere"
    photos.photo_set(outside, 1, 300, 300)
    (roots[0] / "sneaky").symlink_to(outside, target_is_directory=True)
    (roots[0] / "empty").mkdir()
    (roots[0] / "hidden-only").mkdir()
    (roots[0] / "hidden-only" / ".DS_Store").write_bytes(b"x")
    (roots[0] / "file.jpg").write_bytes(b"x")

    assert prep(roots, folder="photos").report.photos == 1
    assert prep(roots, folder=str(outside), trigger="abs").report.photos == 1          # absolute: as typed
    assert prep(roots, folder=f' "{roots[0] / "photos"}" ', trigger="quoted").report.photos == 1
    for folder, message in [("../elsewhere", "leads outside ComfyUI's input folder"),
                            ("photos/../../elsewhere", "leads outside"),
                            ("sneaky", "leads outside"),
                            (f"{roots[0]}/photos/../photos", "contains '..'"),
                            ("nowhere", "Photo folder not found"),
                            ("file.jpg", "is a file, not a folder"),
                            ("empty", "is empty"),
                            ("hidden-only", "is empty"),
                            ("", "No photo folder given")]:
        with pytest.raises(InputError, match=message):
            prep(roots, folder=folder)


def test_a_link_inside_the_folder_to_a_photo_outside_it_is_skipped(roots, tmp_path):
    src = roots[0] / "photos"
    photos.photo_set(src, 2, 300, 300)
    secret = photos.save(photos.scene(300, 300, 9), tmp_path / "secret.jpg")
    (src / "zz.jpg").symlink_to(secret)
    (src / "inside.jpg").symlink_to(src / "photo00.jpg")
    (src / "dangling.jpg").symlink_to(src / "gone.jpg")
    prepared = prep(roots)
    assert [i.image for i in prepared.dataset.items] == ["inside.jpg", "photo00.jpg", "photo01.jpg"]
    assert "zz.jpg: a link to a file outside the photo folder (refused)" in prepared.report.skipped
    assert any(s.startswith("dangling.jpg: cannot be read") for s in prepared.report.skipped)


def test_no_supported_photos_says_what_was_found(roots):
    photos.save(photos.scene(200, 200, 1), roots[0] / "photos" / "a.webp")
    photos.save(photos.scene(200, 200, 1), roots[0] / "photos" / "b.webp")
    with pytest.raises(InputError, match=r"No supported photos .*found 2 \.webp: enable convert"):
        prep(roots, convert=False)
    (roots[0] / "movies").mkdir()
    (roots[0] / "movies" / "clip.mov").write_bytes(b"x")
    with pytest.raises(InputError, match="No supported photos"):
        prep(roots, folder="movies")


def test_output_folder_rules(roots, tmp_path):
    src = roots[0] / "photos"
    photos.photo_set(src, 1, 300, 300)
    assert prep(roots, output_folder="mine/set").dataset.folder == str(roots[1] / "mine" / "set")
    inside = roots[1] / "sets" / "mine"
    assert prep(roots, output_folder=str(inside)).dataset.folder == str(inside)      # absolute, inside output/
    empty = tmp_path / "empty-set"
    empty.mkdir()
    assert prep(roots, output_folder=str(empty), output_anywhere=True).dataset.folder == str(empty)
    theirs = tmp_path / "docs"
    theirs.mkdir()
    (theirs / "thesis.docx").write_bytes(b"mine")
    for folder, message in [(str(src), "overlaps the photo folder"), (str(roots[0]), "overlaps"),
                            (str(src / "prepared"), "overlaps"), ("../escape", "leads outside ComfyUI's output"),
                            (str(theirs), "was not made by the Likeness loader")]:
        with pytest.raises(InputError, match=message):
            prep(roots, output_folder=folder, output_anywhere=True)
    assert (theirs / "thesis.docx").read_bytes() == b"mine"


def test_the_output_folder_is_confined_to_comfyuis_output_folder_unless_the_user_allows_more(roots, tmp_path):
    """A shared workflow's output_folder must not make the loader write anywhere on the disk: an absolute folder
    outside ComfyUI's output folder needs the user's opt-in outside the workflow (issue 17, item 14)."""
    photos.photo_set(roots[0] / "photos", 1, 300, 300)
    elsewhere = tmp_path / "autostart"
    with pytest.raises(InputError) as err:
        prep(roots, output_folder=str(elsewhere))
    assert "outside ComfyUI's output folder" in str(err.value) and "LIKENESS_DATASET_OUTPUT_ANYWHERE=1" in str(err.value)
    assert not elsewhere.exists() and not list(tmp_path.glob(".autostart*"))     # nothing written there
    link = roots[1] / "escape"
    link.symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(InputError, match="outside ComfyUI's output folder|leads outside"):
        prep(roots, output_folder=str(link / "set"))
    assert prep(roots, output_folder=str(elsewhere), output_anywhere=True).dataset.folder == str(elsewhere)


# --- broken photos ---------------------------------------------------------------------------------

def test_broken_files_are_skipped_and_listed_and_nothing_left_is_fatal(roots):
    src = roots[0] / "photos"
    photos.photo_set(src, 2, 300, 300)
    photos.zero_byte(src / "empty.jpg")
    photos.truncated_jpeg(src / "cut.jpg")
    photos.corrupt_file(src / "junk.png")
    photos.png_bomb(src / "bomb.png")
    prepared = prep(roots)
    assert prepared.report.photos == 2
    skipped = "\n".join(prepared.report.skipped)
    for name in ("empty.jpg", "cut.jpg", "junk.png", "bomb.png"):
        assert name in skipped
    assert any(w.startswith("skipped bomb.png: refused") for w in prepared.dataset.warnings)

    for p in src.glob("photo*.jpg"):
        p.unlink()
    with pytest.raises(InputError, match="None of the photos could be read") as err:
        prep(roots)
    assert "cut.jpg: damaged or truncated" in str(err.value)
    assert sorted(p.name for p in set_dir(roots).parent.iterdir()) == [T]


# --- captions --------------------------------------------------------------------------------------

def test_caption_encodings(tmp_path):
    from likeness.dataset.dataset_prep import PrepReport

    report = PrepReport(folder="x")
    (tmp_path / "u.txt").write_bytes("\ufeffpelarbues, café".encode("utf-8"))
    (tmp_path / "w.txt").write_bytes("pelarbues, café".encode("cp1252"))
    (tmp_path / "s.txt").write_bytes("pelarbues, café".encode("utf-16"))
    assert read_caption(tmp_path / "u.txt", report) == "pelarbues, café" and report.warnings == []
    assert read_caption(tmp_path / "w.txt", report) == "pelarbues, café"
    assert read_caption(tmp_path / "s.txt", report) == "pelarbues, café"
    assert "w.txt is not UTF-8: read it as Windows-1252" in report.warnings[0]
    assert "s.txt is not UTF-8: read it as UTF-16" in report.warnings[1]


def test_nul_and_control_characters_are_removed_from_a_caption_with_a_warning(tmp_path):
    from likeness.dataset.dataset_prep import PrepReport

    report = PrepReport(folder="x")
    (tmp_path / "n.txt").write_bytes(b"pelarbues, a man\x00 in a hat\x1b\x00\nsecond line\tok")
    assert read_caption(tmp_path / "n.txt", report) == "pelarbues, a man in a hat\nsecond line\tok"
    assert report.warnings == ["n.txt held 3 NUL or control characters: removed from the prepared caption"]


def test_crlf_line_ends_of_a_caption_written_on_windows_become_lf_in_the_set(roots):
    """CRLF (or a lone CR) must not reach the prepared caption the trainer reads (issue 17, item 20)."""
    src = roots[0] / "photos"
    photos.photo_set(src, 2, 300, 300)
    (src / "photo00.txt").write_bytes(b"pelarbues, a man in a hat,\r\nstanding in a garden\r\n")
    (src / "photo01.txt").write_bytes(b"pelarbues, old Mac line end\rsecond line\r")
    prepared = prep(roots)
    assert prepared.dataset.captions == ["pelarbues, a man in a hat,\nstanding in a garden",
                                         "pelarbues, old Mac line end\nsecond line"]
    for name in ("photo00.txt", "photo01.txt"):
        assert b"\r" not in (set_dir(roots) / name).read_bytes()
    assert not any("control character" in w for w in prepared.dataset.warnings)


def test_captions_are_written_as_utf8_and_those_without_the_trigger_first_are_flagged(roots):
    src = roots[0] / "photos"
    photos.photo_set(src, 4, 300, 300)
    (src / "photo00.txt").write_text("pelarbues, a man", encoding="utf-8")
    (src / "photo01.txt").write_bytes("A man in a café, pelarbues".encode("cp1252"))
    (src / "photo02.txt").write_text("pelarbuesx, a typo", encoding="utf-8")
    prepared = prep(roots)
    assert prepared.dataset.captions == ["pelarbues, a man", "A man in a café, pelarbues", "pelarbuesx, a typo", ""]
    assert (set_dir(roots) / "photo01.txt").read_text(encoding="utf-8").startswith("A man in a café")
    assert not (set_dir(roots) / "photo03.txt").exists()
    flagged = [w for w in prepared.dataset.warnings if "do not start with the trigger word" in w]
    assert flagged and "photo01.txt, photo02.txt" in flagged[0] and "photo00" not in flagged[0]
    assert any("photo01.txt is not UTF-8" in w for w in prepared.dataset.warnings)


def test_a_caption_written_into_the_set_survives_a_rerun(roots):
    src = roots[0] / "photos"
    paths = photos.photo_set(src, 2, 300, 300)
    prep(roots)
    (set_dir(roots) / "photo00.txt").write_text("pelarbues, written by the captioner\n", encoding="utf-8")
    photos.save(photos.scene(300, 300, 77), paths[1])   # forces a rebuild of the set
    again = prep(roots)
    assert again.dataset.captions == ["pelarbues, written by the captioner", ""]
    assert (set_dir(roots) / "photo00.txt").exists()


def test_rerun_keeps_whichever_caption_changed_and_the_newer_when_both_did(roots):
    src = roots[0] / "photos"
    paths = photos.photo_set(src, 3, 300, 300, captions="pelarbues, original {i}")
    prep(roots)
    dest = set_dir(roots)
    (dest / "photo00.txt").write_text("pelarbues, edited in the set\n", encoding="utf-8")     # set edited
    (src / "photo01.txt").write_text("pelarbues, edited beside the original", encoding="utf-8")  # source edited
    (dest / "photo02.txt").write_text("pelarbues, set edit\n", encoding="utf-8")               # both edited,
    (src / "photo02.txt").write_text("pelarbues, newer source edit", encoding="utf-8")          # source newer
    later = (dest / "photo02.txt").stat().st_mtime_ns + 1_000_000_000
    os.utime(src / "photo02.txt", ns=(later, later))
    photos.save(photos.scene(300, 300, 1234), paths[0])       # a changed photo makes the loader run again

    again = prep(roots)

    assert again.dataset.captions == ["pelarbues, edited in the set", "pelarbues, edited beside the original",
                                      "pelarbues, newer source edit"]
    assert any("photo02.txt: the caption changed both beside the original and in the set; kept the newer "
               "(original)" in w for w in again.dataset.warnings)
    assert prep(roots).dataset.captions == again.dataset.captions     # and it stays so


# --- checks ----------------------------------------------------------------------------------------

def test_more_than_thirty_photos_warns_and_steps_follow_the_count(roots):
    photos.photo_set(roots[0] / "photos", 31, width=80, height=60)
    prepared = prep(roots, size=64)
    assert prepared.report.photos == 31 and prepared.report.suggested_steps == 1240
    assert any("31 photos: the seed recommends 30 or fewer" in w for w in prepared.dataset.warnings)


def test_small_blurry_and_duplicate_photos_are_reported(roots):
    src = roots[0] / "photos"
    sharp = Image.fromarray(photos.astronaut())
    sharp.save(src.mkdir() or src / "astro.jpg", quality=95)
    sharp.save(src / "astro_copy.jpg", quality=70)
    sharp.filter(ImageFilter.GaussianBlur(4)).save(src / "blurry.jpg")
    photos.save(photos.scene(600, 400, 3), src / "small.jpg")
    prepared = prep(roots, size=1024, crop="face")
    text = "\n".join(prepared.dataset.warnings)
    assert "astro.jpg and astro_copy.jpg look like the same shot" in text
    assert "look blurry" in text and "blurry.jpg (" in text
    assert "small.jpg (400 px)" in text and "smaller than 1024 px" in text
    assert re.search(r"no face found in [^:]*small\.jpg: used a centre crop", text)
    assert "only 4 photos: aim for at least 10" in text


def test_a_photo_too_small_to_train_on_is_refused_and_a_merely_small_one_is_upscaled(roots):
    """A 1×1 image must not enter the set (it would be captioned and uploaded, paid); a photo a quarter of the
    set's size or more is kept, upscaled, with the warning (issue 17, item 11)."""
    src = roots[0] / "photos"
    photos.photo_set(src, 2, 320, 320)
    Image.new("RGB", (1, 1), (90, 90, 90)).save(src / "dot.png")
    Image.new("RGB", (900, 60), (90, 20, 90)).save(src / "strip.png")      # short side 60 < 64
    photos.save(photos.scene(64, 80, 9), src / "quarter.jpg")              # short side 64: exactly the minimum
    prepared = prep(roots, size=256)
    assert [i.image for i in prepared.dataset.items] == ["photo00.jpg", "photo01.jpg", "quarter.jpg"]
    skipped = "\n".join(prepared.report.skipped)
    assert "dot.png: too small: 1×1 px; a 256 px set needs at least 64 px on the short side" in skipped
    assert "strip.png: too small: 900×60 px" in skipped and "before captioning or upload" in skipped
    assert not (set_dir(roots) / "dot.jpg").exists() and not (set_dir(roots) / "strip.jpg").exists()
    assert any("quarter.jpg (64 px)" in w and "upscaled" in w for w in prepared.dataset.warnings)
    assert "skipped dot.png: too small" in "\n".join(prepared.dataset.warnings)


def test_a_set_of_only_tiny_images_is_refused_with_each_named(roots):
    src = roots[0] / "photos"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (2, 2)).save(src / name)
    with pytest.raises(InputError) as err:
        prep(roots, size=1024)
    assert "a.png: too small: 2×2 px" in str(err.value) and "b.png: too small" in str(err.value)
    assert "256 px" in str(err.value)


# --- re-runs: the per-photo cache ------------------------------------------------------------------

def test_rerun_reuses_every_photo_and_a_changed_photo_is_the_only_one_redone(roots):
    src = roots[0] / "photos"
    paths = photos.photo_set(src, 4, 300, 300)
    first = prep(roots)
    assert (first.report.processed, first.report.reused) == (4, 0)
    again = prep(roots)
    assert (again.report.processed, again.report.reused) == (0, 4)
    assert [i.sha256 for i in again.dataset.items] == [i.sha256 for i in first.dataset.items]
    assert [img.size for img in again.images] == [(256, 256)] * 4

    photos.save(photos.scene(300, 300, 555), paths[2])
    changed = prep(roots)
    assert (changed.report.processed, changed.report.reused) == (1, 3)
    assert changed.dataset.items[2].sha256 != first.dataset.items[2].sha256

    paths[0].unlink()
    photos.save(photos.scene(300, 300, 556), src / "new.jpg")
    edited = prep(roots)
    assert [i.image for i in edited.dataset.items] == ["new.jpg", "photo01.jpg", "photo02.jpg", "photo03.jpg"]
    assert (edited.report.processed, edited.report.reused) == (1, 3)
    assert not (set_dir(roots) / "photo00.jpg").exists()

    assert prep(roots, crop="face").report.processed == 4      # other settings: every photo again


def test_a_tampered_prepared_photo_is_made_again(roots):
    photos.photo_set(roots[0] / "photos", 2, 300, 300)
    first = prep(roots)
    (set_dir(roots) / "photo01.jpg").write_bytes(b"edited by hand")
    again = prep(roots)
    assert (again.report.processed, again.report.reused) == (1, 1)
    assert again.dataset.items[1].sha256 == first.dataset.items[1].sha256


def test_fingerprint_follows_names_sizes_and_times_and_a_deleted_set(roots):
    src = roots[0] / "photos"
    paths = photos.photo_set(src, 2, 300, 300)
    dest = default_destination(T, "", roots[1])
    fp = folder_fingerprint("photos", roots[0], dest)
    assert folder_fingerprint("photos", roots[0], dest) == fp
    (src / ".DS_Store").write_bytes(b"junk")
    assert folder_fingerprint("photos", roots[0], dest) == fp
    st = paths[0].stat()
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    touched = folder_fingerprint("photos", roots[0], dest)
    assert touched != fp
    (src / "photo00.txt").write_text("pelarbues")
    with_caption = folder_fingerprint("photos", roots[0], dest)
    assert with_caption != touched

    prep(roots)
    assert folder_fingerprint("photos", roots[0], dest) == with_caption      # writing the set changes nothing
    for p in dest.iterdir():
        p.unlink()
    dest.rmdir()
    assert folder_fingerprint("photos", roots[0], dest) != with_caption      # deleting it re-runs the loader
    assert folder_fingerprint("../x", roots[0]).startswith("unusable:")


# --- atomic writes ---------------------------------------------------------------------------------

class FailingProgress:
    """Raises on the n-th update, as a crash in the middle of a run would."""

    def __init__(self, at: int, exc: Exception):
        self.at, self.exc, self.calls = at, exc, 0

    def update(self, done, total, text=""):
        self.calls += 1
        if self.calls == self.at:
            raise self.exc

    def interrupted(self):
        return False


class StopAfter:
    """The user presses Cancel once `n` progress updates have been shown."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def update(self, done, total, text=""):
        self.calls += 1

    def interrupted(self):
        return self.calls >= self.n


def test_a_failure_midway_leaves_the_previous_set_whole(roots):
    src = roots[0] / "photos"
    paths = photos.photo_set(src, 4, 300, 300)
    prep(roots)
    before = snapshot(set_dir(roots))
    for p in paths:
        photos.save(photos.scene(300, 300, hash(p.name) % 1000), p)
    with pytest.raises(RuntimeError):
        prep(roots, progress=FailingProgress(3, RuntimeError("disk full")), workers=1)
    assert snapshot(set_dir(roots)) == before
    assert sorted(p.name for p in set_dir(roots).parent.iterdir()) == [T]


def test_an_interrupt_stops_and_keeps_the_previous_set(roots):
    src = roots[0] / "photos"
    paths = photos.photo_set(src, 4, 300, 300)
    prep(roots)
    before = snapshot(set_dir(roots))
    for p in paths:
        photos.save(photos.scene(300, 300, 1 + hash(p.name) % 1000), p)
    with pytest.raises(Interrupted, match="left as it was"):
        prep(roots, progress=StopAfter(2), workers=1)
    assert snapshot(set_dir(roots)) == before
    assert sorted(p.name for p in set_dir(roots).parent.iterdir()) == [T]


KILLED_CHILD = r"""
import sys
from likeness.dataset.dataset_prep import prepare_dataset

class Progress:
    def update(self, done, total, text=""):
        if done == 2:
            print("HALFWAY", flush=True)
            sys.stdin.readline()          # wait here until the parent kills us
    def interrupted(self):
        return False

prepare_dataset("photos", "pelarbues", crop="center", size=256, input_root=sys.argv[1], output_root=sys.argv[2],
                progress=Progress(), workers=1)
"""


def test_a_killed_run_leaves_no_half_set_and_the_next_run_cleans_up(roots):
    src = roots[0] / "photos"
    paths = photos.photo_set(src, 4, 300, 300)
    prep(roots)
    before = snapshot(set_dir(roots))
    photos.save(photos.scene(300, 300, 901), paths[0])
    photos.save(photos.scene(300, 300, 902), paths[1])
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(roots[0]), str(roots[1])], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout.readline().strip() == "HALFWAY"
    child.kill()
    child.wait()
    assert snapshot(set_dir(roots)) == before                     # the old set, whole
    leftovers = [p.name for p in set_dir(roots).parent.iterdir() if p.name != T]
    assert leftovers and all(n.startswith(f".{T}.building-") for n in leftovers)

    after = prep(roots)
    assert (after.report.processed, after.report.reused) == (2, 2)
    assert sorted(p.name for p in set_dir(roots).parent.iterdir()) == [T]


def test_a_crash_between_the_two_renames_is_repaired(roots):
    photos.photo_set(roots[0] / "photos", 2, 300, 300)
    prep(roots)
    dest = set_dir(roots)
    os.rename(dest, dest.parent / f".{T}.old")                    # the state a crash there leaves
    again = prep(roots)
    assert (again.report.processed, again.report.reused) == (0, 2)
    assert sorted(p.name for p in dest.parent.iterdir()) == [T]
