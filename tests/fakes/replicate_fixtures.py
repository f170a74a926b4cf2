"""Session fixture `fake_replicate`: the fake Replicate API for every test (ComfyUI gets its `.env`)."""
from __future__ import annotations

import pytest

from fakes.replicate import FakeReplicate


@pytest.fixture(scope="session")
def fake_replicate() -> FakeReplicate:
    from conftest import CANARY_TOKEN  # the token conftest.cloud_env gives ComfyUI and the SDK

    fake = FakeReplicate(token=CANARY_TOKEN).start()
    yield fake
    fake.stop()


@pytest.fixture
def replicate_fake(fake_replicate: FakeReplicate) -> FakeReplicate:
    """The session's fake, reset to a fresh account (no trainings, files, faults or log) for this test."""
    fake_replicate.reset()
    return fake_replicate


@pytest.fixture
def make_dataset(tmp_path):
    """Builds a prepared Dataset (photos + .txt captions in a folder) without the dataset loader."""
    from PIL import Image

    from likeness.dataset import Dataset, DatasetItem
    from likeness.storage import sha256_file

    def make(count: int = 3, trigger: str = "pelarbues", captions: bool = True, size: int = 64,
             folder_name: str = "dataset") -> Dataset:
        folder = tmp_path / folder_name
        folder.mkdir(parents=True, exist_ok=True)
        items = []
        for i in range(count):
            image = folder / f"{i:03d}.jpg"
            Image.new("RGB", (size, size), (40 * i % 256, 90, 160)).save(image, quality=90)
            caption = f"{trigger}, a man smiling, photo {i}" if captions else ""
            if captions:
                image.with_suffix(".txt").write_text(caption, encoding="utf-8")
            items.append(DatasetItem(image.name, sha256_file(image), str(image), caption, size, size))
        return Dataset(str(folder), trigger, tuple(items))

    return make


@pytest.fixture
def sleeps() -> list[float]:
    """The waits a ReplicateApi asked for (recorded, not slept)."""
    return []


@pytest.fixture
def replicate_api(replicate_fake: FakeReplicate, sleeps: list[float]):
    """The pack's ReplicateApi on the official SDK client, pointed at the fake; waits are recorded."""
    import replicate

    from likeness.cloud.replicate_client import ReplicateApi

    return ReplicateApi(replicate.Client(api_token=replicate_fake.token, base_url=replicate_fake.url),
                        sleep=sleeps.append)
