"""The `fake_gemini` session fixture (its `.env` points the ComfyUI server's SDK at it) and `gemini` (reset per test)."""
from __future__ import annotations

import pytest

from fakes.gemini import FakeGemini

# conftest.cloud_env gives the ComfyUI server this key as GEMINI_API_KEY; the fake accepts only it.
from conftest import CANARY_KEY


@pytest.fixture(scope="session")
def fake_gemini(tmp_path_factory) -> FakeGemini:
    fake = FakeGemini(api_keys={CANARY_KEY}).start()
    fake.write_service_account(tmp_path_factory.mktemp("gemini-adc") / "service-account.json")
    yield fake
    fake.stop()


@pytest.fixture
def gemini(fake_gemini) -> FakeGemini:
    """The session's fake, with no scripted behaviours, no latency and an empty request log."""
    fake_gemini.reset()
    yield fake_gemini
    fake_gemini.reset()


@pytest.fixture
def gemini_env(gemini, monkeypatch) -> FakeGemini:
    """For in-process library tests: the SDK's own variables point at the fake, the key is the canary."""
    for name, value in gemini.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GEMINI_API_KEY", CANARY_KEY)
    for name in ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE",
                 "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "LIKENESS_MONTHLY_BUDGET_USD"):
        monkeypatch.delenv(name, raising=False)
    return gemini


# Distinct solid colours: the fake can tell the photos apart (image_color) after any re-encoding.
PHOTO_COLORS = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (200, 40, 200), (40, 200, 200),
                (120, 120, 120), (240, 160, 60), (60, 160, 240), (160, 60, 240)]


def photo_color(index: int) -> tuple[int, int, int]:
    return PHOTO_COLORS[index % len(PHOTO_COLORS)]


def write_photo(path, color, size=(96, 96), variant: int = 0) -> None:
    """A small JPEG of one colour (a few pixels vary with `variant`, so every photo's bytes differ)."""
    from PIL import Image

    img = Image.new("RGB", size, color)
    for i in range(variant + 1):
        img.putpixel((i % size[0], (i * 7) % size[1]), (255 - color[0], 255 - color[1], 255 - color[2]))
    img.save(path, "JPEG", quality=95)


@pytest.fixture
def photo_set(tmp_path):
    """Builds a prepared Dataset directly (no loader): `photo_set(n, trigger_word)`."""
    from likeness.dataset import Dataset, DatasetItem
    from likeness.storage import sha256_file

    def make(n: int = 4, trigger_word: str = "pelarbues", folder=None) -> Dataset:
        root = folder or tmp_path / "dataset"
        root.mkdir(parents=True, exist_ok=True)
        items = []
        for i in range(n):
            path = root / f"{i:03d}.jpg"
            write_photo(path, photo_color(i), variant=i)
            items.append(DatasetItem(path.name, sha256_file(path), str(path), "", 96, 96))
        return Dataset(str(root), trigger_word, tuple(items))
    return make
