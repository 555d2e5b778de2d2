"""Faults, fail-next, balances, settings and counters through /_control/."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.unit.sandbox.helpers import BEARER, TOKEN, control, set_delay, stats

VICSEE = "/vicsee/api/v1/generate"
VEOGEN = "/veogen/api/v1/generations"
SORA = {"model": "sora-2", "prompt": "a cat"}


def _fault(client: httpx.Client, **fields: Any) -> None:
    client.post("/_control/faults", json=fields).raise_for_status()


def test_health(client: httpx.Client) -> None:
    answer = client.get("/_control/health")
    assert answer.status_code == 200 and answer.json() == {"ok": True}


def test_429_with_retry_after_for_n_submits_then_success(client: httpx.Client) -> None:
    _fault(client, target="submit", status=429, retry_after=2, count=3)
    for _ in range(3):
        answer = client.post(VICSEE, json=SORA, headers=BEARER)
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "2"
    assert client.post(VICSEE, json=SORA, headers=BEARER).status_code == 200
    counters = stats(client)
    assert counters["submit_attempts"]["vicsee"] == 4 and counters["submits"]["vicsee"] == 1
    assert client.get("/_control/faults").json() == []


@pytest.mark.parametrize(
    ("dialect", "method", "path", "headers", "body"),
    [
        (
            "vicsee",
            "POST",
            VICSEE,
            BEARER,
            {"success": False, "error": {"code": "RATE_LIMITED", "message": "Too many requests"}},
        ),
        ("veogen", "POST", "/veogen/api/v1/generations", BEARER, {"message": "Too Many Attempts."}),
        ("gateway", "POST", "/gateway/v2/videos/generations", BEARER, None),
        (
            "veo3api",
            "POST",
            "/veo3api/api/v1/generate/video/",
            TOKEN,
            {"success": False, "error": "Request was throttled."},
        ),
        (
            "sandbox",
            "POST",
            "/sandbox/v1/jobs",
            BEARER,
            {"error": {"code": "rate_limited", "message": "Too many requests"}},
        ),
    ],
)
def test_fault_answers_in_the_dialects_error_shape(
    client: httpx.Client, dialect: str, method: str, path: str, headers: dict[str, str], body: Any
) -> None:
    _fault(client, target="submit", status=429, dialect=dialect)
    answer = client.request(method, path, json={"prompt": "x", "model": "m"}, headers=headers)
    assert answer.status_code == 429 and "retry-after" not in answer.headers
    if body is None:
        assert answer.json()["error"]["code"] == "rate_limit_exceeded"
    else:
        assert answer.json() == body


def test_fault_for_one_dialect_leaves_the_others_alone(client: httpx.Client) -> None:
    _fault(client, target="submit", status=500, dialect="veogen", count=2)
    assert client.post(VICSEE, json=SORA, headers=BEARER).status_code == 200
    veogen = client.post("/veogen/api/v1/generations", json=SORA, headers=BEARER)
    assert veogen.status_code == 500 and veogen.json() == {"message": "Server Error"}
    assert client.get("/_control/faults").json()[0]["count"] == 1


def test_slow_fault_delays_a_normal_answer(client: httpx.Client) -> None:
    _fault(client, target="submit", delay_seconds=0.3)
    start = time.monotonic()
    assert client.post(VICSEE, json=SORA, headers=BEARER).status_code == 200
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    assert client.post(VICSEE, json=SORA, headers=BEARER).status_code == 200
    assert time.monotonic() - start < 0.3


def test_after_accept_fault_loses_the_answer_of_an_accepted_submit(client: httpx.Client) -> None:
    _fault(client, target="submit", status=502, after_accept=True)
    assert client.post(VICSEE, json=SORA, headers=BEARER).status_code == 502
    assert client.post(VICSEE, json=SORA, headers=BEARER).status_code == 200
    counters = stats(client)
    assert counters["submits"]["vicsee"] == 2 and counters["duplicate_submits"] == 1
    assert client.get("/_control/balance").json()["vicsee"] == 1e9 - 40


def test_download_fault(client: httpx.Client) -> None:
    task_id = client.post(VICSEE, json=SORA, headers=BEARER).json()["data"]["id"]
    url = client.get(f"/vicsee/api/v1/tasks/{task_id}", headers=BEARER).json()["data"]["result"]["url"]
    _fault(client, target="download", status=403, count=1)
    refused = client.get(url)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"
    assert client.get(url).status_code == 200
    assert stats(client)["downloads"] == 1


def test_poll_fault(client: httpx.Client) -> None:
    task_id = client.post(VICSEE, json=SORA, headers=BEARER).json()["data"]["id"]
    _fault(client, target="poll", status=404)
    assert client.get(f"/vicsee/api/v1/tasks/{task_id}", headers=BEARER).status_code == 404
    assert client.get(f"/vicsee/api/v1/tasks/{task_id}", headers=BEARER).status_code == 200
    assert stats(client)["polls"]["vicsee"] == 2


def test_fail_next_counts_and_dialect(client: httpx.Client) -> None:
    control(client, "fail_next", count=2, reason="nope", dialect="veogen")
    vicsee = client.post(VICSEE, json=SORA, headers=BEARER).json()["data"]["id"]
    veogen = [client.post(VEOGEN, json=SORA, headers=BEARER).json()["data"]["id"] for _ in range(3)]
    assert client.get(f"/vicsee/api/v1/tasks/{vicsee}", headers=BEARER).json()["data"]["status"] == "success"
    statuses = [client.get(f"{VEOGEN}/{i}", headers=BEARER).json()["data"]["status"] for i in veogen]
    assert statuses == ["failed", "failed", "completed"]


def test_fail_next_picks_its_prompt_and_leaves_other_tasks_alone(client: httpx.Client) -> None:
    control(client, "fail_next", count=1, reason="nope", dialect="veogen", prompt="mine")
    other = client.post(VEOGEN, json=SORA, headers=BEARER).json()["data"]["id"]
    mine = client.post(VEOGEN, json=SORA | {"prompt": "mine"}, headers=BEARER).json()["data"]["id"]
    statuses = [client.get(f"{VEOGEN}/{i}", headers=BEARER).json()["data"]["status"] for i in (other, mine)]
    assert statuses == ["completed", "failed"]


def test_stats_and_duplicates(client: httpx.Client) -> None:
    client.post(VICSEE, json=SORA | {"options": {"duration": 10}}, headers=BEARER)
    client.post(VICSEE, json=SORA | {"options": {"duration": 10}}, headers=BEARER)  # duplicate
    client.post(VICSEE, json=SORA | {"options": {"duration": 15}}, headers=BEARER)  # other options
    client.post(VICSEE, json={"model": "sora-2"}, headers=BEARER)  # refused: not counted as a submit
    client.post("/veogen/api/v1/generations", json=SORA | {"duration": 10}, headers=BEARER)  # other dialect
    client.post("/veogen/api/v1/generations", json=SORA | {"duration": 10}, headers=BEARER)  # duplicate
    task = client.post("/sandbox/v1/jobs", json=SORA, headers=BEARER).json()
    client.get(f"/sandbox/v1/jobs/{task['id']}", headers=BEARER)
    outputs = client.get(f"/sandbox/v1/jobs/{task['id']}", headers=BEARER).json()["outputs"]
    client.get(outputs[0])
    assert stats(client) == {
        "submits": {"vicsee": 3, "veogen": 2, "gateway": 0, "veo3api": 0, "sandbox": 1},
        "submit_attempts": {"vicsee": 4, "veogen": 2, "gateway": 0, "veo3api": 0, "sandbox": 1},
        "duplicate_submits": 2,
        "polls": {"vicsee": 0, "veogen": 0, "gateway": 0, "veo3api": 0, "sandbox": 2},
        "downloads": 1,
        "tasks": 6,
    }


def test_reset_restores_everything(client: httpx.Client) -> None:
    client.post("/_control/balance", json={"dialect": "vicsee", "balance": 5}).raise_for_status()
    client.post("/_control/config", json={"delay_seconds": 9, "output_bytes": 10}).raise_for_status()
    _fault(client, target="poll", status=500)
    client.post("/_control/fail_next", json={"count": 1}).raise_for_status()
    client.post(VICSEE, json=SORA, headers=BEARER)
    assert client.post("/_control/reset").json() == {"ok": True}
    assert stats(client)["tasks"] == 0 and stats(client)["submit_attempts"]["vicsee"] == 0
    assert client.get("/_control/faults").json() == []
    assert client.get("/_control/balance").json()["vicsee"] == 1e9
    config = client.get("/_control/config").json()
    assert (config["delay_seconds"], config["output_bytes"]) == (0.0, 256 * 1024)
    task_id = client.post(VICSEE, json=SORA, headers=BEARER).json()["data"]["id"]
    assert client.get(f"/vicsee/api/v1/tasks/{task_id}", headers=BEARER).json()["data"]["status"] == "success"


def test_config_update(client: httpx.Client) -> None:
    answer = client.post("/_control/config", json={"output_bytes": 1234})
    assert answer.status_code == 200 and answer.json()["output_bytes"] == 1234
    task_id = client.post("/sandbox/v1/jobs", json=SORA, headers=BEARER).json()["id"]
    url = client.get(f"/sandbox/v1/jobs/{task_id}", headers=BEARER).json()["outputs"][0]
    assert len(client.get(url).content) == 1234


def test_files_are_404_until_the_task_is_done(client: httpx.Client) -> None:
    set_delay(client, 30)
    task_id = client.post("/sandbox/v1/jobs", json=SORA, headers=BEARER).json()["id"]
    assert client.get(f"/files/{task_id}/0.mp4").status_code == 404
    assert client.get("/files/unknown/0.mp4").status_code == 404
    assert client.get("/files/bad path").status_code == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_control/faults", {"target": "submit"}),
        ("/_control/faults", {"target": "upload", "status": 500}),
        ("/_control/faults", {"target": "submit", "status": 200}),
        ("/_control/fail_next", {"count": 0}),
        ("/_control/balance", {"dialect": "openai", "balance": 1}),
        ("/_control/config", {"delay_seconds": -1}),
        ("/_control/config", {"port": 1}),
    ],
)
def test_bad_control_bodies_are_400(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == 400 and answer.json()["details"]


def test_unknown_paths(client: httpx.Client) -> None:
    assert client.get("/_control/nothing").status_code == 404
    assert client.get("/_control/reset").status_code == 405
    assert client.get("/elsewhere").status_code == 404
    wrong_method = client.get(VICSEE, headers=BEARER)
    assert wrong_method.status_code == 405 and wrong_method.json()["success"] is False
    unknown = client.post("/vicsee/api/v2/generate", headers=BEARER)
    assert unknown.status_code == 404 and unknown.json()["success"] is False
