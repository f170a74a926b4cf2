"""The routes the canvas widgets read, on the real server: a LoRA's description (confined to the loras
folders) and the seed journal's newest entries. (GET /likeness/training/status: tests/browser/test_training_status.py.)"""
from __future__ import annotations

import uuid

import pytest

from comfy_test_pack.lora_files import factors, write_lora, write_sd_lora, write_xlabs_lora
from likeness.generation.seed_journal import JournalEntry, SeedJournal


def test_lora_info_describes_a_file_in_the_loras_folder(comfy, client):
    folder = comfy.base_dir / "models" / "loras" / "people"
    name = f"me_{uuid.uuid4().hex[:6]}"
    write_lora(folder / f"{name}.safetensors", "diffusers", factors(seed=3), {"likeness_trigger_word": "tokinfo"})
    write_xlabs_lora(folder / f"{name}_xlabs.safetensors")
    write_sd_lora(folder / f"{name}_sd15.safetensors")
    status, body = client.request("GET", f"/likeness/lora_info?name=people/{name}.safetensors")
    assert status == 200, body
    assert body["format"] == "diffusers" and body["keys"] == 2 and body["trigger_words"] == ["tokinfo"]
    assert body["warning"] == ""
    status, body = client.request("GET", f"/likeness/lora_info?name={name}_xlabs.safetensors")   # bare name
    assert status == 200 and (body["format"], body["keys"], body["warning"]) == ("xlabs", 4, "")  # the stack converts it
    status, body = client.request("GET", f"/likeness/lora_info?name={name}_sd15.safetensors")
    assert status == 200 and body["warning"] == "kohya (SD 1.5 / SDXL) format: 0 keys apply (not a FLUX LoRA)"


@pytest.mark.parametrize("name, code", [
    ("", 400), ("../../user/__likeness/spend.jsonl", 403), ("people/../../secret.safetensors", 403),
    ("/etc/passwd", 403), ("no_such_lora.safetensors", 404)])
def test_lora_info_refuses_anything_outside_the_loras_folders(client, name, code):
    from urllib.parse import quote

    status, _ = client.request("GET", f"/likeness/lora_info?name={quote(name)}")
    assert status == code


def test_journal_lists_the_newest_entries_first(comfy, client):
    journal = SeedJournal(comfy.pack_dir)
    seeds = [int(uuid.uuid4().int % 10**9) for _ in range(3)]
    for seed in seeds:
        journal.record(JournalEntry(prompt=f"tok, a portrait {seed}", seed=seed, steps=35, guidance=2.75,
                                    width=1024, height=1024))
    status, body = client.request("GET", "/likeness/journal?limit=2")
    assert status == 200
    assert [e["seed"] for e in body["entries"]] == [seeds[2], seeds[1]]
    assert body["entries"][0]["prompt"] == f"tok, a portrait {seeds[2]}"
    for bad in ("0", "101", "x", "-1"):
        assert client.request("GET", f"/likeness/journal?limit={bad}")[0] == 400



def test_journal_sorts_by_likeness_and_filters_favourites_by_score(comfy, client):
    journal = SeedJournal(comfy.pack_dir)
    tag = uuid.uuid4().hex[:8]
    made = {}
    for name, score in (("low", 41.0), ("none", None), ("high", 77.5), ("mid", 63.0)):
        likeness = {"score": score, "backend": "dlib", "reason": "" if score is not None else "no face"}
        made[name] = journal.record(JournalEntry(prompt=f"tok, {tag} {name}", seed=1, steps=35, guidance=2.75,
                                                 width=64, height=64, likeness=likeness))
    for name in ("low", "none", "mid"):
        journal.set_favourite(made[name].id)

    def ids(query: str) -> list[str]:
        status, body = client.request("GET", f"/likeness/journal?limit=100&{query}")
        assert status == 200, body
        return [e["id"] for e in body["entries"] if tag in e["prompt"]]

    by_id = {e.id: name for name, e in made.items()}
    assert [by_id[i] for i in ids("sort=likeness")] == ["high", "mid", "low", "none"]
    assert [by_id[i] for i in ids("sort=newest")] == ["mid", "high", "none", "low"]
    assert [by_id[i] for i in ids("favourites=1&min_score=50")] == ["mid"]
    assert [by_id[i] for i in ids("favourites=1&sort=likeness")] == ["mid", "low", "none"]
    status, body = client.request("GET", "/likeness/journal?limit=100&min_score=70")
    assert status == 200 and all(e["likeness"]["score"] >= 70 for e in body["entries"])
    for bad in ("sort=cost", "favourites=yes", "min_score=101", "min_score=x"):
        assert client.request("GET", f"/likeness/journal?limit=5&{bad}")[0] == 400, bad
