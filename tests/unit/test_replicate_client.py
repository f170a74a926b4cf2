"""The Replicate client factory: clear errors for each refusal, retries only where no money can be spent twice."""
from __future__ import annotations

import io
import socket

import pytest
import replicate

from likeness.errors import InputError, ServiceError
from likeness.cloud.replicate_client import ReplicateApi, connect


@pytest.fixture
def fake(replicate_fake):
    return replicate_fake


@pytest.fixture
def api(replicate_api):
    return replicate_api


def trainer(api):
    return api.call("Looking up the trainer", api.sdk.models.get, "ostris/flux-dev-lora-trainer", idempotent=True)


@pytest.mark.parametrize("status, body, error, words", [
    (402, {"title": "Insufficient credit", "detail": "You have insufficient credit to run this model.",
           "status": 402}, ServiceError, "no credit left. Add credit at https://replicate.com/account/billing"),
    (404, {"detail": "Not found.", "status": 404}, InputError, "Replicate could not find it"),
    (422, {"title": "Input validation failed", "detail": "- input.steps: Must be less than or equal to 6000\n",
           "status": 422}, InputError, "refused the inputs: - input.steps"),
    (500, {"detail": "Internal server error", "status": 500}, ServiceError, "server error \\(500"),
])
def test_refusals_become_errors_that_say_what_to_do(fake, api, status, body, error, words):
    fake.inject("GET", r"/v1/models/", status, body, times=10)
    with pytest.raises(error, match=words):
        trainer(api)


def test_a_bad_token_says_where_to_make_one_and_never_shows_it(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_" "WRONGwrongWRONGwrong0000000000")
    monkeypatch.setenv("REPLICATE_BASE_URL", fake.url)
    api = connect(tmp_path)
    with pytest.raises(InputError, match="refused the API token") as info:
        trainer(api)
    assert "api-tokens" in str(info.value) and "r8_WRONG" not in str(info.value)


def test_no_token_is_an_input_error_before_any_request(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    with pytest.raises(InputError, match="No Replicate API token"):
        connect(tmp_path)
    assert fake.requests == []


def test_a_token_file_in_the_user_dir_works(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.setenv("REPLICATE_BASE_URL", fake.url)
    (tmp_path / "replicate_api_token").write_text(fake.token + "\n")
    assert trainer(connect(tmp_path)).owner == "ostris"


def test_a_throttled_post_is_retried_after_the_wait_in_its_text(fake, api, sleeps):
    fake.throttle("POST", r"^/v1/files$", times=2, retry_after=3)
    uploaded = api.call("Uploading", api.sdk.files.create, io.BytesIO(b"PK\x05\x06" + b"\0" * 18),
                        filename="d.zip")
    assert uploaded.size == 22 and sleeps == [3.0, 3.0]
    assert fake.count("POST", r"^/v1/files$") == 3


def test_a_post_that_may_have_created_something_is_not_retried(fake, api, sleeps):
    fake.inject("POST", r"^/v1/models$", 500)
    with pytest.raises(ServiceError, match="server error"):
        api.call("Creating", api.sdk.models.create, "likeness-tester", "x", visibility="private",
                 hardware="gpu-t4")
    assert fake.count("POST", r"^/v1/models$") == 1 and sleeps == []


def test_idempotent_calls_are_retried_on_server_errors_then_give_up(fake, api, sleeps):
    fake.inject("GET", r"/v1/models/", 502, times=10)
    with pytest.raises(ServiceError, match="502"):
        trainer(api)
    assert fake.count("GET", r"/v1/models/") == api.attempts and sleeps == [1.0, 2.0, 4.0]


def test_missing_ok_returns_none_for_404(api):
    assert api.call("Looking", api.sdk.models.get, "nobody/nothing", missing_ok=True, idempotent=True) is None


def test_raw_get_keeps_fields_the_sdk_drops_and_statuses_it_rejects(fake, api):
    fake.plan_next(outcome="aborted", ticks=3)
    version = trainer(api).latest_version.id
    fake.add_model("likeness-tester", "dest")
    upload = api.sdk.files.create(io.BytesIO(b"zip"), filename="d.zip")
    created = api.sdk.trainings.create(model="ostris/flux-dev-lora-trainer", version=version,
                                       input={"input_images": upload.urls["get"], "steps": 10},
                                       destination="likeness-tester/dest")
    for _ in range(2):
        data = api.get_json(f"/v1/trainings/{created.id}", "Checking")
    assert data["status"] == "aborted" and data["metrics"] == {"predict_time": 0.0, "total_time": 20.0}
    with pytest.raises(Exception, match="unexpected value"):       # the SDK's own model refuses "aborted"
        api.sdk.trainings.get(created.id)


def test_unreachable_replicate_is_a_service_error_naming_the_address(sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = ReplicateApi(replicate.Client(api_token="r8_x", base_url=f"http://127.0.0.1:{port}"),
                       sleep=sleeps.append)
    with pytest.raises(ServiceError, match="could not reach Replicate"):
        api.call("Looking", api.sdk.models.get, "a/b")
    assert sleeps == []                                         # a POST-like call is not retried blindly


def test_an_html_page_with_status_200_is_a_clear_error_not_a_traceback(fake, api):
    """Guards issue 17 §16: a proxy or captive portal answering HTML with 200 is explained, and retried where
    that is safe."""
    fake.inject("GET", r"/v1/models/", 200, b"<!doctype html><html><body>Sign in to the Wi-Fi</body></html>",
                {"Content-Type": "text/html"}, times=10)
    with pytest.raises(ServiceError, match="not an answer from Replicate's API") as info:
        trainer(api)
    assert "proxy" in str(info.value)
    assert fake.count("GET", r"/v1/models/") == api.attempts
