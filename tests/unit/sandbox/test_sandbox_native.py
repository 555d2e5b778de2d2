"""The sandbox's own dialect, as docs/dialects.md describes it."""

from __future__ import annotations

import httpx
import pytest

from sandbox.dialects.native import kind_of
from sandbox.files import expected_sha256
from tests.unit.sandbox.helpers import BEARER, download_sha256, poll_until, set_balance, set_delay


def test_text_to_video_round_trip(client: httpx.Client) -> None:
    set_delay(client, 0.3)
    body = {"model": "sandbox-video", "prompt": "x", "options": {"duration": 4.5, "aspect_ratio": "16:9"}}
    answer = client.post("/sandbox/v1/jobs", json=body, headers=BEARER)
    assert answer.status_code == 200
    created = answer.json()
    assert created == {"id": created["id"], "status": "queued", "estimated_seconds": 0.3, "cost_credits": 5}

    path = f"/sandbox/v1/jobs/{created['id']}"
    answers = poll_until(client, path, BEARER, lambda a: a["status"] == "succeeded")
    assert {a["status"] for a in answers} <= {"queued", "running", "succeeded"}
    assert "running" in {a["status"] for a in answers}
    assert all(set(a) == {"id", "status", "progress", "outputs", "error"} for a in answers)
    assert all(a["outputs"] == [] for a in answers[:-1])
    final = answers[-1]
    assert final["progress"] == 100 and final["error"] is None and len(final["outputs"]) == 1
    response, sha, size = download_sha256(client, final["outputs"][0])
    assert response.status_code == 200 and size == 256 * 1024
    assert sha == expected_sha256(created["id"], 0, size)


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("sandbox-video", "video"),
        ("sandbox-image", "image"),
        ("flux-img", "image"),
        ("tts-1", "audio"),
        ("x", "video"),
    ],
)
def test_kind_follows_the_model_name(model: str, kind: str) -> None:
    assert kind_of(model) == kind


def test_errors(client: httpx.Client) -> None:
    refused = client.post("/sandbox/v1/jobs", json={"prompt": "x"}, headers=BEARER)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_request"
    unauthorized = client.post("/sandbox/v1/jobs", json={"model": "m", "prompt": "x"})
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["code"] == "unauthorized"
    missing = client.get("/sandbox/v1/jobs/job_nope", headers=BEARER)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad_duration = {"model": "m", "prompt": "x", "options": {"duration": "long"}}
    assert client.post("/sandbox/v1/jobs", json=bad_duration, headers=BEARER).status_code == 400
    set_balance(client, "sandbox", 5)
    long_video = {"model": "sandbox-video", "prompt": "x", "options": {"duration": 6}}
    poor = client.post("/sandbox/v1/jobs", json=long_video, headers=BEARER)
    assert poor.status_code == 402 and poor.json()["error"]["code"] == "insufficient_credits"
    image = client.post("/sandbox/v1/jobs", json={"model": "sandbox-image", "prompt": "x"}, headers=BEARER)
    assert image.status_code == 200 and image.json()["cost_credits"] == 1
    audio = client.post("/sandbox/v1/jobs", json={"model": "sandbox-audio", "prompt": "x"}, headers=BEARER)
    assert audio.status_code == 200 and audio.json()["cost_credits"] == 0
    assert client.get("/_control/balance").json()["sandbox"] == 4


def test_failed_job(client: httpx.Client) -> None:
    client.post("/_control/fail_next", json={"reason": "boom", "dialect": "native"}).raise_for_status()
    job_id = client.post("/sandbox/v1/jobs", json={"model": "m", "prompt": "x"}, headers=BEARER).json()["id"]
    final = client.get(f"/sandbox/v1/jobs/{job_id}", headers=BEARER).json()
    assert (final["status"], final["error"], final["outputs"]) == ("failed", "boom", [])
