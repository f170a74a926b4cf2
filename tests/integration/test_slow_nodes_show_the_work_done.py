"""A slow node's progress bar shows the work done, at every moment it says how much is done.

ComfyUI 0.33's ProgressBar drops an update that comes within 100 ms (or 0.5 %) of the last one it sent. The
captioner's answers arrive in bunches and then it waits on a slow one: with that throttle its bar showed
1 of 10 while its text said 9 of 10 were done, for as long as the last answer took. Each test here holds
the work at a known point and compares the bar with the node's own count, on whichever ComfyUI runs them.
"""
from __future__ import annotations

import re
import uuid

from fakes.gemini import image_color
from fakes.gemini_fixtures import photo_color, write_photo
from harness import photos

COUNT = 10                                   # ten photos of ten distinct colours: the fake tells them apart


def said_and_shown(client, node_id: str, pattern: str) -> list[tuple[int, int, tuple[int, int] | None]]:
    """(count said, total said, bar shown then) for each progress text of the node that states a count."""
    found = []
    for text, bar in client.bar_when_said(node_id):
        m = re.match(pattern, text)
        if m:
            found.append((int(m.group(1)), int(m.group(2)), bar))
    return found


def test_captioner_bar_shows_every_answer_while_the_last_one_is_slow(comfy, client, gemini):
    name, trigger = f"progress-{uuid.uuid4().hex[:6]}", f"tok{uuid.uuid4().hex[:6]}"
    source = comfy.base_dir / "input" / name
    source.mkdir(parents=True)
    for i in range(COUNT):
        write_photo(source / f"{i:03d}.jpg", photo_color(i), size=(200, 200), variant=i)
    last = image_color(photo_color(COUNT - 1))
    bunch = gemini.hold(lambda r: not last(r))             # nine answers, released together
    gemini.hold(last)                                      # the slow one, released at the end
    prompt = {
        "1": {"class_type": "LikenessDatasetLoader",
              "inputs": {"folder": name, "trigger_word": trigger, "crop": "center", "size": 256, "convert": True,
                         "output_folder": f"likeness/datasets/{name}"}},
        "2": {"class_type": "LikenessGeminiCaptioner",
              "inputs": {"dataset": ["1", 2], "model": "gemini-3.8-flash", "custom_model": "",
                         "instructions": "Caption the photo.", "overwrite": False, "concurrency": COUNT, "rpm": 0,
                         "forbidden_traits": "eye color", "vertex_project": "", "vertex_location": "global"}}}
    prompt_id = client.queue(prompt)
    try:
        gemini.wait_for_requests(COUNT, timeout=120)       # all ten asked; none answered yet
        bunch.set()                                        # nine answers come back within milliseconds
        client.wait_for_text("2", lambda t: t.startswith(f"{COUNT - 1}/{COUNT} "), timeout=60)
        # the slow answer is still held: what the user sees now is what they would see for its whole wait
        waiting = said_and_shown(client, "2", r"(\d+)/(\d+) ")
        assert waiting[-1][:2] == (COUNT - 1, COUNT)
        assert waiting[-1][2] == (COUNT - 1, COUNT), f"the bar shows {waiting[-1][2]} while {COUNT - 1} are done"
    finally:
        gemini.release()
    result = client.wait(prompt_id, timeout=120)
    assert result.status == "success", result.error_message
    said = said_and_shown(client, "2", r"(\d+)/(\d+) ")
    assert [count for count, _, _ in said] == list(range(COUNT + 1))     # 0 at the start, then every answer
    assert [(count, total) for count, total, _ in said] == [bar for _, _, bar in said]


def test_dataset_loader_bar_counts_each_photo_it_says_is_ready(comfy, client):
    name = f"progress-photos-{uuid.uuid4().hex[:6]}"
    photos.photo_set(comfy.base_dir / "input" / name, 12, width=640, height=480)
    result = client.run({"1": {"class_type": "LikenessDatasetLoader",
                               "inputs": {"folder": name, "trigger_word": "tok", "crop": "center", "size": 512,
                                          "convert": True, "output_folder": f"likeness/datasets/{name}"}}})
    assert result.status == "success", result.error_message
    said = said_and_shown(client, "1", r"(\d+) of (\d+) photos ready")
    assert [count for count, _, _ in said] == list(range(13))
    assert [(count, total) for count, total, _ in said] == [bar for _, _, bar in said]
