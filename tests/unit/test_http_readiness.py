"""In process, no Redis: `/readyz` is 503 while Redis does not answer (`/livez` 200); how `Prefer: wait` is read."""

from __future__ import annotations

from fastapi.testclient import TestClient

from producer.http_api.app import create_app
from shared.settings import Settings


def test_readyz_is_503_while_redis_does_not_answer_and_livez_is_200() -> None:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))  # nothing listens on port 1
    with TestClient(app) as client:
        assert client.get("/livez").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["content-type"].startswith("application/problem+json")
        assert ready.json()["code"] == "unavailable" and ready.json()["detail"].startswith("Redis does not answer")
        assert client.get("/v1/jobs").status_code == 401  # no key: refused before Redis is asked


def test_prefer_wait_is_read_as_rfc_7240_spells_it_and_capped() -> None:
    from producer.http_api.jobs import MAX_WAIT_SECONDS, _wait_seconds

    assert [_wait_seconds(v) for v in (None, "", "respond-async", "wait=5", "respond-async, wait=7", "wait=600")] == [
        None, None, None, 5, 7, MAX_WAIT_SECONDS,
    ]  # fmt: skip
