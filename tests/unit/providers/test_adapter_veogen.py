"""The veogen adapter against seeds 002, the task page quoted in seeds/README.md, and docs/dialects.md."""

from __future__ import annotations

import httpx
import pytest

from shared.errors import (
    AuthFailed,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.providers.base import TaskState
from shared.providers.veogen import VeoGenAdapter

from .helpers import PRESIGNED, SECRET, UPLOADED, FakeInputs, answer, config, req, send_mock, sent_json

ADAPTER = VeoGenAdapter()


def generation(status: str, **fields: object) -> dict[str, object]:
    data = {"id": "gen_01", "status": status, "model": "sora-2", "type": "video", "prompt": "p", "parameters": {}}
    return {"data": data | {"output": None, "error": None, "created_at": "2025-01-01T00:00:00Z"} | fields}


def test_the_documented_example_request() -> None:
    request = req("gpt-4o-image", "A serene mountain landscape at sunset, photorealistic", aspect_ratio="16:9")
    built = ADAPTER.build_submit(request, config("veogen", api_key="YOUR_TOKEN"), FakeInputs())
    outgoing, got = send_mock(built, httpx.Response(201, json=generation("pending") | {"price_usd": 0.04}))
    assert outgoing.method == "POST"
    assert str(outgoing.url) == "https://veogen.studio/api/v1/generations"
    assert outgoing.headers["authorization"] == "Bearer YOUR_TOKEN"
    assert sent_json(outgoing) == {
        "model": "gpt-4o-image",
        "prompt": "A serene mountain landscape at sunset, photorealistic",
        "aspect_ratio": "16:9",
    }
    assert ADAPTER.parse_submit(got).task_id == "gen_01"


def test_text_to_video_with_sora_options() -> None:
    request = req("sora-2", duration=15, style="anime", watermark=False, private=True, resolution="720p")
    built = ADAPTER.build_submit(request, config("veogen"), FakeInputs())
    assert built.json_body == {
        "model": "sora-2",
        "prompt": "A cat surfing in sunset, cinematic",
        "duration": 15,
        "style": "anime",
        "watermark": False,
        "private": True,
        "resolution": "720p",
    }


def test_image_to_video_with_a_url_and_an_uploaded_file() -> None:
    inputs = FakeInputs()
    request = req("veo-3.1-fast", mode="frame", image_urls=["https://example.com/cat.jpg", UPLOADED])
    built = ADAPTER.build_submit(request, config("veogen"), inputs)
    assert built.json_body is not None
    assert built.json_body["image_urls"] == ["https://example.com/cat.jpg", PRESIGNED]
    assert built.json_body["mode"] == "frame"
    assert ("url", UPLOADED) in inputs.calls and not any(kind == "data_uri" for kind, _ in inputs.calls)


def test_reference_media_are_video_urls_and_audio_urls() -> None:
    request = req(
        "seedance-2.0",
        reference_video_urls=["https://v.example/a.mp4"],
        reference_audio_urls=["https://v.example/a.mp3"],
        extra={"seed": 1},
    )
    built = ADAPTER.build_submit(request, config("veogen"), FakeInputs())
    assert built.json_body is not None
    assert built.json_body["video_urls"] == ["https://v.example/a.mp4"]
    assert built.json_body["audio_urls"] == ["https://v.example/a.mp3"]
    assert built.json_body["seed"] == 1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("reference_image_urls", ["https://a.example/r.png"]),
        ("output_format", "png"),
        ("audio", True),
        ("size", "1024x1024"),
        ("scope", "videos"),
        ("video_url", "https://v.example/a.mp4"),
        ("audio_setting", "auto"),
    ],
)
def test_options_veogen_cannot_take_are_refused(option: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=f"^veogen does not take the option '{option}'$"):
        ADAPTER.build_submit(req("sora-2", **{option: value}), config("veogen"), FakeInputs())


def test_parse_submit_reads_price_usd() -> None:
    result = ADAPTER.parse_submit(answer(201, generation("pending") | {"price_usd": 0.3}))
    assert (result.task_id, result.state, result.cost.usd, result.cost.credits) == (
        "gen_01",
        TaskState.PENDING,
        0.3,
        None,
    )


def test_402_is_insufficient_credits_with_both_vendor_sentences() -> None:
    body = {
        "error": "Insufficient balance.",
        "message": "This generation costs $0.30. Your balance is $0.05.",
        "required": 0.30,
        "balance": 0.05,
    }
    with pytest.raises(InsufficientCredits) as caught:
        ADAPTER.parse_submit(answer(402, body))
    assert caught.value.message == "HTTP 402: Insufficient balance. This generation costs $0.30. Your balance is $0.05."


def test_422_is_a_rejection_with_the_validation_message() -> None:
    body = {"message": "The model field is required.", "errors": {"model": ["The model field is required."]}}
    with pytest.raises(ProviderRejected, match=r"The model field is required\.") as caught:
        ADAPTER.parse_submit(answer(422, body))
    assert caught.value.code == "invalid_request"


def test_422_with_only_errors_uses_the_first_one() -> None:
    with pytest.raises(ProviderRejected, match=r"The duration must be 10 or 15\."):
        ADAPTER.parse_submit(answer(422, {"errors": {"duration": ["The duration must be 10 or 15."]}}))


@pytest.mark.parametrize(
    ("status", "message", "cls"),
    [
        (401, "Unauthenticated.", AuthFailed),
        (404, "Not found.", ProviderRejected),
        (429, "Too Many Attempts.", RateLimited),
        (500, "Server Error", ProviderUnavailable),
        (503, "Server Error", ProviderUnavailable),
    ],
)
def test_assumed_errors_by_status(status: int, message: str, cls: type[ProviderError]) -> None:
    with pytest.raises(cls, match=message):
        ADAPTER.parse_poll(answer(status, {"message": message}, {"retry-after": "30"}))


def test_429_honours_retry_after() -> None:
    with pytest.raises(RateLimited) as caught:
        ADAPTER.parse_submit(answer(429, {"message": "Too Many Attempts."}, {"retry-after": "30"}))
    assert caught.value.retry_after == 30.0


def test_build_poll() -> None:
    outgoing, _ = send_mock(ADAPTER.build_poll("gen_01", req("sora-2"), config("veogen")))
    assert (outgoing.method, str(outgoing.url)) == ("GET", "https://veogen.studio/api/v1/generations/gen_01")
    assert outgoing.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(("word", "state"), [("pending", TaskState.PENDING), ("processing", TaskState.RUNNING)])
def test_waiting_status_words(word: str, state: TaskState) -> None:
    assert ADAPTER.parse_poll(answer(200, generation(word))).state is state


def test_completed_prefers_download_url() -> None:
    output = {"url": "https://cdn.veogen.studio/a.mp4", "download_url": "https://cdn.veogen.studio/a.mp4?download=1"}
    result = ADAPTER.parse_poll(answer(200, generation("completed", output=output | {"content_type": "video/mp4"})))
    assert result.state is TaskState.SUCCEEDED
    assert result.output_urls == ["https://cdn.veogen.studio/a.mp4?download=1"]


def test_completed_falls_back_to_url() -> None:
    result = ADAPTER.parse_poll(answer(200, generation("completed", output={"url": "https://cdn.veogen.studio/a.png"})))
    assert result.output_urls == ["https://cdn.veogen.studio/a.png"]


def test_completed_with_several_outputs_reads_output_urls() -> None:
    urls = ["https://cdn.veogen.studio/1.png", "https://cdn.veogen.studio/2.png"]
    output = {"url": urls[0], "download_url": urls[0] + "?download=1", "urls": urls}
    assert ADAPTER.parse_poll(answer(200, generation("completed", output=output))).output_urls == urls


def test_completed_without_output_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match="no output URL"):
        ADAPTER.parse_poll(answer(200, generation("completed", output={})))


@pytest.mark.parametrize(
    "error", [{"message": "Generation failed: you were not charged."}, "Generation failed: you were not charged."]
)
def test_failed_reads_an_error_object_or_string(error: object) -> None:
    result = ADAPTER.parse_poll(answer(200, generation("failed", error=error)))
    assert result.state is TaskState.FAILED
    assert result.failure_reason == "Generation failed: you were not charged."


def test_an_unknown_status_word_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match="'archived'"):
        ADAPTER.parse_poll(answer(200, generation("archived")))


def test_a_data_uri_for_video_urls_is_refused_before_sending() -> None:
    request = req("seedance-2.0", reference_video_urls=["data:video/mp4;base64,AAAA"])
    with pytest.raises(InvalidRequest, match=r"^veogen takes video and audio inputs as https or http URLs only"):
        ADAPTER.build_submit(request, config("veogen"), FakeInputs())


def test_image_urls_are_always_resolved_as_urls() -> None:
    inputs = FakeInputs()
    ADAPTER.build_submit(req("gpt-4o-image", image_urls=[UPLOADED]), config("veogen"), inputs)
    assert inputs.calls == [("url", UPLOADED)]
