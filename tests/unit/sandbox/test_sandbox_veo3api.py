"""The sandbox's Veo3 API dialect against the 004 document and docs/dialects.md."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox.files import expected_sha256
from tests.unit.sandbox.helpers import BEARER, TOKEN, download_sha256, poll_until, set_balance, set_delay

SUBMIT = "/veo3api/api/v1/generate/video/"


def _submit(client: httpx.Client, body: dict[str, Any], headers: dict[str, str] = TOKEN) -> httpx.Response:
    return client.post(SUBMIT, json=body, headers=headers)


def test_text_to_video_round_trip(client: httpx.Client) -> None:
    set_delay(client, 0.3)
    answer = _submit(client, {"prompt": "A cat", "video_model": "veo3_fast", "aspect_ratio": "16:9"})
    assert answer.status_code == 200
    created = answer.json()
    assert created["success"] is True
    data = created["data"]
    assert {
        "generation_id", "status", "generation_type", "video_model", "estimated_time", "credits_used",
        "credits_remaining", "mode", "message",
    } <= set(data)  # fmt: skip
    assert data["status"] == "processing" and data["generation_type"] == "video"
    assert (data["credits_used"], data["credits_remaining"]) == (240, 1_000_000_000 - 240)
    assert data["estimated_time"] == "1-2 seconds" and data["mode"] == "text-to-video"

    path = f"/veo3api/api/v1/generate/{data['generation_id']}/"
    answers = poll_until(client, path, TOKEN, lambda a: a["status"] == "completed")
    words = [a["status"] for a in answers]
    assert set(words) <= {"pending", "processing", "completed"} and "processing" in words
    assert all(0 <= a["progress"] <= 100 for a in answers) and answers[-1]["progress"] == 100
    final = answers[-1]
    assert final["generation_id"] == data["generation_id"] and final["generation_type"] == "video"
    assert final["video_model"] == "veo3_fast" and "error" not in final
    assert all("video_url" not in a for a in answers[:-1])
    response, sha, size = download_sha256(client, final["video_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert sha == expected_sha256(data["generation_id"], 0, size)


def test_defaults_premium_model_and_image_to_video(client: httpx.Client) -> None:
    default = _submit(client, {"prompt": "x"}).json()["data"]
    assert default["video_model"] == "veo3_fast" and default["credits_used"] == 240
    image_to_video = {"prompt": "x", "video_model": "veo3", "source_image_urls": ["https://a/c.jpg"]}
    premium = _submit(client, image_to_video)
    data = premium.json()["data"]
    assert (data["credits_used"], data["mode"], data["source_images_count"]) == (500, "image-to-video", 1)
    assert data["credits_remaining"] == 1_000_000_000 - 740


def test_estimated_time_scales_with_the_delay(client: httpx.Client) -> None:
    set_delay(client, 2.5)
    assert _submit(client, {"prompt": "x"}).json()["data"]["estimated_time"] == "3-4 seconds"


@pytest.mark.parametrize("headers", [{}, BEARER, {"Authorization": "Token"}])
def test_token_scheme_is_required(client: httpx.Client, headers: dict[str, str]) -> None:
    answer = _submit(client, {"prompt": "x"}, headers)
    assert answer.status_code == 401
    assert answer.json() == {"success": False, "error": "Invalid token."}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "prompt", "Prompt is required"),
        ({"prompt": "x" * 1001}, "prompt", "Prompt is too long"),
        ({"prompt": "x", "video_model": "veo2"}, "video_model", "Invalid video model"),
        ({"prompt": "x", "aspect_ratio": "1:1"}, "aspect_ratio", "Invalid aspect ratio"),
        (
            {"prompt": "x", "source_image_urls": "https://a/c.jpg"},
            "source_image_urls",
            "Invalid source image URLs",
        ),
    ],
)
def test_invalid_parameters_are_400_with_details(
    client: httpx.Client, body: dict[str, Any], field: str, message: str
) -> None:
    answer = _submit(client, body)
    assert answer.status_code == 400
    refusal = answer.json()
    assert refusal["success"] is False and refusal["error"] == message and field in refusal["details"]


def test_documented_missing_prompt_body(client: httpx.Client) -> None:
    assert _submit(client, {"aspect_ratio": "9:16"}).json() == {
        "success": False,
        "error": "Prompt is required",
        "details": {"prompt": "This field is required"},
    }


def test_prompt_of_1000_characters_and_portrait_are_accepted(client: httpx.Client) -> None:
    assert _submit(client, {"prompt": "x" * 1000, "aspect_ratio": "9:16"}).status_code == 200


@pytest.mark.parametrize(("model", "need"), [("veo3_fast", 240), ("veo3", 500)])
def test_insufficient_credits_body_as_documented(client: httpx.Client, model: str, need: int) -> None:
    set_balance(client, "veo3api", 100)
    answer = _submit(client, {"prompt": "x", "video_model": model})
    assert answer.status_code == 402
    assert answer.json() == {
        "success": False,
        "error": f"Insufficient credits. Need {need}, have 100",
        "credits_needed": need,
        "credits_balance": 100,
        "video_model": model,
        "generation_type": "video",
    }


def test_failed_and_not_found(client: httpx.Client) -> None:
    client.post("/_control/fail_next", json={"reason": "safety filter"}).raise_for_status()
    generation_id = _submit(client, {"prompt": "x"}).json()["data"]["generation_id"]
    final = client.get(f"/veo3api/api/v1/generate/{generation_id}/", headers=TOKEN).json()
    assert final["status"] == "failed" and final["error"] == "safety filter" and "video_url" not in final
    missing = client.get("/veo3api/api/v1/generate/nope/", headers=TOKEN)
    assert missing.status_code == 404 and missing.json() == {"success": False, "error": "Not found."}
