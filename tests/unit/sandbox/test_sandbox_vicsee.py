"""The sandbox's VicSee dialect against the 000/001 documents and docs/dialects.md."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from sandbox.files import expected_sha256
from tests.unit.sandbox.helpers import (
    BEARER,
    control,
    download_sha256,
    poll_until,
    set_balance,
    set_delay,
    stats,
)

SUBMIT = "/vicsee/api/v1/generate"
TASKS = "/vicsee/api/v1/tasks"
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _submit(client: httpx.Client, body: dict[str, Any], headers: dict[str, str] = BEARER) -> httpx.Response:
    return client.post(SUBMIT, json=body, headers=headers)


def test_text_to_video_round_trip(client: httpx.Client) -> None:
    set_delay(client, 0.3)
    body = {"model": "sora-2", "prompt": "A flower", "options": {"duration": 10, "aspectRatio": "16:9"}}
    answer = _submit(client, body)
    assert answer.status_code == 200
    created = answer.json()
    assert created["success"] is True
    data = created["data"]
    assert set(data) == {"id", "model", "status", "creditsUsed", "creditsRemaining", "createdAt"}
    assert data["model"] == "sora-2"
    assert data["status"] in ("pending", "queued")
    assert (data["creditsUsed"], data["creditsRemaining"]) == (20, 1_000_000_000 - 20)
    assert ISO.fullmatch(data["createdAt"])

    path = f"/vicsee/api/v1/tasks/{data['id']}"
    answers = poll_until(client, path, BEARER, lambda a: a["data"]["status"] in ("success", "completed"))
    words = [a["data"]["status"] for a in answers]
    assert set(words) <= {"pending", "queued", "processing", "success", "completed"}
    assert "processing" in words
    final = answers[-1]
    assert final["success"] is True
    assert set(final["data"]) == {
        "id", "model", "status", "mediaType", "prompt", "createdAt", "result", "error",
    }  # fmt: skip
    assert final["data"]["mediaType"] == "video" and final["data"]["error"] is None
    assert all(a["data"]["result"] is None for a in answers[:-1])
    url = final["data"]["result"]["url"]
    assert final["data"]["result"]["type"] == "video"
    assert url == f"{str(client.base_url).rstrip('/')}/files/{data['id']}/0.mp4"
    response, sha, size = download_sha256(client, url)
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert size == int(response.headers["content-length"]) == 256 * 1024
    assert sha == expected_sha256(data["id"], 0, 256 * 1024)


def test_status_words_alternate_between_page_versions(client: httpx.Client) -> None:
    ids = [_submit(client, {"model": "sora-2", "prompt": f"p{i}"}).json()["data"] for i in range(4)]
    assert [d["status"] for d in ids] == ["pending", "queued", "pending", "queued"]
    done = [client.get(f"{TASKS}/{d['id']}", headers=BEARER).json()["data"]["status"] for d in ids]
    assert done == ["success", "completed", "success", "completed"]


def test_image_model_makes_a_png(client: httpx.Client) -> None:
    body = {"model": "nano-banana-pro", "prompt": "cat", "options": {"resolution": "2K"}}
    data = _submit(client, body).json()
    assert data["data"]["creditsUsed"] == 10
    task = client.get(f"/vicsee/api/v1/tasks/{data['data']['id']}", headers=BEARER).json()["data"]
    assert task["mediaType"] == "image" and task["result"]["url"].endswith("/0.png")
    assert client.get(task["result"]["url"]).headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Token test-key"}, {"Authorization": "Bearer"}, {"Authorization": "x"}]
)
def test_missing_or_wrong_auth_is_401(client: httpx.Client, headers: dict[str, str]) -> None:
    answer = _submit(client, {"model": "sora-2", "prompt": "x"}, headers)
    assert answer.status_code == 401
    assert answer.json() == {
        "success": False,
        "error": {"code": "UNAUTHORIZED", "message": answer.json()["error"]["message"]},
    }


def test_unknown_key_is_401_when_keys_are_configured(client: httpx.Client) -> None:
    client.post("/_control/config", json={"api_keys": ["good"]}).raise_for_status()
    body = {"model": "sora-2", "prompt": "x"}
    assert _submit(client, body, {"Authorization": "Bearer bad"}).status_code == 401
    assert _submit(client, body, {"Authorization": "Bearer good"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"prompt": "x"}, "MISSING_MODEL"),
        ({"model": "", "prompt": "x"}, "MISSING_MODEL"),
        ({"model": "sora-2"}, "MISSING_PROMPT"),
        ({"model": "sora-2", "prompt": "  "}, "MISSING_PROMPT"),
        ({"model": "sora-3", "prompt": "x"}, "INVALID_MODEL"),
        ({"model": "sora-2", "prompt": "x", "options": {"duration": 5}}, "INVALID_OPTION"),
        ({"model": "sora-2", "prompt": "x", "options": {"duration": "10"}}, "INVALID_OPTION"),
        (
            {"model": "seedance-2-0-text-to-video", "prompt": "x", "options": {"duration": 20}},
            "INVALID_OPTION",
        ),
        ({"model": "nano-banana", "prompt": "x", "options": {"duration": 10}}, "INVALID_OPTION"),
        ({"model": "nano-banana-pro", "prompt": "x", "options": {"resolution": "8K"}}, "INVALID_OPTION"),
        (
            {"model": "sora-2", "prompt": "x", "options": {"referenceVideoUrls": ["https://a/v.mp4"]}},
            "INVALID_OPTION",
        ),
        ({"model": "happyhorse-video-edit", "prompt": "x"}, "INVALID_OPTION"),
        ({"model": "sora-2", "prompt": "x", "options": "wide"}, "INVALID_OPTION"),
        (
            {
                "model": "seedance-2-0-reference-to-video",
                "prompt": "x",
                "options": {"referenceVideoUrls": ["/tmp/a"]},
            },
            "INVALID_OPTION",
        ),
    ],
)
def test_documented_validation_errors(client: httpx.Client, body: dict[str, Any], code: str) -> None:
    answer = _submit(client, body)
    assert answer.status_code == 400
    assert answer.json()["success"] is False
    assert answer.json()["error"]["code"] == code
    assert stats(client)["submits"]["vicsee"] == 0


@pytest.mark.parametrize(
    ("model", "options"),
    [
        ("sora-2", {"duration": 15}),
        ("seedance-2-0-text-to-video", {"duration": 5}),
        (
            "seedance-2-0-reference-to-video",
            {"referenceImageUrls": ["data:image/png;base64,AA"], "duration": 6},
        ),
        ("happyhorse-video-edit", {"videoUrl": "https://a/clip.mp4", "audioSetting": "origin"}),
        ("sora-2", {"image": "https://a/first.png", "aspectRatio": "portrait"}),
    ],
)
def test_valid_options_are_accepted(client: httpx.Client, model: str, options: dict[str, Any]) -> None:
    assert _submit(client, {"model": model, "prompt": "x", "options": options}).status_code == 200


def test_insufficient_credits(client: httpx.Client) -> None:
    set_balance(client, "vicsee", 30)
    first = _submit(client, {"model": "sora-2", "prompt": "x"})
    assert first.json()["data"]["creditsRemaining"] == 10
    second = _submit(client, {"model": "sora-2", "prompt": "y"})
    assert second.status_code == 402
    assert second.json()["error"]["code"] == "INSUFFICIENT_CREDITS"
    counters = stats(client)
    assert (counters["submits"]["vicsee"], counters["submit_attempts"]["vicsee"]) == (1, 2)


def test_poll_errors(client: httpx.Client) -> None:
    missing = client.get("/vicsee/api/v1/tasks/task_nope", headers=BEARER)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "TASK_NOT_FOUND"
    task_id = _submit(client, {"model": "sora-2", "prompt": "x"}).json()["data"]["id"]
    other = client.get(f"/vicsee/api/v1/tasks/{task_id}", headers={"Authorization": "Bearer someone-else"})
    assert other.status_code == 403 and other.json()["error"]["code"] == "FORBIDDEN"


def test_failed_task_shape(client: httpx.Client) -> None:
    client.post("/_control/fail_next", json={"count": 1, "reason": "content policy"}).raise_for_status()
    task_id = _submit(client, {"model": "sora-2", "prompt": "x"}).json()["data"]["id"]
    data = client.get(f"/vicsee/api/v1/tasks/{task_id}", headers=BEARER).json()["data"]
    assert data["status"] == "failed" and data["result"] is None
    assert data["error"]["code"] == "GENERATION_FAILED" and data["error"]["message"] == "content policy"
    assert client.get(f"/files/{task_id}/0.mp4").status_code == 404


def test_rate_limited_fault_uses_vicsee_shape(client: httpx.Client) -> None:
    control(client, "faults", target="submit", status=429, retry_after=3)
    answer = _submit(client, {"model": "sora-2", "prompt": "x"})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "3"
    assert answer.json()["error"]["code"] == "RATE_LIMITED"
    assert _submit(client, {"model": "sora-2", "prompt": "x"}).status_code == 200
