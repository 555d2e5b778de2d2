"""The HTTP API through a real `genqueue api` process on a real port, real workers and the sandbox."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from infra.local.processes import ServerProcess
from infra.local.stack import LocalStack
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def api_url(pipeline_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = LocalStack(tmp_path_factory.mktemp("api"), env=pipeline_env)
    url = stack.start_api()
    yield url
    stack.stop()


def make_key(env: dict[str, str], prefix: str = "team") -> dict[str, str]:
    result = run_cli(env, "keys", "create", f"{prefix}-{uuid.uuid4().hex[:8]}", "--json")
    assert result.returncode == 0, result.stderr
    made: dict[str, str] = json.loads(result.stdout)
    return made


def client(api_url: str, key: dict[str, str] | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key['key']}"} if key else {}
    return httpx.Client(base_url=api_url, headers=headers, timeout=90)


def job_line(**extra: Any) -> dict[str, Any]:
    return {"provider": "sandbox", "model": "sandbox-image", "prompt": f"a cat {uuid.uuid4().hex[:6]}", **extra}


def assert_problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["code"] == code and body["detail"] and body["title"]
    assert "Traceback" not in answer.text
    return body


def wait_ended(api: httpx.Client, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end")


def test_health_and_the_openapi_document_need_no_key(api_url: str) -> None:
    anonymous = client(api_url, None)
    assert anonymous.get("/livez").json() == {"status": "ok"}
    assert anonymous.get("/readyz").json() == {"status": "ok"}
    document = anonymous.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel"} <= set(document["paths"])


@pytest.mark.parametrize("authorization", [None, "Bearer gq_not-a-key", "Basic dXNlcjpwYXNz", "Bearer"])
def test_a_request_without_a_live_key_is_401(api_url: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = httpx.post(f"{api_url}/v1/jobs", json=job_line(), headers=headers)
    assert_problem(answer, 401, "unauthorized")
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_job_made_over_http_runs_to_the_end(
    api_url: str, pipeline_env: dict[str, str], workers: ServerProcess
) -> None:
    api = client(api_url, make_key(pipeline_env))
    answer = api.post("/v1/jobs", json=job_line(metadata={"customer": "acme", "n": 3}))
    assert answer.status_code == 201, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["metadata"] == {"customer": "acme", "n": "3"}
    ended = wait_ended(api, job["id"])
    assert ended["status"] == "succeeded" and len(ended["outputs"]) == 1
    assert set(ended) == set(job)  # the job JSON of INTERFACE.md, nothing of the bookkeeping


def test_prefer_wait_answers_when_the_job_ended(
    api_url: str, pipeline_env: dict[str, str], workers: ServerProcess
) -> None:
    api = client(api_url, make_key(pipeline_env))
    answer = api.post("/v1/jobs", json=job_line(), headers={"Prefer": "wait=30"})
    assert answer.status_code == 201 and answer.headers["preference-applied"] == "wait=30"
    assert answer.json()["status"] == "succeeded"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (job_line(provider="nosuch"), "unknown provider 'nosuch'"),
        (job_line(options={"duration": "forever"}), "duration"),
        (job_line(webhook="file:///etc/passwd"), "webhook URL"),
        ({"provider": "sandbox", "model": "sandbox-image", "colour": "red"}, "unknown field 'colour'"),
        ({"model": "sandbox-image"}, "provider"),
    ],
)
def test_a_refused_request_is_a_422_problem_and_stores_nothing(
    api_url: str, pipeline_env: dict[str, str], line: dict[str, Any], reason: str
) -> None:
    from shared.store import redis_client

    redis = redis_client(pipeline_env["GENQUEUE_REDIS_URL"])
    before = len(list(redis.scan_iter("genqueue:job:*")))
    body = assert_problem(client(api_url, make_key(pipeline_env)).post("/v1/jobs", json=line), 422, "invalid_request")
    assert reason in body["detail"] and "\n" not in body["detail"]
    assert len(list(redis.scan_iter("genqueue:job:*"))) == before


def test_a_key_sees_only_its_own_jobs(api_url: str, pipeline_env: dict[str, str], workers: ServerProcess) -> None:
    owner, other = client(api_url, make_key(pipeline_env)), client(api_url, make_key(pipeline_env))
    job = owner.post("/v1/jobs", json=job_line()).json()
    missing = other.get("/v1/jobs/job_does_not_exist")
    for answer in (
        other.get(f"/v1/jobs/{job['id']}"),
        other.post(f"/v1/jobs/{job['id']}/cancel"),
        other.post(f"/v1/jobs/{job['id']}/webhook/redeliver"),
    ):
        body = assert_problem(answer, 404, "not_found")
        assert body["detail"] == assert_problem(missing, 404, "not_found")["detail"].replace(
            "job_does_not_exist", job["id"]
        )  # the same answer as for an id that does not exist
    assert wait_ended(owner, job["id"])["status"] == "succeeded"  # untouched by the other key


def test_idempotency_key_gives_back_the_first_job(api_url: str, pipeline_env: dict[str, str]) -> None:
    key = make_key(pipeline_env)
    api = client(api_url, key)
    line = job_line()
    headers = {"Idempotency-Key": f"order-{uuid.uuid4().hex[:6]}"}
    first = api.post("/v1/jobs", json=line, headers=headers)
    again = api.post("/v1/jobs", json=line, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    changed = api.post("/v1/jobs", json={**line, "prompt": "something else"}, headers=headers)
    assert_problem(changed, 422, "invalid_request")
    # the same Idempotency-Key from another tenant is another job: keys are scoped to who sends them
    elsewhere = client(api_url, make_key(pipeline_env)).post("/v1/jobs", json=line, headers=headers)
    assert elsewhere.status_code == 201 and elsewhere.json()["id"] != first.json()["id"]


def test_cancel_then_cancel_again_is_409(api_url: str, pipeline_env: dict[str, str], sandbox_url: str) -> None:
    api = client(api_url, make_key(pipeline_env))
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 5.0})
    try:
        job = api.post("/v1/jobs", json=job_line()).json()
        canceled = api.post(f"/v1/jobs/{job['id']}/cancel")
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert_problem(api.post(f"/v1/jobs/{job['id']}/cancel"), 409, "conflict")


def test_a_revoked_key_is_refused_at_once(api_url: str, pipeline_env: dict[str, str]) -> None:
    key = make_key(pipeline_env)
    api = client(api_url, key)
    job = api.post("/v1/jobs", json=job_line()).json()
    assert api.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert run_cli(pipeline_env, "keys", "revoke", key["name"]).returncode == 0
    assert_problem(api.get(f"/v1/jobs/{job['id']}"), 401, "unauthorized")
