"""The gateway adapter against seeds 003 and docs/dialects.md."""

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
from shared.providers import gateway
from shared.providers.base import TaskState
from shared.providers.gateway import GatewayAdapter

from .helpers import DATA_URI, SECRET, UPLOADED, FakeInputs, answer, config, req, send_mock, sent_json

ADAPTER = GatewayAdapter()
BASE = "https://gateway.example.com"
DOC_POLL = {
    "task_id": "veo3:1756693796-YQVHH4A3Lg",
    "platform": "google",
    "action": "google-videos",
    "status": "SUCCESS",
    "fail_reason": "",
    "submit_time": 1756693797,
    "start_time": 1756693808,
    "finish_time": 1756693898,
    "progress": "100%",
    "data": {"output": "https://filesystem.site/cdn/20250901/018eg2SgUpHMT6EEuQbfeRLWeUhE75.mp4"},
    "search_item": "",
}


def test_the_documented_example_request() -> None:
    built = ADAPTER.build_submit(req("veo3", "A cat surfing in sunset, cinematic"), config("gateway"), FakeInputs())
    reply = httpx.Response(200, json={"task_id": "f186f65a-8657-4e83-b0e3-67facf1b2576"})
    outgoing, got = send_mock(built, reply)
    assert (outgoing.method, str(outgoing.url)) == ("POST", f"{BASE}/v2/videos/generations")
    assert outgoing.headers["authorization"] == f"Bearer {SECRET}"
    assert sent_json(outgoing) == {"prompt": "A cat surfing in sunset, cinematic", "model": "veo3"}
    result = ADAPTER.parse_submit(got)
    assert (result.task_id, result.state) == ("f186f65a-8657-4e83-b0e3-67facf1b2576", TaskState.PENDING)
    assert result.cost.credits is None and result.cost.usd is None


def test_every_documented_body_key() -> None:
    request = req(
        "veo3",
        duration=5,
        aspect_ratio="16:9",
        size="1280x720",
        resolution="780P",
        watermark=False,
        image_urls=["https://a.example/1.png", UPLOADED],
        video_url="https://v.example/src.mp4",
        reference_video_urls=["https://v.example/ref.mp4"],
        extra={"seed": 3},
    )
    built = ADAPTER.build_submit(request, config("gateway"), FakeInputs())
    assert built.json_body == {
        "prompt": "A cat surfing in sunset, cinematic",
        "model": "veo3",
        "duration": 5,
        "aspect_ratio": "16:9",
        "size": "1280x720",
        "resolution": "780P",
        "watermark": False,
        "images": ["https://a.example/1.png", DATA_URI],
        "videos": ["https://v.example/src.mp4", "https://v.example/ref.mp4"],
        "seed": 3,
    }


@pytest.mark.parametrize(
    ("model", "options", "scope"),
    [
        ("veo3", {"scope": "images"}, "images"),
        ("nano-banana-pro", {}, "images"),
        ("sandbox-audio", {}, "audio"),
        ("sora-2", {}, "videos"),
        ("some-model-nobody-lists", {}, "videos"),
    ],
)
def test_scope_from_the_request_else_the_model_kind_else_videos(
    model: str, options: dict[str, str], scope: str
) -> None:
    request = req(model, **options)
    submit = ADAPTER.build_submit(request, config("gateway"), FakeInputs())
    poll = ADAPTER.build_poll("t-1", request, config("gateway"))
    assert submit.url == f"{BASE}/v2/{scope}/generations"
    assert poll.url == f"{BASE}/v2/{scope}/generations/t-1"
    assert submit.json_body is not None and "scope" not in submit.json_body


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("reference_image_urls", ["https://a.example/r.png"]),
        ("reference_audio_urls", ["https://a.example/r.mp3"]),
        ("audio", True),
        ("mode", "fun"),
        ("style", "anime"),
        ("private", True),
        ("output_format", "png"),
        ("audio_setting", "auto"),
    ],
)
def test_options_without_a_documented_key_are_refused(option: str, value: object) -> None:
    with pytest.raises(InvalidRequest, match=f"^gateway does not take the option '{option}'$"):
        ADAPTER.build_submit(req("veo3", **{option: value}), config("gateway"), FakeInputs())


def test_the_refusal_names_a_provider_added_by_settings() -> None:
    with pytest.raises(InvalidRequest, match=r"^my-gateway does not take the options 'mode', 'style'$"):
        ADAPTER.build_submit(req("veo3", mode="x", style="y"), config("gateway", name="my-gateway"), FakeInputs())


def test_the_documented_poll_answer() -> None:
    result = ADAPTER.parse_poll(answer(200, DOC_POLL))
    assert result.state is TaskState.SUCCEEDED
    assert result.progress == 1.0
    assert result.output_urls == [DOC_POLL["data"]["output"]]  # type: ignore[index]


def test_task_ids_with_a_colon_stay_readable_and_slashes_are_quoted() -> None:
    assert ADAPTER.build_poll("veo3:1756-YQ", req("veo3"), config("gateway")).url.endswith("/generations/veo3:1756-YQ")
    assert ADAPTER.build_poll("a/b?c", req("veo3"), config("gateway")).url.endswith("/generations/a%2Fb%3Fc")


def test_outputs_list_wins_and_empty_placeholders_are_skipped() -> None:
    body = DOC_POLL | {"data": {"output": "", "outputs": ["", "https://x.example/1.png", "https://x.example/2.png"]}}
    assert ADAPTER.parse_poll(answer(200, body)).output_urls == ["https://x.example/1.png", "https://x.example/2.png"]


def test_the_page_template_with_empty_outputs_is_unavailable() -> None:
    body = DOC_POLL | {"data": {"output": "", "outputs": ["", ""]}}
    with pytest.raises(ProviderUnavailable, match="no output URL"):
        ADAPTER.parse_poll(answer(200, body))


@pytest.mark.parametrize(
    ("word", "progress", "state", "fraction"),
    [
        ("NOT_START", "0%", TaskState.PENDING, 0.0),
        ("IN_PROGRESS", "45%", TaskState.RUNNING, 0.45),
        ("IN_PROGRESS", "", TaskState.RUNNING, None),
    ],
)
def test_waiting_status_words_and_progress(word: str, progress: str, state: TaskState, fraction: float | None) -> None:
    result = ADAPTER.parse_poll(answer(200, {"task_id": "t", "status": word, "progress": progress, "data": {}}))
    assert (result.state, result.progress) == (state, fraction)


def test_failure_carries_fail_reason() -> None:
    body = {"task_id": "t", "status": "FAILURE", "fail_reason": "upstream refused the prompt", "progress": "100%"}
    result = ADAPTER.parse_poll(answer(200, body))
    assert (result.state, result.failure_reason) == (TaskState.FAILED, "upstream refused the prompt")


def test_an_unknown_status_word_is_unavailable() -> None:
    with pytest.raises(ProviderUnavailable, match="'CANCELLED'"):
        ADAPTER.parse_poll(answer(200, {"task_id": "t", "status": "CANCELLED"}))


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_request", ProviderRejected),
        (401, "invalid_api_key", AuthFailed),
        (402, "insufficient_quota", InsufficientCredits),
        (404, "task_not_found", ProviderRejected),
        (429, "rate_limit_exceeded", RateLimited),
        (500, "server_error", ProviderUnavailable),
        (403, "forbidden", AuthFailed),
    ],
)
def test_errors_by_code(status: int, code: str, cls: type[ProviderError]) -> None:
    body = {"error": {"message": "the gateway's words", "type": "some_error", "code": code}}
    with pytest.raises(cls) as caught:
        ADAPTER.parse_submit(answer(status, body, {"retry-after": "12"}))
    assert caught.value.message == f"HTTP {status}: the gateway's words ({code})"
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 12.0


def test_error_type_is_used_when_the_code_is_unknown() -> None:
    body = {"error": {"message": "slow down", "type": "rate_limit_exceeded", "code": 1042}}
    with pytest.raises(RateLimited):
        ADAPTER.parse_poll(answer(400, body))


def test_the_poll_keeps_the_scope_the_submit_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    request = req("nano-banana-pro")
    scope = ADAPTER.task_scope(request, config("gateway"))
    submit = ADAPTER.build_submit(request, config("gateway"), FakeInputs())
    assert scope == "images" and submit.url == f"{BASE}/v2/images/generations"
    # the catalog no longer lists the model (a release between submit and poll): the recorded scope still holds
    monkeypatch.setattr(gateway, "model_kind", lambda provider, model: None)
    assert ADAPTER.build_poll("t-1", request, config("gateway"), scope).url == f"{BASE}/v2/images/generations/t-1"
    assert ADAPTER.build_poll("t-1", request, config("gateway")).url == f"{BASE}/v2/videos/generations/t-1"
    with pytest.raises(InvalidRequest, match="recorded scope 'music'"):
        ADAPTER.build_poll("t-1", request, config("gateway"), "music")


def test_videos_are_urls_only() -> None:
    request = req("veo3", video_url="data:video/mp4;base64,AAAA")
    with pytest.raises(InvalidRequest, match=r"^gateway takes video inputs as https or http URLs only"):
        ADAPTER.build_submit(request, config("gateway"), FakeInputs())
    images = ADAPTER.build_submit(req("veo3", image_urls=[DATA_URI]), config("gateway"), FakeInputs()).json_body
    assert images is not None and images["images"] == [DATA_URI]
