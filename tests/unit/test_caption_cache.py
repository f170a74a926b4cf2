"""The caption cache (never pay twice, across restarts) and the side-car records (hand edits win)."""
from __future__ import annotations

from likeness.captions.caption_cache import CachedCaption, CaptionCache, CaptionFiles, cache_key


def test_key_changes_with_image_model_instructions_and_trigger_word():
    base = cache_key("abc", "gemini-3.8-flash", "caption it", "pelarbues")
    assert base == cache_key("abc", "models/gemini-3.8-flash", "caption it", "pelarbues")
    others = {cache_key("abd", "gemini-3.8-flash", "caption it", "pelarbues"),
              cache_key("abc", "gemini-3.5-flash", "caption it", "pelarbues"),
              cache_key("abc", "gemini-3.8-flash", "caption it!", "pelarbues"),
              cache_key("abc", "gemini-3.8-flash", "caption it", "ohwx")}
    assert base not in others and len(others) == 4


def test_cache_survives_a_new_instance_on_the_same_folder(tmp_path):
    key = cache_key("abc", "gemini-3.8-flash", "caption it", "pelarbues")
    CaptionCache(tmp_path).put(key, CachedCaption("pelarbues, a photo.", {"image_type": "a photo"},
                                                  "gemini-3.8-flash", 1200, 200, 0.0016))
    again = CaptionCache(tmp_path).get(key)
    assert again == CachedCaption("pelarbues, a photo.", {"image_type": "a photo"}, "gemini-3.8-flash",
                                  1200, 200, 0.0016)
    assert CaptionCache(tmp_path).get(cache_key("other", "gemini-3.8-flash", "caption it", "pelarbues")) is None


def test_what_the_pack_wrote_is_not_a_hand_edit_but_a_change_is(tmp_path):
    files, txt = CaptionFiles(tmp_path / "user"), tmp_path / "set" / "001.txt"
    assert files.is_hand_edit(txt) is False          # no file yet
    files.write(txt, "pelarbues, a photo.")
    assert txt.read_text() == "pelarbues, a photo.\n"
    assert files.is_hand_edit(txt) is False
    txt.write_text("pelarbues, a photo.")            # only the line ending changed (the loader copies it)
    assert files.is_hand_edit(txt) is False
    txt.write_text("pelarbues, a photo of me at the beach.")
    assert files.is_hand_edit(txt) is True
    assert CaptionFiles(tmp_path / "user").is_hand_edit(txt) is True   # after a restart too


def test_a_caption_brought_with_the_photos_counts_as_the_users(tmp_path):
    txt = tmp_path / "001.txt"
    txt.write_text("my own caption")
    assert CaptionFiles(tmp_path / "user").is_hand_edit(txt) is True
    txt.write_text("   \n")
    assert CaptionFiles(tmp_path / "user").is_hand_edit(txt) is False   # blank: nothing to keep


def test_a_caption_saved_from_the_editor_stays_a_hand_edit(tmp_path):
    files, txt = CaptionFiles(tmp_path / "user"), tmp_path / "001.txt"
    files.write(txt, "pelarbues, a photo.")
    files.save_hand_edit(txt, "pelarbues, a photo.")   # saved unchanged from the editor: still the user's
    assert files.is_hand_edit(txt) is True


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    files, txt = CaptionFiles(tmp_path / "user"), tmp_path / "set" / "001.txt"
    files.write(txt, "one")
    files.write(txt, "two")
    assert sorted(p.name for p in txt.parent.iterdir()) == ["001.txt"]
    assert txt.read_text() == "two\n"


def test_a_caption_file_in_latin1_or_with_nul_bytes_is_read_not_an_error(tmp_path):
    files = CaptionFiles(tmp_path / "user")
    (tmp_path / "a.txt").write_bytes("pelarbues, un homme au café".encode("latin-1"))
    (tmp_path / "b.txt").write_bytes(b"pelarbues, a man\x00 in a hat\n")
    assert files.read(tmp_path / "a.txt") == "pelarbues, un homme au café"
    assert files.read(tmp_path / "b.txt") == "pelarbues, a man in a hat"
    assert files.is_hand_edit(tmp_path / "a.txt")                     # brought by the user
