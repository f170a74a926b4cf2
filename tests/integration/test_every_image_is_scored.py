"""Every generated image scored for likeness, through the real server: the score in the seed journal and in
the PNG, best of N candidates, and the reference that makes it possible — stored in the personal LoRA, or the
photos connected to the sampler.

On this machine the tiny FLUX draws no face, so each local image's score is "no face" with its reason; on
Replicate the fake returns real face photos (test data behind the real protocol), so the scores are numbers and
the best-of-N order can be checked."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from comfy_test_pack.graphs import sampler_node, stack_node
from comfy_test_pack.lora_files import factors, write_lora
from likeness.generation.seed_journal import SeedJournal
from likeness.loras.lora_identity import stored_reference
from tools import real_faces

PROMPT = "a portrait of a man in a green field, analog photo"


def unique(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:6]}"


def photos_of_one_person(folder: Path) -> None:
    """Real photos of one person, each with the folder's name after its JPEG end: the same pixels, but files no
    other test has embedded (the embedding cache is keyed by file content and the session server is shared)."""
    folder.mkdir(parents=True)
    for name in real_faces.OBAMA:
        (folder / name).write_bytes((real_faces.faces_dir() / name).read_bytes() + folder.name.encode())


def ui(result, node: str) -> dict:
    for event in result.events:
        if event["type"] == "executed" and event["data"]["node"] == node:
            return event["data"]["output"]
    return result.outputs[node]


def text(result, node: str) -> str:
    return "\n".join(ui(result, node).get("text", []))


def png_entry(comfy, image: dict) -> dict:
    folder = comfy.base_dir / "output" / image["subfolder"]
    with Image.open(folder / image["filename"]) as png:
        return json.loads(png.text["likeness"])


def journal(comfy) -> SeedJournal:
    return SeedJournal(comfy.pack_dir)


# --- on this machine --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def personal_lora(comfy) -> str:
    """A personal LoRA installed before the pack stored face references (no reference in its metadata)."""
    name = unique("me_before")
    write_lora(comfy.base_dir / "models" / "loras" / f"{name}.safetensors", "diffusers",
               factors(seed=41, magnitude=0.3), {"likeness_trigger_word": "pelarbues"})
    return f"{name}.safetensors"


def local_nodes(lora: str) -> dict:
    return {"model": {"class_type": "TinyFluxModel", "inputs": {"seed": 0}},
            "clip": {"class_type": "TinyFluxClip", "inputs": {}},
            "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taef1"}},
            "stack": stack_node(["model", 0], f"{lora}, 0.9", clip=["clip", 0], balance="off")}


def test_a_reference_stored_in_the_lora_scores_every_local_candidate_into_journal_and_png(comfy, client,
                                                                                         personal_lora):
    photos = unique("my_photos")
    photos_of_one_person(comfy.base_dir / "input" / photos)
    lora_file = comfy.base_dir / "models" / "loras" / personal_lora
    weights = load_file(lora_file)

    # the LoRA from before gets its reference from the photos (the weights stay as they were)
    stored = client.run({"ref": {"class_type": "LikenessLoraReference",
                                 "inputs": {"lora_name": personal_lora, "reference_folder": photos}}})
    assert stored.status == "success", stored.error_message
    assert f"Stored the face reference of 3 photo(s) (dlib) in {personal_lora}" in text(stored, "ref")
    assert stored_reference(lora_file).names == sorted(real_faces.OBAMA)
    assert {k: v.tolist() for k, v in load_file(lora_file).items()} == {k: v.tolist() for k, v in weights.items()}

    # best of 3 on the tiny FLUX, keep 2: all three journaled and saved, each with its score ("no face")
    prompt = local_nodes(personal_lora)
    prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT, trigger_words=["stack", 3],
                                     seed=700, steps=1, width=64, height=64, filename_prefix=unique("likeness/best"),
                                     candidates=3, keep=2)
    dump = unique("best")
    prompt["dump"] = {"class_type": "TinyTensorDump", "inputs": {"name": dump, "image": ["sampler", 0],
                                                                 "latent": ["sampler", 1]}}
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    shown = ui(result, "sampler")
    entries = [journal(comfy).find(e["id"]) for e in shown["likeness_journal"]]
    assert [e.seed for e in entries] == [700, 701, 702], "no face anywhere: the candidates stay in seed order"
    for entry, image in zip(entries, shown["images"]):
        assert entry.score is None and entry.likeness["reason"] == "no face"
        assert entry.likeness["backend"] == "dlib" and personal_lora in entry.likeness["against"]
        assert png_entry(comfy, image)["likeness"] == entry.likeness, "the PNG carries the same score"
        assert entry.images == [f"{image['subfolder']}/{image['filename']}"]
    kept = load_file(comfy.base_dir / "output" / f"{dump}.safetensors")
    assert kept["image"].shape[0] == 2 and kept["latent"].shape[0] == 2
    report = text(result, "sampler")
    assert f"Likeness against the reference stored in {personal_lora} (3 photos) (dlib" in report
    assert "Best of 3, most alike first (kept the best 2; all of them are in the seed journal):" in report
    assert "  3. seed 702 · no face  (not kept)" in report


def test_photos_connected_to_the_sampler_are_the_reference_and_a_rerun_embeds_nothing(comfy, client):
    photos = unique("set_photos")
    photos_of_one_person(comfy.base_dir / "input" / photos)
    lora = unique("plain")
    write_lora(comfy.base_dir / "models" / "loras" / f"{lora}.safetensors", "diffusers", factors(seed=42))
    prompt = local_nodes(f"{lora}.safetensors")
    prompt["loader"] = {"class_type": "LikenessDatasetLoader",
                        "inputs": {"folder": photos, "trigger_word": unique("tok"), "crop": "center", "size": 256,
                                   "convert": True, "output_folder": ""}}
    reports = []
    for seed in (11, 12):                                  # a new seed: the sampler runs again, the loader not
        prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT, seed=seed, steps=1,
                                         width=64, height=64, filename_prefix="", dataset=["loader", 2])
        result = client.run(prompt)
        assert result.status == "success", result.error_message
        reports.append(text(result, "sampler"))
        entry = journal(comfy).find(ui(result, "sampler")["likeness_journal"][0]["id"])
        assert entry.seed == seed and entry.likeness["reason"] == "no face"
        assert entry.likeness["against"] == "your 3 photo(s)"
    # the loader's identity check embedded the set; the sampler's reference comes from that cache both times
    assert all("reference photos: 0 embedded now, 3 from the cache" in r for r in reports), reports


def test_keeping_fewer_candidates_without_a_reference_is_refused_before_sampling(comfy, client):
    lora = unique("no_ref")
    write_lora(comfy.base_dir / "models" / "loras" / f"{lora}.safetensors", "diffusers", factors(seed=43))
    before = len(journal(comfy).entries())
    prompt = local_nodes(f"{lora}.safetensors")
    prompt["sampler"] = sampler_node(["stack", 0], ["stack", 1], ["vae", 0], PROMPT, seed=5, steps=1, width=64,
                                     height=64, candidates=2, keep=1)
    result = client.run(prompt)
    assert result.status == "error"
    assert "keep is 1 of 2 candidates, but without a reference person" in result.error_message
    assert "Nothing was generated" in result.error_message and len(journal(comfy).entries()) == before

    prompt["sampler"]["inputs"]["keep"] = 0                # all of them: nothing to choose, nothing refused
    result = client.run(prompt)
    assert result.status == "success", result.error_message
    assert [journal(comfy).find(e["id"]).likeness for e in ui(result, "sampler")["likeness_journal"]] == [None, None]
    assert "Not scored for likeness: no reference person is known" in text(result, "sampler")


# --- on Replicate -----------------------------------------------------------------------------------------
SIDE = 320


def portrait(name: str) -> Image.Image:
    """A real photo (or a scene without a face) on a grey square, so every output has one size."""
    if name == "scene":
        return real_faces.scene_without_face(SIDE, SIDE)
    img = real_faces.image(name)
    img.thumbnail((SIDE, SIDE))
    square = Image.new("RGB", (SIDE, SIDE), (128, 128, 128))
    square.paste(img, ((SIDE - img.width) // 2, (SIDE - img.height) // 2))
    return square


def replicate_graph(version: str, dump: str, **sampler) -> dict:
    inputs = {"prompt": PROMPT, "trigger_words": "pelarbues", "seed": 500, "steps": 28, "guidance": 2.75,
              "aspect_ratio": "1:1", "width": 1024, "height": 1024, "num_outputs": 1, "output_format": "png",
              "lora_strength": 0.9, "go_fast": False, "run_on": "auto", "version": version, "lora_weights": "",
              "rerun": False, "filename_prefix": unique("likeness/rep"), **sampler}
    return {"1": {"class_type": "LikenessReplicateFluxSampler", "inputs": inputs},
            "2": {"class_type": "TinyTensorDump", "inputs": {"name": dump, "image": ["1", 0]}}}


@pytest.fixture
def trained_lora(comfy, replicate_fake) -> str:
    """A trained version on the fake, and its LoRA installed here with the training photos' reference in it
    (as the trainer installs it): the sampler finds the reference from the version alone."""
    from likeness.identity import load_backend, reference_from_photos
    from likeness.loras.lora_identity import reference_metadata

    version = replicate_fake.add_trained_version(f"likeness-tester/{unique('me')}")
    reference = reference_from_photos([real_faces.faces_dir() / n for n in ("obama2.jpg", "obama3.jpg")],
                                      load_backend("dlib"))
    write_lora(comfy.base_dir / "models" / "loras" / f"{unique('installed')}.safetensors", "diffusers",
               factors(seed=44), {"likeness_trigger_word": "pelarbues", "likeness_destination_version": version,
                                  **reference_metadata(reference)})
    return version


def test_replicate_best_of_n_scores_every_candidate_keeps_the_best_first_and_a_requeue_pays_nothing(
        comfy, client, replicate_fake, trained_lora):
    # the fake's images are real photos: prediction 500 makes four, 501 one (num_outputs' limit is 4)
    photos = {500: ("biden.jpg", "obama3.jpg", "scene", "obama.jpg"), 501: ("obama2.jpg",)}
    replicate_fake.use_images(lambda model, version, inputs, i: portrait(photos[inputs["seed"]][i]))
    creates = replicate_fake.count("POST", r"^/v1/predictions$")
    dump = unique("best2")
    result = client.run(replicate_graph(trained_lora, dump, candidates=5, keep=2))
    assert result.status == "success", result.error_message
    assert replicate_fake.count("POST", r"^/v1/predictions$") == creates + 2
    assert any(t.startswith("5 candidate FLUX images on Replicate") and "about $" in t and "for 2 new" in t
               for t in result.texts_for("1")), "the cost of all five, said before the first is paid"

    shown = ui(result, "1")
    entries = [journal(comfy).find(e["id"]) for e in shown["likeness_journal"]]      # most alike first
    assert len({e.id for e in entries}) == 5, "every candidate has its own journal entry"
    assert [(e.seed, e.extra.get("output")) for e in entries[-2:]] == [(500, 0), (500, 2)], \
        "the other person, then the image without a face, last"
    numbers = [e.score for e in entries[:4]]
    assert all(n is not None for n in numbers) and numbers == sorted(numbers, reverse=True)
    assert numbers[2] > 50 > numbers[3], "three photos of the person, then someone else"
    assert entries[4].score is None and entries[4].likeness["reason"] == "no face"
    assert all("the reference stored in installed_" in e.likeness["against"] for e in entries)
    for entry, image in zip(entries, shown["images"]):                # each PNG carries its own entry and score
        meta = png_entry(comfy, image)
        assert meta["id"] == entry.id and meta["likeness"] == entry.likeness and meta["images"] == []
    kept = load_file(comfy.base_dir / "output" / f"{dump}.safetensors")["image"]
    best = Image.open(comfy.base_dir / "output" / shown["images"][0]["subfolder"] / shown["images"][0]["filename"])
    assert kept.shape == (2, SIDE, SIDE, 3)
    assert (kept[0].mul(255).round().byte().numpy() == np.asarray(best.convert("RGB"))).all(), \
        "the most alike image comes out first"
    report = text(result, "1")
    assert "Scored 5 image(s) now, 0 scored before." in report
    assert "Best of 5, most alike first (kept the best 2; all of them are in the seed journal):" in report

    # the same candidates again, through a prompt ComfyUI does not recognise: nothing paid, nothing scored again
    again = client.run(replicate_graph(trained_lora, unique("again"), candidates=5, keep=2, prompt=f"  {PROMPT}  "))
    assert again.status == "success", again.error_message
    assert "1" not in again.cached_nodes()
    assert replicate_fake.count("POST", r"^/v1/predictions$") == creates + 2, "a re-queue pays 0"
    assert [e["id"] for e in ui(again, "1")["likeness_journal"]] == [e.id for e in entries]
    assert "Scored 0 image(s) now, 5 scored before." in text(again, "1")
