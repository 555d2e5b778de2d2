"""The veo3api adapter against seeds 004 and docs/dialects.md."""

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
from shared.providers.veo3api import Veo3ApiAdapter, estimated_seconds

from .helpers import PRESIGNED, UPLOADED, FakeInputs, answer, config, req, send_mock, sent_json

ADAPTER = Veo3ApiAdapter()
BASE = "https://veo3api.example.com"
FAST_STARTED = {
    "success": True,
    "data": {
        "generation_id": "uuid-here",
        "status": "processing",
        "generation_type": "video",
        "video_model": "veo3_fast",
        "estimated_time": "45-60 seconds",
        "credits_used": 240,
        "credits_remaining": 260,
        "mode": "text-to-video",
        "message": "Video generation started successfully",
    },
}


def test_the_documented_text_to_video_request() -> None:
    request = req("veo3_fast", "A cat playing in a garden with colorful flowers, sunny day", aspect_ratio="16:9")
    built = ADAPTER.build_submit(request, config("veo3api", api_key="YOUR_TOKEN_HERE"), FakeInputs())
    outgoing, got = send_mock(built, httpx.Response(200, json=FAST_STARTED))
    assert (outgoing.method, str(outgoing.url)) == ("POST", f"{BASE}/api/v1/generate/video/")
    assert outgoing.headers["authorization"] == "Token YOUR_TOKEN_HERE"
    assert sent_json(outgoing) == {
        "prompt": "A cat playing in a garden with colorful flowers, sunny day",
        "video_model": "veo3_fast",
        "aspect_ratio": "16:9",
    }
    result = ADAPTER.parse_submit(got)
    assert (result.task_id, result.state, result.cost.credits) == ("uuid-here", TaskState.RUNNING, 240)
    assert result.estimated_seconds == 45.0


def test_the_documented_image_to_video_request_and_an_uploaded_image() -> None:
    request = req("veo3", image_urls=["https://example.com/cat-in-garden.jpg", UPLOADED], aspect_ratio="16:9")
    built = ADAPTER.build_submit(request, config("veo3api"), FakeInputs())
    assert built.json_body == {
        "prompt": "A cat surfing in sunset, cinematic",
        "video_model": "veo3",
        "source_image_urls": ["https://example.com/cat-in-garden.jpg", PRESIGNED],
        "aspect_ratio": "16:9",
    }


@pytest.mark.parametrize(
    ("option", "value"),
    [("duration", 8), ("resolution", "1080p"), ("audio", True), ("reference_image_urls", ["https://a.example/r.png"])],
)
def test_options_veo3api_cannot_take_are_refused(option: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=f"^veo3api does not take the option '{option}'$"):
        ADAPTER.build_submit(req("veo3", **{option: value}), config("veo3api"), FakeInputs())


def test_extra_may_not_replace_video_model() -> None:
    with pytest.raises(InvalidRequest, match="extra key 'video_model'"):
        ADAPTER.build_submit(req("veo3", extra={"video_model": "veo9"}), config("veo3api"), FakeInputs())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("45-60 seconds", 45.0), ("90-120 seconds", 90.0), ("2 minutes", 120.0), (75, 75.0), ("soon", None), (None, None)],
)
def test_estimated_time_is_its_lower_bound(text: object, seconds: float | None) -> None:
    assert estimated_seconds(text) == seconds


@pytest.mark.parametrize("status", [402, 200])
def test_insufficient_credits_documented_body(status: int) -> None:
    body = {
        "success": False,
        "error": "Insufficient credits. Need 240, have 100",
        "credits_needed": 240,
        "credits_balance": 100,
        "video_model": "veo3_fast",
        "generation_type": "video",
    }
    with pytest.raises(InsufficientCredits) as caught:
        ADAPTER.parse_submit(answer(status, body))
    assert caught.value.message == f"HTTP {status}: Insufficient credits. Need 240, have 100"


def test_invalid_parameters_carry_the_details() -> None:
    body = {"success": False, "error": "Prompt is required", "details": {"prompt": "This field is required"}}
    with pytest.raises(ProviderRejected) as caught:
        ADAPTER.parse_submit(answer(400, body))
    assert caught.value.message == "HTTP 400: Prompt is required (prompt: This field is required)"


def test_a_2xx_success_false_is_a_rejection() -> None:
    with pytest.raises(ProviderRejected, match="Prompt is required"):
        ADAPTER.parse_submit(answer(200, {"success": False, "error": "Prompt is required"}))


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, {"success": False, "error": "Invalid token."}, AuthFailed),
        (401, {"detail": "Invalid token."}, AuthFailed),
        (404, {"success": False, "error": "Not found."}, ProviderRejected),
        (429, {"success": False, "error": "Request was throttled."}, RateLimited),
        (500, {"success": False, "error": "Internal server error."}, ProviderUnavailable),
    ],
)
def test_assumed_errors(status: int, body: dict[str, object], cls: type[ProviderError]) -> None:
    with pytest.raises(cls) as caught:
        ADAPTER.parse_poll(answer(status, body, {"retry-after": "5"}))
    assert caught.value.message.startswith(f"HTTP {status}: ")
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 5.0


def test_build_poll_has_the_trailing_slash_and_token() -> None:
    outgoing, _ = send_mock(ADAPTER.build_poll("uuid-here", req("veo3"), config("veo3api", api_key="k")))
    assert (outgoing.method, str(outgoing.url)) == ("GET", f"{BASE}/api/v1/generate/uuid-here/")
    assert outgoing.headers["authorization"] == "Token k"


def poll_body(status: str, **fields: object) -> dict[str, object]:
    return {"generation_id": "uuid-here", "status": status, "generation_type": "video", "video_model": "veo3"} | fields


@pytest.mark.parametrize(
    ("word", "state", "progress"),
    [("pending", TaskState.PENDING, None), ("processing", TaskState.RUNNING, 0.4)],
)
def test_waiting_status_words(word: str, state: TaskState, progress: float | None) -> None:
    fields = {} if progress is None else {"progress": 40}
    result = ADAPTER.parse_poll(answer(200, poll_body(word, **fields)))
    assert (result.state, result.progress) == (state, progress)


def test_completed_gives_video_url() -> None:
    result = ADAPTER.parse_poll(answer(200, poll_body("completed", video_url="https://cdn.example/v.mp4")))
    assert (result.state, result.output_urls) == (TaskState.SUCCEEDED, ["https://cdn.example/v.mp4"])


def test_a_wrapped_poll_answer_is_read_too() -> None:
    body = {"success": True, "data": poll_body("completed", video_url="https://cdn.example/v.mp4")}
    assert ADAPTER.parse_poll(answer(200, body)).output_urls == ["https://cdn.example/v.mp4"]


def test_completed_without_video_url_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match="video_url"):
        ADAPTER.parse_poll(answer(200, poll_body("completed")))


def test_failed_carries_the_error() -> None:
    result = ADAPTER.parse_poll(answer(200, poll_body("failed", error="Veo refused the source image")))
    assert (result.state, result.failure_reason) == (TaskState.FAILED, "Veo refused the source image")


def test_an_unknown_status_word_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match="'moderating'"):
        ADAPTER.parse_poll(answer(200, poll_body("moderating")))
