"""The captioning run against the fake Gemini server, through the real google-genai SDK (no patching)."""
from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image

from conftest import CANARY_KEY
from fakes.gemini import image_color
from fakes.gemini_fixtures import photo_color, write_photo
from likeness.captions.caption_cache import CachedCaption, CaptionCache, CaptionFiles, cache_key
from likeness.captions.captioning import (CaptionSettings, RateLimiter, caption_dataset_sync, jpeg_for_gemini,
                                 quota_ids, retry_delay_seconds)
from likeness.dataset import DatasetItem
from likeness.errors import BudgetError, ServiceError
from likeness.progress import Interrupted
from likeness.storage import sha256_file
from likeness.money.spend_ledger import SpendLedger

FAST = CaptionSettings(backoff_initial=0.01, backoff_max=0.05)


def captions_on_disk(dataset):
    return [dataset.caption_path(i).read_text().strip() if dataset.caption_path(i).exists() else None
            for i in dataset.items]


def test_captions_every_image_trigger_word_first_and_writes_the_side_cars(gemini_env, photo_set, tmp_path):
    dataset = photo_set(4, "pelarbues")
    run = caption_dataset_sync(dataset, FAST, tmp_path / "user")
    assert [r.status for r in run.images] == ["captioned"] * 4
    assert all(c.startswith("pelarbues, ") for c in run.captions)
    assert captions_on_disk(dataset) == run.captions
    assert run.dataset.captions == run.captions and len(set(run.captions)) == 4
    calls = gemini_env.generate_calls()
    assert len(calls) == 4
    assert {c.path for c in calls} == {"/v1beta/models/gemini-3.8-flash:generateContent"}
    assert all(c.api_key == CANARY_KEY for c in calls)


def test_the_request_sends_one_jpeg_the_schema_and_neither_key_nor_trigger_word(gemini_env, photo_set, tmp_path):
    caption_dataset_sync(photo_set(1, "zorblat"), FAST, tmp_path / "user")
    (call,) = gemini_env.generate_calls()
    assert [mime for mime, _ in call.images] == ["image/jpeg"]
    assert "zorblat" not in call.raw_body.lower()
    assert CANARY_KEY not in call.raw_body
    assert "eye" not in json.dumps(call.schema["properties"]).replace("eye colour", "").replace("eye level", "")
    assert call.body["generationConfig"]["responseMimeType"] == "application/json"


def test_large_photos_are_sent_as_jpeg_with_a_long_side_of_at_most_1536(gemini_env, photo_set, tmp_path):
    dataset = photo_set(1)
    big = dataset.image_path(dataset.items[0]).with_suffix(".png")
    Image.new("RGB", (3000, 2000), (10, 120, 200)).save(big)
    item = DatasetItem(big.name, sha256_file(big), str(big))
    caption_dataset_sync(type(dataset)(dataset.folder, "ohwx", (item,)), FAST, tmp_path / "user")
    (call,) = gemini_env.generate_calls()
    with Image.open(io.BytesIO(call.images[0][1])) as sent:
        assert sent.format == "JPEG" and max(sent.size) == 1536
    assert len(call.images[0][1]) < 7 * 1024 * 1024
    assert max(Image.open(io.BytesIO(jpeg_for_gemini(big))).size) == 1536


def test_a_second_run_makes_no_request_even_from_a_new_process_state(gemini_env, photo_set, tmp_path):
    dataset = photo_set(3)
    first = caption_dataset_sync(dataset, FAST, tmp_path / "user")
    gemini_env.requests.clear()
    for item in dataset.items:                      # even with the side-cars gone, the cache has them
        dataset.caption_path(item).unlink()
    again = caption_dataset_sync(dataset, FAST, tmp_path / "user")
    assert gemini_env.generate_calls() == []
    assert [r.status for r in again.images] == ["cached"] * 3
    assert again.captions == first.captions == captions_on_disk(dataset)
    assert again.cost_usd == 0


def test_changing_model_instructions_or_trigger_word_asks_again(gemini_env, photo_set, tmp_path):
    dataset = photo_set(1)
    caption_dataset_sync(dataset, FAST, tmp_path / "user")
    caption_dataset_sync(dataset, CaptionSettings(model="gemini-3.5-flash"), tmp_path / "user")
    caption_dataset_sync(dataset, CaptionSettings(instructions="Describe the clothes."), tmp_path / "user")
    assert len(gemini_env.generate_calls()) == 3


def test_hand_edits_are_kept_and_not_paid_for_unless_overwrite(gemini_env, photo_set, tmp_path):
    dataset = photo_set(3)
    caption_dataset_sync(dataset, FAST, tmp_path / "user")
    edited = dataset.caption_path(dataset.items[1])
    edited.write_text("pelarbues, my own words.")
    gemini_env.requests.clear()
    run = caption_dataset_sync(dataset, CaptionSettings(instructions="Describe the clothes."), tmp_path / "user")
    assert [r.status for r in run.images] == ["captioned", "kept", "captioned"]
    assert edited.read_text().strip() == "pelarbues, my own words." and run.captions[1] == "pelarbues, my own words."
    assert len(gemini_env.generate_calls()) == 2
    run = caption_dataset_sync(dataset, CaptionSettings(instructions="Describe the clothes.", overwrite=True),
                               tmp_path / "user")
    assert run.images[1].status == "captioned" and edited.read_text().strip() != "pelarbues, my own words."


@pytest.mark.parametrize("kind", ["503", "500", "html_502"])
def test_server_errors_are_retried_with_backoff(gemini_env, photo_set, tmp_path, kind):
    gemini_env.script(kind, times=2)
    run = caption_dataset_sync(photo_set(2), FAST, tmp_path / "user")
    assert [r.status for r in run.images] == ["captioned", "captioned"]
    assert [c.status for c in gemini_env.generate_calls()].count(200) == 2
    assert len(gemini_env.generate_calls()) == 4


@pytest.mark.parametrize("kind", ["reset", "truncated"])
def test_a_dropped_connection_is_retried_like_a_server_error(gemini_env, photo_set, tmp_path, kind):
    gemini_env.script(kind, times=2)
    run = caption_dataset_sync(photo_set(2), FAST, tmp_path / "user")
    assert [r.status for r in run.images] == ["captioned", "captioned"]
    assert [r.behaviour for r in gemini_env.generate_calls()].count(kind) == 2


def test_an_image_that_keeps_failing_is_reported_and_the_others_are_captioned(gemini_env, photo_set, tmp_path):
    gemini_env.script("503", match=image_color(photo_color(0)), times=None)
    run = caption_dataset_sync(photo_set(2), FAST, tmp_path / "user")
    assert [r.status for r in run.images] == ["failed", "captioned"]
    assert "503" in run.images[0].reason and run.images[0].attempts == FAST.max_attempts
    assert "000.jpg: failed" in run.report()


def test_a_429_waits_as_long_as_retry_info_says(gemini_env, photo_set, tmp_path):
    gemini_env.script("rate_minute", times=1, retry_delay="0.6s")
    run = caption_dataset_sync(photo_set(1), FAST, tmp_path / "user")
    assert run.images[0].status == "captioned"
    first, second = gemini_env.generate_calls()
    assert first.status == 429 and second.status == 200
    assert second.started - first.finished >= 0.6   # the wait the server asked for, not the 0.01 s backoff


def test_a_daily_quota_stops_the_run_and_keeps_what_was_done(gemini_env, photo_set, tmp_path):
    dataset = photo_set(4)
    gemini_env.script("quota_day", match=image_color(photo_color(2)), times=None)
    with pytest.raises(ServiceError) as err:
        caption_dataset_sync(dataset, CaptionSettings(concurrency=1), tmp_path / "user")
    message = str(err.value)
    assert "daily quota" in message and "2 of 4 captions are done and saved" in message
    assert captions_on_disk(dataset)[:2] != [None, None] and captions_on_disk(dataset)[2:] == [None, None]
    assert len(gemini_env.generate_calls()) == 3    # nothing after the quota error
    gemini_env.reset()
    run = caption_dataset_sync(dataset, CaptionSettings(concurrency=1), tmp_path / "user")   # next day
    assert [r.status for r in run.images] == ["cached", "cached", "captioned", "captioned"]
    assert len(gemini_env.generate_calls()) == 2


@pytest.mark.parametrize("kind, words", [("blocked", "blocked the photo (PROHIBITED_CONTENT)"),
                                         ("safety", "for safety (SAFETY)")])
def test_blocked_answers_are_reported_per_image_and_not_paid_for_again(gemini_env, photo_set, tmp_path, kind, words):
    dataset = photo_set(3)
    gemini_env.script(kind, match=image_color(photo_color(1)), times=None)
    run = caption_dataset_sync(dataset, FAST, tmp_path / "user")
    assert [r.status for r in run.images] == ["captioned", "blocked", "captioned"]
    assert words in run.images[1].reason and words in run.report()
    assert captions_on_disk(dataset)[1] is None
    gemini_env.requests.clear()
    again = caption_dataset_sync(dataset, FAST, tmp_path / "user")   # the refusal was paid once: not again
    assert gemini_env.generate_calls() == [] and again.images[1].status == "blocked"


@pytest.mark.parametrize("kind, words", [("max_tokens", "MAX_TOKENS"), ("not_json", "not the JSON asked for")])
def test_a_failed_answer_is_not_cached_and_the_next_run_asks_again(gemini_env, photo_set, tmp_path, kind, words):
    """MAX_TOKENS or an unparsable answer is a failure of that request, not Gemini's verdict on the photo:
    it must not be cached as "blocked" forever (issue 17, item 19). It was paid, so the ledger has it."""
    dataset = photo_set(3)
    gemini_env.script(kind, match=image_color(photo_color(1)), times=1)
    run = caption_dataset_sync(dataset, FAST, tmp_path / "user")
    assert [r.status for r in run.images] == ["captioned", "failed", "captioned"]
    assert words in run.images[1].reason and "queue again" in run.images[1].reason
    assert f"{run.images[1].image}: failed" in run.report() and run.images[1].cost_usd > 0
    assert len(SpendLedger(tmp_path / "user")._entries()) == 3        # the failed answer was billed too
    gemini_env.requests.clear()
    again = caption_dataset_sync(dataset, FAST, tmp_path / "user")
    assert len(gemini_env.generate_calls()) == 1                     # only the failed photo, asked again
    assert [r.status for r in again.images] == ["cached", "captioned", "cached"]
    assert captions_on_disk(dataset)[1].startswith(f"{dataset.trigger_word}, ")


def test_a_failure_an_older_version_cached_as_blocked_is_asked_again(gemini_env, photo_set, tmp_path):
    dataset = photo_set(1)
    item = dataset.items[0]
    key = cache_key(item.sha256, FAST.model, FAST.instructions, dataset.trigger_word)
    CaptionCache(tmp_path / "user").put(key, CachedCaption("", {}, FAST.model, blocked=(
        "Gemini used its whole token budget before writing the caption (MAX_TOKENS); try a model with less "
        "thinking")))
    run = caption_dataset_sync(dataset, FAST, tmp_path / "user")
    assert [r.status for r in run.images] == ["captioned"] and len(gemini_env.generate_calls()) == 1


def test_an_interrupt_stops_promptly_and_keeps_finished_captions(gemini_env, photo_set, tmp_path):
    dataset = photo_set(5)
    held = gemini_env.hold(match=lambda r: not image_color(photo_color(0))(r) and not image_color(photo_color(1))(r))

    class StopAfterTwo:
        def update(self, done, total, text=""):
            pass

        def interrupted(self):
            return sum(p is not None for p in captions_on_disk(dataset)) >= 2

    try:
        with pytest.raises(Interrupted) as err:
            caption_dataset_sync(dataset, CaptionSettings(concurrency=5), tmp_path / "user", StopAfterTwo())
        assert not held.is_set()    # returned while the other requests were still open at the server
    finally:
        gemini_env.release()
    assert "2 of 5 captions are done and saved" in str(err.value)
    assert [c is not None for c in captions_on_disk(dataset)] == [True, True, False, False, False]
    assert len(SpendLedger(tmp_path / "user")._entries()) == 2   # paid for the finished two only


def test_concurrency_limits_requests_in_flight(gemini_env, photo_set, tmp_path):
    gemini_env.latency = 0.2
    caption_dataset_sync(photo_set(6), CaptionSettings(concurrency=2), tmp_path / "user")
    assert gemini_env.max_in_flight == 2


def test_a_refused_key_stops_the_run_without_showing_the_key(gemini_env, photo_set, tmp_path):
    gemini_env.script("invalid_key", times=None, echo_key=True)
    with pytest.raises(ServiceError) as err:
        caption_dataset_sync(photo_set(2), FAST, tmp_path / "user")
    assert "refused the credentials" in str(err.value) and "GEMINI_API_KEY" in str(err.value)
    assert CANARY_KEY not in str(err.value)
    assert gemini_env.generate_calls()[0].api_key == CANARY_KEY   # the fake did echo it back


def test_a_refused_key_echoed_by_the_service_reaches_no_log_record(gemini_env, photo_set, tmp_path, caplog):
    # Every image's task fails at once: none may be left for asyncio to log ("exception was never retrieved")
    # with the SDK's error, which carries the echoed key, in its chain.
    import gc
    import logging

    gemini_env.script("invalid_key", times=None, echo_key=True)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ServiceError):
        caption_dataset_sync(photo_set(4), FAST, tmp_path / "user")
    gc.collect()
    logged = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert CANARY_KEY not in logged


def test_an_unknown_model_says_which_and_what_to_do(gemini_env, photo_set, tmp_path):
    with pytest.raises(ServiceError) as err:
        caption_dataset_sync(photo_set(1), CaptionSettings(model="gemini-9-ultra"), tmp_path / "user")
    assert "no model 'gemini-9-ultra'" in str(err.value) and "gemini-3.8-flash" in str(err.value)


def test_cost_is_estimated_before_checked_against_the_budget_and_recorded_after(gemini_env, photo_set, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", "0.0001")
    with pytest.raises(BudgetError):
        caption_dataset_sync(photo_set(3), FAST, tmp_path / "user")
    assert gemini_env.generate_calls() == []
    monkeypatch.setenv("LIKENESS_MONTHLY_BUDGET_USD", "5")
    run = caption_dataset_sync(photo_set(3), FAST, tmp_path / "user")
    entries = SpendLedger(tmp_path / "user")._entries()
    assert len(entries) == 3 and all(e["service"] == "gemini" and not e["estimated"] for e in entries)
    # usageMetadata of the fake: 1,089 image tokens + text; gemini-3.8-flash at $0.75 / $3.75 per million
    expected = sum((r.prompt_tokens * 0.75 + r.output_tokens * 3.75) / 1e6 for r in run.images)
    assert run.cost_usd == pytest.approx(expected) and sum(e["usd"] for e in entries) == pytest.approx(expected, abs=1e-5)
    assert all(r.prompt_tokens > 1089 for r in run.images)
    assert 0 < run.estimate_usd and "estimated" in run.report() and "spent on 3 answers" in run.report()


def test_lint_flags_reach_the_report(gemini_env, photo_set, tmp_path):
    gemini_env.script("ok", match=image_color(photo_color(0)), times=None,
                      fields={"facial_expression": "Smiling, her blue eyes wide"})
    run = caption_dataset_sync(photo_set(3), FAST, tmp_path / "user")
    assert [(f.image, f.kind) for f in run.flags] == [("000.jpg", "forbidden")]
    assert "000.jpg: mentions 'blue eyes'" in run.report()


def test_rate_limiter_allows_rpm_starts_per_minute():
    now, slept = [0.0], []

    async def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    async def go():
        limiter = RateLimiter(2, clock=lambda: now[0], sleep=sleep)
        for _ in range(3):
            await limiter.wait()
            now[0] += 1
    asyncio.run(go())
    assert slept == [58.0]   # the third start waits until the first is a minute old


def test_retry_info_and_quota_ids_are_read_from_google_error_bodies():
    body = {"error": {"code": 429, "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "45.837906927s"}]}}
    assert retry_delay_seconds(body) == pytest.approx(45.837906927)
    assert quota_ids(body) == ["GenerateRequestsPerMinutePerProjectPerModel-FreeTier"]
    assert retry_delay_seconds([body]) == pytest.approx(45.837906927)   # Vertex wraps it in a list
    assert retry_delay_seconds({"message": "Bad Gateway"}) is None


def test_a_users_caption_brought_with_the_photos_is_kept(gemini_env, photo_set, tmp_path):
    dataset = photo_set(2)
    dataset.caption_path(dataset.items[0]).write_text("pelarbues, as I wrote it.")
    run = caption_dataset_sync(dataset, FAST, tmp_path / "user")
    assert [r.status for r in run.images] == ["kept", "captioned"]
    assert len(gemini_env.generate_calls()) == 1
    assert CaptionFiles(tmp_path / "user").is_hand_edit(dataset.caption_path(dataset.items[0]))


def test_write_photo_makes_distinct_files(tmp_path):
    write_photo(tmp_path / "a.jpg", (1, 2, 3), variant=0)
    write_photo(tmp_path / "b.jpg", (1, 2, 3), variant=1)
    assert sha256_file(tmp_path / "a.jpg") != sha256_file(tmp_path / "b.jpg")


def test_the_sync_entry_point_works_inside_a_running_event_loop(gemini_env, photo_set, tmp_path):
    # A host or a browser driver may already run a loop in the calling thread.
    import asyncio

    dataset = photo_set(2, "pelarbues")

    async def inside_a_loop():
        return caption_dataset_sync(dataset, FAST, tmp_path / "user")

    run = asyncio.run(inside_a_loop())
    assert [r.status for r in run.images] == ["captioned"] * 2
