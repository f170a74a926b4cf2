"""The playground's gallery and the record of each user's runs: outcomes read from ComfyUI's history,
what a run paid, scores read from the journal entry's own field, filters, and settings for Again and Vary."""
from __future__ import annotations

import pytest

from likeness.generation.playground_gallery import (Run, RunIndex, gallery, image_refs, paid_by_run,
                                                    record_outcome, settings_for)
from likeness.generation.seed_journal import JournalEntry


def entry(entry_id: str, **changes) -> JournalEntry:
    values = {"prompt": "pelarbues, a portrait", "seed": 1, "steps": 35, "guidance": 2.75, "width": 832,
              "height": 1216, "id": entry_id, "source": "replicate",
              "stack": [{"lora": "owner/me:" + "a" * 64, "strength": 0.9}, {"lora": "film.safetensors", "strength": 0.25}],
              "extra": {"cost_usd": 0.0061}}
    return JournalEntry(**{**values, **changes})


def history(node_ui: dict, *messages) -> dict:
    return {"outputs": node_ui, "status": {"status_str": "error" if any(m[0] == "execution_error" for m in messages)
                                           else "success", "completed": True, "messages": list(messages)}}


def test_runs_are_kept_per_user_and_their_outcome_once_known(tmp_path):
    alice, bob = RunIndex(tmp_path, "alice_1"), RunIndex(tmp_path, "bob_2")
    alice.queued("p1", {"personal": "me.safetensors"})
    assert bob.runs() == {} and not alice.runs()["p1"].finished
    run = record_outcome(alice.runs()["p1"], history({"5": {"likeness_journal": [{"id": "e1", "reused": False}]},
                                                      "6": {"images": [{"filename": "a.png", "subfolder": "likeness",
                                                                        "type": "output"}]}}))
    alice.done(run)
    again = RunIndex(tmp_path, "alice_1").runs()["p1"]
    assert (again.status, again.entries, again.reused) == ("success", ["e1"], [])
    assert again.images == [{"filename": "a.png", "subfolder": "likeness", "type": "output"}]


def test_a_strange_user_name_never_becomes_a_path(tmp_path):
    index = RunIndex(tmp_path, "../../etc/passwd")
    index.queued("p", {})
    assert index.path.parent == tmp_path / "playground" and ".." not in index.path.name


@pytest.mark.parametrize("ui, messages, reused", [
    ({"5": {"likeness_journal": [{"id": "e1", "reused": True}]}}, [], ["e1"]),          # the Replicate store
    ({"5": {"likeness_journal": [{"id": "e1"}]}}, [["execution_cached", {"nodes": ["4", "5", "6"]}]], ["e1"]),
    ({"5": {"likeness_journal": [{"id": "e1"}]}}, [["execution_cached", {"nodes": ["4"]}]], []),
])
def test_an_entry_the_run_did_not_pay_for_is_marked_reused(ui, messages, reused):
    run = record_outcome(Run("p", 0.0, {}), history(ui, *messages))
    assert run.reused == reused
    paid, only_reused = paid_by_run(run, {"e1": entry("e1")})
    assert (paid, only_reused) == ((0.0, True) if reused else (pytest.approx(0.0061), False))


def test_errors_and_cancels_say_so():
    failed = record_outcome(Run("p", 0.0, {}), history({}, ["execution_error", {
        "exception_type": "likeness.ServiceError", "exception_message": "The prediction failed on Replicate: OOM"}]))
    assert failed.status == "error" and failed.message == "likeness.ServiceError: The prediction failed on Replicate: OOM"
    canceled = record_outcome(Run("p", 0.0, {}), history({}, ["execution_interrupted", {"node_id": "5"}]))
    assert (canceled.status, canceled.message) == ("interrupted", "Canceled.")


def scored(value: float | None, reason: str = "") -> dict:
    return {"score": value, "backend": "dlib", "reason": reason, "distance": None, "same_person": None}


@pytest.mark.parametrize("likeness, score", [
    (scored(81.5), 81.5), (scored(None, "no face"), None), (None, None), ({"score": True}, None),
])
def test_a_score_is_the_journal_entrys_own_field(likeness, score):
    item = gallery([entry("e1", likeness=likeness)], {}, user=None)[0]
    assert item["score"] == score


def test_the_gallery_is_newest_first_filtered_and_scoped():
    entries = [entry("e1", likeness=scored(40)), entry("e2", favourite=True, likeness=scored(80)), entry("e3")]
    mine = Run("p", 0.0, {"personal": "me.safetensors", "prompt": "a portrait", "seed": 9}, "success", ["e2"])
    everyone = gallery(entries, {"p": mine}, user=None)
    assert [i["id"] for i in everyone] == ["e3", "e2", "e1"]
    assert [i["id"] for i in gallery(entries, {"p": mine}, user="alice")] == ["e2"]     # her run made it
    entries.append(entry("e4", user="alice"))                                             # queued on the canvas
    assert [i["id"] for i in gallery(entries, {"p": mine}, user="alice")] == ["e4", "e2"]
    assert gallery(entries, {}, user="bob") == []
    assert [i["id"] for i in gallery(entries, {}, user=None, favourites=True)] == ["e2"]
    assert [i["id"] for i in gallery(entries, {}, user=None, min_score=50)] == ["e2"]
    item = next(i for i in everyone if i["id"] == "e2")
    assert item["stack"][0]["lora"] == "me.safetensors", "the personal LoRA by its file, not its version"
    assert item["score"] == 80 and item["settings"]["seed"] == 1 and item["settings"]["personal"] == "me.safetensors"


def test_images_come_from_the_run_that_saved_them_else_from_the_samplers_store():
    saved = [{"filename": "a.png", "subfolder": "likeness", "type": "output"}]
    made = entry("e1", images=["/store/p-0.png"])
    assert image_refs(made, Run("p", 0, {}, "success", ["e1"], saved)) == saved
    assert image_refs(made, None) == [{"path": "/store/p-0.png"}]
    local = entry("e2", source="local", images=["likeness/playground_00003_.png"])   # in the output folder
    two = Run("p2", 0, {}, "success", ["e2", "e3"], saved * 2)                       # best of 2: whose is whose?
    assert image_refs(local, two) == [{"filename": "playground_00003_.png", "subfolder": "likeness", "type": "output"}]


def test_a_canvas_entry_gives_settings_when_its_loras_are_files():
    local = entry("e1", source="local", stack=[{"lora": "me.safetensors", "strength": 0.9},
                                               {"lora": "film.safetensors", "strength": 0.22}],
                  trigger_words="pelarbues, film")
    settings = settings_for(local, None)
    assert settings["where"] == "local" and settings["balance"] == "off" and settings["aspect_ratio"] == "2:3"
    assert settings["styles"] == [{"lora": "film.safetensors", "strength": 0.22, "on": True}]
    assert settings["trigger_word"] == "pelarbues"
    assert settings_for(entry("e2"), None) is None, "a Replicate version is not a LoRA file here"
