"""The vicsee adapter against seeds 000/001 and docs/dialects.md."""

from __future__ import annotations

import httpx
import pytest

from shared.errors import (
    AuthFailed,
    GenerationFailed,
    InsufficientCredits,
    InvalidRequest,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.providers.base import TaskState
from shared.providers.vicsee import VicSeeAdapter

from .helpers import DATA_URI, SECRET, UPLOADED, FakeInputs, answer, config, req, send_mock, sent_json

ADAPTER = VicSeeAdapter()
DOC_ANSWER = {
    "success": True,
    "data": {
        "id": "task_abc123",
        "model": "sora-2",
        "status": "processing",
        "creditsUsed": 20,
        "creditsRemaining": 480,
        "createdAt": "2024-12-27T10:30:00.000Z",
    },
}


def poll_body(status: str, result: object = None, error: object = None) -> dict[str, object]:
    data = {"id": "task_abc123", "model": "sora-2", "status": status, "mediaType": "video", "prompt": "p"}
    return {"success": True, "data": data | {"createdAt": "2024-12-27T10:30:00.000Z", "result": result, "error": error}}


def test_text_to_video_is_the_documented_request() -> None:
    request = req("sora-2", "A timelapse of a flower blooming", duration=10, aspect_ratio="16:9")
    built = ADAPTER.build_submit(request, config("vicsee", api_key="sk-your-api-key"), FakeInputs())
    outgoing, _ = send_mock(built, httpx.Response(200, json=DOC_ANSWER))
    assert outgoing.method == "POST"
    assert str(outgoing.url) == "https://vicsee.com/api/v1/generate"
    assert outgoing.headers["authorization"] == "Bearer sk-your-api-key"
    assert outgoing.headers["content-type"] == "application/json"
    assert sent_json(outgoing) == {
        "model": "sora-2",
        "prompt": "A timelapse of a flower blooming",
        "options": {"duration": 10, "aspectRatio": "16:9"},
    }


def test_image_to_video_with_a_url_sends_it_as_options_image() -> None:
    built = ADAPTER.build_submit(
        req("sora-2", image_urls=["https://example.com/cat.jpg"]), config("vicsee"), FakeInputs()
    )
    assert built.json_body == {
        "model": "sora-2",
        "prompt": "A cat surfing in sunset, cinematic",
        "options": {"image": "https://example.com/cat.jpg"},
    }


def test_an_uploaded_image_is_inlined_as_a_data_uri() -> None:
    inputs = FakeInputs()
    built = ADAPTER.build_submit(req("sora-2", image_urls=[UPLOADED]), config("vicsee"), inputs)
    assert built.json_body is not None
    assert built.json_body["options"] == {"image": DATA_URI}
    assert inputs.calls == [("data_uri", UPLOADED)]


def test_several_images_go_as_image_and_image_urls() -> None:
    request = req("nano-banana", image_urls=["https://a.example/1.png", UPLOADED])
    built = ADAPTER.build_submit(request, config("vicsee"), FakeInputs())
    assert built.json_body is not None
    assert built.json_body["options"] == {
        "image": "https://a.example/1.png",
        "imageUrls": ["https://a.example/1.png", DATA_URI],
    }


def test_tool_page_inputs_are_camel_cased_in_options() -> None:
    request = req(
        "seedance-2-0-reference-to-video",
        reference_image_urls=[UPLOADED],
        reference_video_urls=["https://v.example/a.mp4"],
        reference_audio_urls=["https://v.example/a.mp3"],
        resolution="720P",
        audio=True,
        extra={"seed": 7},
    )
    built = ADAPTER.build_submit(request, config("vicsee"), FakeInputs())
    assert built.json_body is not None
    assert built.json_body["options"] == {
        "referenceImageUrls": [DATA_URI],
        "referenceVideoUrls": ["https://v.example/a.mp4"],
        "referenceAudioUrls": ["https://v.example/a.mp3"],
        "resolution": "720P",
        "audio": True,
        "seed": 7,
    }


def test_video_edit_and_output_format() -> None:
    edit = req("happyhorse-video-edit", video_url="https://v.example/in.mp4", audio_setting="origin")
    image = req("flux-2", output_format="png")
    edit_body = ADAPTER.build_submit(edit, config("vicsee"), FakeInputs()).json_body
    image_body = ADAPTER.build_submit(image, config("vicsee"), FakeInputs()).json_body
    assert edit_body is not None and image_body is not None
    assert edit_body["options"] == {"videoUrl": "https://v.example/in.mp4", "audioSetting": "origin"}
    assert image_body["options"] == {"outputFormat": "png"}


@pytest.mark.parametrize(
    ("option", "value"),
    [("mode", "fun"), ("style", "anime"), ("watermark", False), ("private", True), ("size", "1024x1024")],
)
def test_options_vicsee_cannot_take_are_refused(option: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=f"^vicsee does not take the option '{option}'$"):
        ADAPTER.build_submit(req("sora-2", **{option: value}), config("vicsee"), FakeInputs())


def test_an_extra_key_never_replaces_a_mapped_option() -> None:
    with pytest.raises(InvalidRequest, match="extra key 'aspectRatio'"):
        ADAPTER.build_submit(
            req("sora-2", aspect_ratio="16:9", extra={"aspectRatio": "1:1"}), config("vicsee"), FakeInputs()
        )


def test_parse_submit_reads_the_documented_answer() -> None:
    result = ADAPTER.parse_submit(answer(200, DOC_ANSWER))
    assert result.task_id == "task_abc123"
    assert result.state is TaskState.RUNNING
    assert result.cost.credits == 20 and result.cost.usd is None


def error_body(code: str, message: str) -> dict[str, object]:
    return {"success": False, "error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("status", "code", "cls", "error_code"),
    [
        (400, "MISSING_MODEL", ProviderRejected, "invalid_request"),
        (400, "MISSING_PROMPT", ProviderRejected, "invalid_request"),
        (400, "INVALID_MODEL", ProviderRejected, "invalid_request"),
        (400, "INVALID_OPTION", ProviderRejected, "invalid_request"),
        (401, "UNAUTHORIZED", AuthFailed, "auth_failed"),
        (402, "INSUFFICIENT_CREDITS", InsufficientCredits, "insufficient_credits"),
        (403, "FORBIDDEN", AuthFailed, "auth_failed"),
        (404, "TASK_NOT_FOUND", ProviderRejected, "invalid_request"),
        (404, "NO_RESULT", GenerationFailed, "generation_failed"),
        (429, "RATE_LIMITED", RateLimited, "rate_limited"),
        (500, "INTERNAL_ERROR", ProviderUnavailable, "provider_error"),
        (418, "SOMETHING_NEW", ProviderRejected, "invalid_request"),
    ],
)
def test_documented_errors_are_classified_with_the_vendor_message(
    status: int, code: str, cls: type[ProviderError], error_code: str
) -> None:
    for parse in (ADAPTER.parse_submit, ADAPTER.parse_poll):
        with pytest.raises(cls) as caught:
            parse(answer(status, error_body(code, "the vendor's words")))
        assert caught.value.code == error_code
        assert caught.value.message == f"HTTP {status}: the vendor's words ({code})"


def test_rate_limit_honours_retry_after() -> None:
    with pytest.raises(RateLimited) as caught:
        ADAPTER.parse_submit(answer(429, error_body("RATE_LIMITED", "Too many requests"), {"retry-after": "7"}))
    assert caught.value.retry_after == 7.0


def test_a_2xx_answer_saying_failure_is_an_error() -> None:
    with pytest.raises(InsufficientCredits, match="Not enough credits"):
        ADAPTER.parse_submit(answer(200, error_body("INSUFFICIENT_CREDITS", "Not enough credits")))


def test_build_poll_is_a_bearer_get_on_the_task() -> None:
    built = ADAPTER.build_poll("task_abc123", req("sora-2"), config("vicsee"))
    outgoing, _ = send_mock(built)
    assert outgoing.method == "GET"
    assert str(outgoing.url) == "https://vicsee.com/api/v1/tasks/task_abc123"
    assert outgoing.headers["authorization"] == f"Bearer {SECRET}"


@pytest.mark.parametrize(
    ("word", "state"),
    [("pending", TaskState.PENDING), ("queued", TaskState.PENDING), ("processing", TaskState.RUNNING)],
)
def test_waiting_status_words(word: str, state: TaskState) -> None:
    result = ADAPTER.parse_poll(answer(200, poll_body(word)))
    assert result.state is state and result.output_urls == [] and result.progress is None


@pytest.mark.parametrize("word", ["success", "completed"])
def test_both_done_words_give_the_result_url(word: str) -> None:
    body = poll_body(word, result={"url": "https://cdn.vicsee.com/out.mp4", "type": "video"})
    result = ADAPTER.parse_poll(answer(200, body))
    assert result.state is TaskState.SUCCEEDED
    assert result.output_urls == ["https://cdn.vicsee.com/out.mp4"]


def test_failed_carries_the_vendor_reason() -> None:
    error = {"code": "GENERATION_FAILED", "key": "generation_failed", "message": "Content policy violation"}
    result = ADAPTER.parse_poll(answer(200, poll_body("failed", error=error)))
    assert result.state is TaskState.FAILED
    assert result.failure_reason == "Content policy violation (GENERATION_FAILED)"


def test_an_unknown_status_word_is_unavailable_and_named() -> None:
    with pytest.raises(ProviderUnavailable, match="'exploded'"):
        ADAPTER.parse_poll(answer(200, poll_body("exploded")))


def test_done_without_a_result_url_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match=r"result\.url"):
        ADAPTER.parse_poll(answer(200, poll_body("success", result={"url": ""})))


@pytest.mark.parametrize(
    "options",
    [
        {"reference_video_urls": ["http://v.example/a.mp4"]},
        {"reference_audio_urls": ["data:audio/mpeg;base64,AAAA"]},
        {"video_url": "http://v.example/a.mp4"},
    ],
)
def test_video_and_audio_inputs_must_be_https_urls(options: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match=r"^vicsee takes video and audio inputs as https URLs only, got "):
        ADAPTER.build_submit(req("seedance-2-0-reference-to-video", **options), config("vicsee"), FakeInputs())


def test_image_inputs_may_be_data_uris() -> None:
    body = ADAPTER.build_submit(req("sora-2", image_urls=[DATA_URI]), config("vicsee"), FakeInputs()).json_body
    assert body is not None and body["options"]["image"] == DATA_URI
