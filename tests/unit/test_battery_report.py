"""battery_report against the fake Replicate, whose images are real face photos chosen by the trained version:
the sheet's grid, the scores on it, the best variant and its margin, the CSV history, nothing paid twice."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import ImageOps

from tools import real_faces
from harness.progress import RecordingProgress
from likeness.dataset import Dataset, DatasetItem
from likeness.errors import BudgetError, InputError
from likeness.generation.battery_report import (CSV_FIELDS, DEFAULT_PROMPTS, ReportSettings, battery_report,
                                                parse_prompts)
from likeness.generation.battery_sheet import CELL, HEADER, LEFT, TITLE, draw_sheet
from likeness.storage import sha256_file
from likeness.training.battery import BatterySettings, run_battery
from likeness.training.training import PollSettings

FAST = PollSettings(interval=0.005, check_every=0.005)
PREDICT = r"^/v1/predictions$"


@pytest.fixture(scope="module")
def faces():
    return {"obama3": real_faces.image("obama3.jpg"), "biden": real_faces.image("biden.jpg"),
            "astronaut": real_faces.astronaut()}


@pytest.fixture
def face_dataset(tmp_path):
    """A prepared set of two photos of one person (the reference the report scores against)."""
    folder = tmp_path / "set"
    folder.mkdir()
    items = []
    for i, name in enumerate(("obama.jpg", "obama2.jpg")):
        image = ImageOps.contain(real_faces.image(name), (768, 768))
        path = folder / f"{i:03d}.jpg"
        image.save(path, quality=92)
        path.with_suffix(".txt").write_text(f"obamatok, a portrait photo {i}", encoding="utf-8")
        items.append(DatasetItem(path.name, sha256_file(path), name, "", image.width, image.height))
    return Dataset(str(folder), "obamatok", tuple(items))


@pytest.fixture
def battery(replicate_fake, replicate_api, face_dataset, faces, tmp_path):
    """A finished 3-variant battery whose trained versions draw: rank 16 → the person, 32 → another man,
    64 → a woman (each prompt's seed turns or crops the photo, so every cell differs)."""
    record = run_battery(face_dataset, BatterySettings("likeness-tester/obama", variations="lora_rank: 16, 32, 64"),
                         user_dir=tmp_path / "user", loras_dir=tmp_path / "loras", api=replicate_api, poll=FAST)
    by_version = {}
    for run, who in zip(record.runs, ("biden", "obama3", "astronaut")):       # runs: base (32), 16, 64
        by_version[run.record.version.split(":")[1]] = faces[who]

    def draw(model, version, inputs, index):
        photo = ImageOps.contain(by_version[version], (512, 512))
        seed = int(inputs.get("seed", 0))
        return ImageOps.mirror(photo) if seed % 2 == 0 else photo.crop((0, 0, photo.width, photo.height * 9 // 10))
    replicate_fake.use_images(draw)
    return record


@pytest.fixture
def report(replicate_api, tmp_path):
    def make(battery, settings=None, **kwargs):
        return battery_report(battery, settings or ReportSettings(), user_dir=tmp_path / "user",
                              output_dir=tmp_path / "output", cache_dir=tmp_path / "user" / "identity",
                              api=replicate_api, poll=FAST, **kwargs)
    return make


def test_the_report_names_the_variant_that_looks_like_the_person(replicate_fake, battery, report, tmp_path):
    made = report(battery, progress=RecordingProgress())
    assert [row.label for row in made.rows] == ["base", "lora_rank 16", "lora_rank 64"]
    assert all(len(row.images) == 3 and len(row.scores) == 3 for row in made.rows)
    person = made.rows[1]
    assert all(s.likeness is not None and s.likeness > 50 for s in person.scores), person.scores
    assert all(s.likeness is not None and s.likeness < 50 for row in (made.rows[0], made.rows[2])
               for s in row.scores)
    best, margin = made.best()
    assert best is person and margin > 10
    runner_up = max(made.rows[0].mean, made.rows[2].mean)
    assert margin == pytest.approx(person.mean - runner_up)
    assert made.best_line().startswith(f"Best: lora_rank 16, mean likeness {person.mean:.1f}, {margin:.1f} above")
    assert replicate_fake.count("POST", PREDICT) == 9
    assert {replicate_fake.prediction(p)["input"]["seed"] for p in replicate_fake.prediction_ids()} == {1, 2, 3}
    assert made.new_images == 9 and made.images_cost_usd > 0
    table = made.table()
    assert "lora_rank 16" in table and "Best: lora_rank 16" in table and "9 new for $" in table


def test_the_sheet_has_a_row_per_variant_and_a_column_per_prompt(battery, report):
    made = report(battery)
    sheet = draw_sheet(made)
    assert sheet.shape == (TITLE + HEADER + 3 * CELL, LEFT + 3 * CELL, 3) and sheet.dtype == np.float32
    # each cell holds its image: the person's row differs from the others, and the cells of a row differ
    cells = [[sheet[TITLE + HEADER + i * CELL + 10: TITLE + HEADER + (i + 1) * CELL - 40,
                    LEFT + j * CELL + 10: LEFT + (j + 1) * CELL - 10] for j in range(3)] for i in range(3)]
    assert all(float(np.abs(cells[1][j] - cells[0][j]).mean()) > 0.02 for j in range(3))
    assert float(np.abs(cells[1][0] - cells[1][1]).mean()) > 0.02
    # the best row is framed in green
    top = TITLE + HEADER + CELL
    assert np.allclose(sheet[top + 1, LEFT + CELL], np.array([90, 200, 110]) / 255.0, atol=0.01)


def test_figures_go_to_a_csv_history_and_a_second_report_pays_nothing(replicate_fake, battery, report, tmp_path):
    first = report(battery)
    again = report(battery)
    assert replicate_fake.count("POST", PREDICT) == 9                   # the same images: reused
    assert again.new_images == 0 and again.images_cost_usd == 0
    assert first.csv_path == again.csv_path == tmp_path / "output" / "likeness" / "battery_reports.csv"
    with open(first.csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and list(rows[0]) == CSV_FIELDS
    best = [r for r in rows if r["best"] == "yes"]
    assert [r["variant"] for r in best] == ["lora_rank 16"] * 2 and float(best[0]["margin_to_next"]) > 10
    assert rows[1]["scores"].startswith("close-up (seed 1)=")
    assert float(rows[1]["training_cost_usd"]) == pytest.approx(battery.runs[1].record.cost_usd, abs=1e-4)


def test_the_reports_images_are_refused_as_a_whole_over_the_budget(replicate_fake, battery, report, monkeypatch):
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", "0.01")       # less than the trainings already cost
    with pytest.raises(BudgetError) as refused:
        report(battery)
    assert "The report's 9 new images, checked as a whole," in str(refused.value)
    assert replicate_fake.count("POST", PREDICT) == 0


def test_on_this_machine_each_image_comes_from_the_renderer(replicate_fake, battery, report):
    drawn = []

    def render(run, prompt, settings):
        drawn.append((run.label, prompt.seed, settings.steps))
        return np.full((64, 64, 3), 0.5, np.float32)                    # no face, as the tiny FLUX draws

    made = report(battery, ReportSettings(steps=4), render=render)
    assert drawn == [(label, seed, 4) for label in ("base", "lora_rank 16", "lora_rank 64") for seed in (1, 2, 3)]
    assert replicate_fake.count("POST", PREDICT) == 0 and made.generated_on == "this machine"
    assert all(s.reason == "no face" for row in made.rows for s in row.scores)
    assert made.best() == (None, None) and made.best_line().startswith("No variant can be ranked")


def test_prompt_lines_take_a_label_and_a_seed():
    prompts = parse_prompts("close-up | 7 | a photo\n7 | another\nwide | a third\njust a prompt")
    assert [(p.label, p.seed, p.text) for p in prompts] == [
        ("close-up", 7, "a photo"), ("prompt 2", 7, "another"), ("wide", 3, "a third"), ("prompt 4", 4, "just a prompt")]
    assert [p.label for p in parse_prompts(DEFAULT_PROMPTS)] == ["close-up", "half body", "stylised"]
    with pytest.raises(InputError, match="seed 'x' must be a whole number"):
        parse_prompts("a | x | b")
    with pytest.raises(InputError, match="No prompts"):
        parse_prompts("\n# nothing\n")

