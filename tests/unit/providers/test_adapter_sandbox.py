"""The native sandbox adapter against docs/dialects.md."""

from __future__ import annotations

import httpx
import pytest

from shared.errors import (
    AuthFailed,
    InsufficientCredits,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from shared.providers.base import TaskState
from shared.providers.sandbox import SandboxAdapter

from .helpers import PRESIGNED, SECRET, UPLOADED, FakeInputs, answer, config, req, send_mock, sent_json

ADAPTER = SandboxAdapter()
BASE = "http://127.0.0.1:8900/sandbox"


def test_submit_sends_every_option_under_its_unified_name() -> None:
    request = req(
        "sandbox-video",
        duration=12,
        aspect_ratio="9:16",
        scope="videos",
        image_urls=["https://a.example/1.png", UPLOADED],
        reference_audio_urls=["https://a.example/a.mp3"],
        extra={"fail": False},
    )
    built = ADAPTER.build_submit(request, config("sandbox"), FakeInputs())
    reply = httpx.Response(200, json={"id": "job_1", "status": "queued", "estimated_seconds": 3, "cost_credits": 12})
    outgoing, got = send_mock(built, reply)
    assert (outgoing.method, str(outgoing.url)) == ("POST", f"{BASE}/v1/jobs")
    assert outgoing.headers["authorization"] == f"Bearer {SECRET}"
    assert sent_json(outgoing) == {
        "model": "sandbox-video",
        "prompt": "A cat surfing in sunset, cinematic",
        "options": {
            "aspect_ratio": "9:16",
            "duration": 12,
            "image_urls": ["https://a.example/1.png", PRESIGNED],
            "reference_audio_urls": ["https://a.example/a.mp3"],
            "scope": "videos",
            "fail": False,
        },
    }
    result = ADAPTER.parse_submit(got)
    assert (result.task_id, result.state, result.estimated_seconds, result.cost.credits) == (
        "job_1",
        TaskState.PENDING,
        3.0,
        12.0,
    )


def test_a_plain_request_sends_empty_options_and_no_key_means_no_authorization() -> None:
    built = ADAPTER.build_submit(req("sandbox-image"), config("sandbox", api_key=None), FakeInputs())
    assert built.json_body == {"model": "sandbox-image", "prompt": "A cat surfing in sunset, cinematic", "options": {}}
    assert "Authorization" not in built.headers


def test_build_poll() -> None:
    built = ADAPTER.build_poll("job_1", req("sandbox-video"), config("sandbox"))
    assert (built.method, built.url) == ("GET", f"{BASE}/v1/jobs/job_1")


@pytest.mark.parametrize(
    ("body", "state", "progress", "urls", "reason"),
    [
        ({"status": "queued", "progress": 0, "outputs": []}, TaskState.PENDING, 0.0, [], None),
        ({"status": "running", "progress": 50, "outputs": []}, TaskState.RUNNING, 0.5, [], None),
        (
            {"status": "succeeded", "progress": 100, "outputs": ["http://h/f/0.mp4"]},
            TaskState.SUCCEEDED,
            1.0,
            ["http://h/f/0.mp4"],
            None,
        ),
        (
            {"status": "failed", "progress": 30, "error": "injected failure"},
            TaskState.FAILED,
            0.3,
            [],
            "injected failure",
        ),
    ],
)
def test_every_status_word(
    body: dict[str, object], state: TaskState, progress: float, urls: list[str], reason: str | None
) -> None:
    result = ADAPTER.parse_poll(answer(200, {"id": "job_1", "error": None} | body))
    assert (result.state, result.progress, result.output_urls, result.failure_reason) == (state, progress, urls, reason)


def test_relative_output_paths_are_not_urls() -> None:
    with pytest.raises(ProviderUnavailable, match="no output URL"):
        ADAPTER.parse_poll(answer(200, {"id": "job_1", "status": "succeeded", "outputs": ["/files/0.mp4"]}))


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_request", ProviderRejected),
        (401, "unauthorized", AuthFailed),
        (402, "insufficient_credits", InsufficientCredits),
        (404, "not_found", ProviderRejected),
        (429, "rate_limited", RateLimited),
        (503, "server_error", ProviderUnavailable),
    ],
)
def test_errors_by_code(status: int, code: str, cls: type[ProviderError]) -> None:
    with pytest.raises(cls) as caught:
        ADAPTER.parse_submit(
            answer(status, {"error": {"code": code, "message": "sandbox says no"}}, {"retry-after": "2"})
        )
    assert caught.value.message == f"HTTP {status}: sandbox says no ({code})"
    if isinstance(caught.value, RateLimited | ProviderUnavailable):
        assert caught.value.retry_after == 2.0
