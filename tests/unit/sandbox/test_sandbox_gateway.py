"""The sandbox's gateway dialect against the 003 document and docs/dialects.md."""

from __future__ import annotations

import re

import httpx
import pytest

from sandbox.files import expected_sha256
from tests.unit.sandbox.helpers import BEARER, control, download_sha256, poll_until, set_balance, set_delay

VIDEOS = "/gateway/v2/videos/generations"
IMAGES = "/gateway/v2/images/generations"

FIELDS = {
    "task_id", "platform", "action", "status", "fail_reason", "submit_time", "start_time", "finish_time",
    "progress", "data",
}  # fmt: skip


def test_text_to_video_round_trip(client: httpx.Client) -> None:
    set_delay(client, 0.3)
    answer = client.post(VIDEOS, json={"prompt": "A cat", "model": "veo3"}, headers=BEARER)
    assert answer.status_code == 200
    assert set(answer.json()) == {"task_id"}
    task_id = answer.json()["task_id"]

    path = f"/gateway/v2/videos/generations/{task_id}"
    answers = poll_until(client, path, BEARER, lambda a: a["status"] == "SUCCESS")
    words = [a["status"] for a in answers]
    assert set(words) <= {"NOT_START", "IN_PROGRESS", "SUCCESS"} and "IN_PROGRESS" in words
    progress = [int(a["progress"].rstrip("%")) for a in answers]
    assert all(re.fullmatch(r"\d{1,3}%", a["progress"]) for a in answers)
    assert progress == sorted(progress) and progress[-1] == 100 and progress[0] < 100
    final = answers[-1]
    assert set(final) == FIELDS and final["task_id"] == task_id and final["fail_reason"] == ""
    assert final["submit_time"] <= final["start_time"] <= final["finish_time"]
    assert all(a["data"] == {} for a in answers[:-1])
    assert final["data"]["outputs"] == [final["data"]["output"]]
    response, sha, size = download_sha256(client, final["data"]["output"])
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    assert sha == expected_sha256(task_id, 0, size)


@pytest.mark.parametrize(
    ("scope", "ext", "content_type"), [("images", "png", "image/png"), ("audio", "mp3", "audio/mpeg")]
)
def test_scope_decides_the_output_kind(client: httpx.Client, scope: str, ext: str, content_type: str) -> None:
    task_id = client.post(
        f"/gateway/v2/{scope}/generations", json={"prompt": "x", "model": "m"}, headers=BEARER
    ).json()["task_id"]
    final = client.get(f"/gateway/v2/{scope}/generations/{task_id}", headers=BEARER).json()
    assert final["status"] == "SUCCESS" and final["data"]["output"].endswith(f"/0.{ext}")
    assert client.get(final["data"]["output"]).headers["content-type"] == content_type


@pytest.mark.parametrize(
    ("scope", "body"),
    [
        ("texts", {"prompt": "x", "model": "m"}),
        ("videos", {"model": "m"}),
        ("videos", {"prompt": "x"}),
        ("videos", {"prompt": "x", "model": "m", "videos": ["/local/file.mp4"]}),
        ("videos", {"prompt": "x", "model": "m", "duration": -1}),
    ],
)
def test_validation_errors(client: httpx.Client, scope: str, body: dict[str, object]) -> None:
    answer = client.post(f"/gateway/v2/{scope}/generations", json=body, headers=BEARER)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and error["message"] and error["type"]


def test_auth_and_not_found(client: httpx.Client) -> None:
    body = {"prompt": "x", "model": "m"}
    for headers in ({}, {"Authorization": "Token test-key"}):
        answer = client.post("/gateway/v2/videos/generations", json=body, headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
    missing = client.get("/gateway/v2/videos/generations/nope", headers=BEARER)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "task_not_found"


def test_failure_reason(client: httpx.Client) -> None:
    control(client, "fail_next", reason="NSFW content", dialect="gateway")
    task_id = client.post(VIDEOS, json={"prompt": "x", "model": "m"}, headers=BEARER).json()["task_id"]
    final = client.get(f"/gateway/v2/videos/generations/{task_id}", headers=BEARER).json()
    assert final["status"] == "FAILURE" and final["fail_reason"] == "NSFW content" and final["data"] == {}


def test_free_but_quota_can_run_out(client: httpx.Client) -> None:
    body = {"prompt": "x", "model": "m"}
    assert client.post("/gateway/v2/videos/generations", json=body, headers=BEARER).status_code == 200
    assert client.get("/_control/balance").json()["gateway"] == 1e9
    set_balance(client, "gateway", 0)
    answer = client.post("/gateway/v2/videos/generations", json=body, headers=BEARER)
    assert answer.status_code == 402 and answer.json()["error"]["code"] == "insufficient_quota"


def test_several_outputs(client: httpx.Client) -> None:
    client.post("/_control/config", json={"outputs_per_task": 3, "output_bytes": 1000}).raise_for_status()
    task_id = client.post(IMAGES, json={"prompt": "x", "model": "m"}, headers=BEARER).json()["task_id"]
    outputs = client.get(f"{IMAGES}/{task_id}", headers=BEARER).json()["data"]["outputs"]
    assert [u.rsplit("/", 1)[1] for u in outputs] == ["0.png", "1.png", "2.png"]
    bodies = [client.get(u).content for u in outputs]
    assert all(len(b) == 1000 for b in bodies) and len(set(bodies)) == 3
    assert client.get(outputs[0].replace("/0.png", "/3.png")).status_code == 404
