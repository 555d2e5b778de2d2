"""Small helpers shared by the sandbox tests."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import httpx

BEARER = {"Authorization": "Bearer test-key"}
TOKEN = {"Authorization": "Token test-key"}


def poll_until(
    client: httpx.Client,
    path: str,
    headers: dict[str, str],
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 5.0,
    interval: float = 0.03,
) -> list[dict[str, Any]]:
    """GET `path` until `done(answer)`; returns every answer seen, the finished one last."""
    answers: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        answers.append(response.json())
        if done(answers[-1]):
            return answers
        time.sleep(interval)
    raise AssertionError(f"{path} not done after {timeout}s; last answer {answers[-1] if answers else None}")


def download_sha256(client: httpx.Client, url: str) -> tuple[httpx.Response, str, int]:
    """Stream `url`; returns the response (body not kept), the body's hex SHA-256 and its length."""
    digest = hashlib.sha256()
    size = 0
    with client.stream("GET", url) as response:
        for chunk in response.iter_bytes():
            digest.update(chunk)
            size += len(chunk)
    return response, digest.hexdigest(), size


def control(client: httpx.Client, endpoint: str, **body: Any) -> Any:
    """POST `body` to /_control/{endpoint}; returns the answer's JSON, failing the test on an error status."""
    answer = client.post(f"/_control/{endpoint}", json=body)
    answer.raise_for_status()
    return answer.json()


def set_delay(client: httpx.Client, seconds: float) -> None:
    client.post("/_control/config", json={"delay_seconds": seconds}).raise_for_status()


def set_balance(client: httpx.Client, dialect: str, balance: float) -> None:
    client.post("/_control/balance", json={"dialect": dialect, "balance": balance}).raise_for_status()


def stats(client: httpx.Client) -> dict[str, Any]:
    answer: dict[str, Any] = client.get("/_control/stats").json()
    return answer
