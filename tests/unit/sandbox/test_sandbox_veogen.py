"""The sandbox's VeoGen dialect against the 002 document and docs/dialects.md."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.files import expected_sha256
from tests.unit.sandbox.helpers import BEARER, control, download_sha256, poll_until, set_balance, set_delay

SUBMIT = "/veogen/api/v1/generations"
FIELDS = {
    "id", "status", "model", "type", "prompt", "parameters", "output", "error", "created_at", "completed_at",
}  # fmt: skip


def _submit(client: httpx.Client, body: dict[str, Any], headers: dict[str, str] = BEARER) -> httpx.Response:
    return client.post(SUBMIT, json=body, headers=headers)


def test_text_to_video_round_trip(client: httpx.Client) -> None:
    set_delay(client, 0.3)
    body = {"model": "seedance-2.0", "prompt": "A fox", "duration": 5, "aspect_ratio": "16:9"}
    answer = _submit(client, body)
    assert answer.status_code == 201
    created = answer.json()
    assert set(created) == {"data", "price_usd"}
    assert created["price_usd"] == pytest.approx(0.66)
    data = created["data"]
    assert set(data) == FIELDS
    assert data["status"] == "pending" and data["type"] == "video" and data["output"] is None
    assert data["parameters"] == {"duration": 5, "aspect_ratio": "16:9", "resolution": "480p"}

    path = f"{SUBMIT}/{data['id']}"
    answers = poll_until(client, path, BEARER, lambda a: a["data"]["status"] == "completed")
    words = [a["data"]["status"] for a in answers]
    assert set(words) <= {"pending", "processing", "completed"} and "processing" in words
    final = answers[-1]["data"]
    assert set(final) == FIELDS and final["error"] is None and final["completed_at"]
    output = final["output"]
    assert output["content_type"] == "video/mp4"
    assert output["url"].endswith(f"/files/{data['id']}/0.mp4")
    assert output["download_url"].startswith(output["url"])
    response, sha, size = download_sha256(client, output["download_url"])
    assert response.status_code == 200 and size == 256 * 1024
    assert sha == expected_sha256(data["id"], 0, size)


@pytest.mark.parametrize(
    ("body", "price"),
    [
        ({"model": "grok-video-1", "duration": 10}, 0.30),
        ({"model": "grok-video-1"}, 0.18),
        ({"model": "sora-2"}, 0.30),
        ({"model": "sora-2", "duration": 15}, 0.45),
        ({"model": "sora-2-pro", "duration": 25}, 2.50),
        ({"model": "seedance-2.0", "duration": 10, "resolution": "720p"}, 2.84),
        ({"model": "seedance-2.0", "duration": 5, "video_urls": ["https://a/ref.mp4"]}, 0.40),
        ({"model": "seedance-2.0-fast", "duration": 10, "resolution": "720p"}, 2.288),
        ({"model": "seedance-2.0-fast", "duration": 10, "video_urls": ["https://a/r.mp4"]}, 0.632),
        ({"model": "veo-3.1-fast"}, 0.40),
        ({"model": "veo-3.1-fast", "resolution": "4k"}, 1.20),
        ({"model": "gpt-4o-image", "aspect_ratio": "16:9"}, 0.02),
        ({"model": "nano-banana-pro", "resolution": "4K"}, 0.09),
    ],
)
def test_price_per_model_and_duration(client: httpx.Client, body: dict[str, Any], price: float) -> None:
    set_balance(client, "veogen", 10)
    answer = _submit(client, {"prompt": "x"} | body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["price_usd"] == pytest.approx(price)
    balance = client.get("/_control/balance").json()["veogen"]
    assert balance == pytest.approx(10 - price)


def test_image_model_is_an_image(client: httpx.Client) -> None:
    task_id = _submit(client, {"model": "seedream-4.5", "prompt": "x"}).json()["data"]["id"]
    data = client.get(f"{SUBMIT}/{task_id}", headers=BEARER).json()["data"]
    assert data["type"] == "image" and data["output"]["content_type"] == "image/png"
    assert data["output"]["url"].endswith("/0.png")


def test_insufficient_balance_body_as_documented(client: httpx.Client) -> None:
    set_balance(client, "veogen", 0.05)
    answer = _submit(client, {"model": "sora-2", "prompt": "x", "duration": 10})
    assert answer.status_code == 402
    assert answer.json() == {
        "error": "Insufficient balance.",
        "message": "This generation costs $0.30. Your balance is $0.05.",
        "required": 0.30,
        "balance": 0.05,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x"}, "model"),
        ({"model": "veo-9", "prompt": "x"}, "model"),
        ({"model": "sora-2"}, "prompt"),
        ({"model": "sora-2", "prompt": "x" * 2001}, "prompt"),
        ({"model": "sora-2", "prompt": "x", "duration": 12}, "duration"),
        ({"model": "sora-2-pro", "prompt": "x", "duration": 20}, "duration"),
        ({"model": "grok-video-1", "prompt": "x", "duration": 5}, "duration"),
        ({"model": "grok-video-1", "prompt": "x", "duration": 31}, "duration"),
        ({"model": "seedance-2.0", "prompt": "x", "duration": 16}, "duration"),
        ({"model": "seedance-2.0", "prompt": "x", "duration": "5"}, "duration"),
        ({"model": "gpt-4o-image", "prompt": "x", "duration": 5}, "duration"),
        ({"model": "seedance-2.0", "prompt": "x", "resolution": "1080p"}, "resolution"),
        ({"model": "grok-video-1", "prompt": "x", "mode": "weird"}, "mode"),
        ({"model": "sora-2", "prompt": "x", "style": "noir"}, "style"),
        ({"model": "sora-2", "prompt": "x", "video_urls": ["https://a/v.mp4"]}, "video_urls"),
        ({"model": "seedance-2.0", "prompt": "x", "audio_urls": ["https://a/1.mp3"] * 4}, "audio_urls"),
        ({"model": "gpt-4o-image", "prompt": "x", "image_urls": ["https://a/i.png"] * 15}, "image_urls"),
        ({"model": "sora-2", "prompt": "x", "watermark": "no"}, "watermark"),
    ],
)
def test_validation_errors_are_422(client: httpx.Client, body: dict[str, Any], field: str) -> None:
    answer = _submit(client, body)
    assert answer.status_code == 422
    refusal = answer.json()
    assert set(refusal) == {"message", "errors"}
    assert field in refusal["errors"] and refusal["message"].startswith(refusal["errors"][field][0])


def test_prompt_of_exactly_2000_characters_is_accepted(client: httpx.Client) -> None:
    assert _submit(client, {"model": "sora-2", "prompt": "x" * 2000}).status_code == 201


def test_missing_model_message_as_documented(client: httpx.Client) -> None:
    answer = _submit(client, {"prompt": "x"})
    assert answer.json() == {
        "message": "The model field is required.",
        "errors": {"model": ["The model field is required."]},
    }


def test_auth_and_not_found(client: httpx.Client) -> None:
    unauthenticated = _submit(client, {"model": "sora-2", "prompt": "x"}, {"Authorization": "Token test-key"})
    assert unauthenticated.status_code == 401 and unauthenticated.json() == {"message": "Unauthenticated."}
    missing = client.get(f"{SUBMIT}/nope", headers=BEARER)
    assert missing.status_code == 404 and missing.json() == {"message": "Not found."}


def test_failed_generation(client: httpx.Client) -> None:
    control(client, "fail_next", reason="upstream refused", dialect="veogen")
    task_id = _submit(client, {"model": "sora-2", "prompt": "x"}).json()["data"]["id"]
    data = client.get(f"{SUBMIT}/{task_id}", headers=BEARER).json()["data"]
    assert data["status"] == "failed" and data["output"] is None
    assert data["error"] == {"message": "upstream refused"}


def test_server_error_fault_shape(client: httpx.Client) -> None:
    control(client, "faults", target="poll", status=503, dialect="veogen")
    task_id = _submit(client, {"model": "sora-2", "prompt": "x"}).json()["data"]["id"]
    answer = client.get(f"{SUBMIT}/{task_id}", headers=BEARER)
    assert answer.status_code == 503 and answer.json() == {"message": "Server Error"}
    assert client.get(f"{SUBMIT}/{task_id}", headers=BEARER).status_code == 200
