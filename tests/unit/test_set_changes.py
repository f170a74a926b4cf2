"""SetWatch: the fingerprint ComfyUI asks the captioner and the trainer for, before each run (issue 17 §9)."""
from __future__ import annotations

import os

from likeness.dataset.set_changes import SetWatch, set_fingerprint


def test_the_answer_holds_while_the_set_is_unchanged_and_changes_when_a_caption_is_edited(make_dataset):
    """Guards issue 17 §9: an unchanged set keeps ComfyUI's cache; an edited caption makes the node run again,
    once (the answer then holds again)."""
    ds = make_dataset(3)
    watch = SetWatch()
    first = watch.fingerprint("7")
    watch.ran("7", ds)
    assert watch.fingerprint("7") == first                        # queued again, nothing changed: cached
    ds.caption_path(ds.items[1]).write_text("pelarbues, a man in a red coat", encoding="utf-8")
    edited = watch.fingerprint("7")
    assert edited != first                                        # the edit: ComfyUI runs the node again
    watch.ran("7", ds)
    assert watch.fingerprint("7") == edited                       # and then caches it again


def test_what_the_node_itself_wrote_during_its_run_does_not_count_as_a_change(make_dataset):
    ds = make_dataset(3, captions=False)
    watch = SetWatch()
    answer = watch.fingerprint("3")
    for item in ds.items:                                         # the captioner writes the captions
        ds.caption_path(item).write_text("pelarbues, a photo", encoding="utf-8")
    watch.ran("3", ds)
    assert watch.fingerprint("3") == answer


def test_a_replaced_photo_or_a_deleted_caption_changes_the_set(make_dataset):
    ds = make_dataset(2)
    before = set_fingerprint(ds)
    photo = ds.image_path(ds.items[0])
    stat = photo.stat()
    photo.write_bytes(photo.read_bytes() + b"\0")
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert set_fingerprint(ds) != before
    replaced = set_fingerprint(ds)
    ds.caption_path(ds.items[1]).unlink()
    assert set_fingerprint(ds) != replaced


def test_nodes_are_watched_apart(make_dataset):
    one, other = make_dataset(2, folder_name="one"), make_dataset(2, folder_name="other")
    watch = SetWatch()
    watch.fingerprint("1"), watch.fingerprint("2")
    watch.ran("1", one)
    watch.ran("2", other)
    other.caption_path(other.items[0]).write_text("pelarbues, changed", encoding="utf-8")
    assert watch.fingerprint("1") == "" and watch.fingerprint("2") != ""
    assert watch.fingerprint(None) == ""                          # no node id: ComfyUI's default behaviour
