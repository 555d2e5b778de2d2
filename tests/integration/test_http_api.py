"""The HTTP API through a real `genqueue api` process on a real port, real workers and the sandbox."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from infra.local.processes import ServerProcess
from shared.keys import KeyStore
from shared.store import store_client
from tests.integration.conftest import settings_for
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def make_key(env: dict[str, str], prefix: str = "team") -> dict[str, str]:
    """A new key, as `genqueue keys create NAME --json` prints it. Made in-process with the KeyStore the command
    uses, instead of a `genqueue` process per key: the command itself is run by the tests below that make a key
    with a rate or a budget (and by test_http_batches and test_http_api_schema)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    created = KeyStore(store_client(settings_for(env))).create(name)
    secret = created.record.webhook_secret
    return {"name": name, "key": created.key, "webhook_secret": secret}


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
    history = api.get(f"/v1/jobs/{job['id']}/history").json()
    assert history["job_id"] == job["id"] and history["dropped"] == 0
    assert history["history"][0]["step"] == "submit"
    assert history["history"][0]["answer"] == 200 and "finalize" in {run["step"] for run in history["history"]}


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
        (job_line(images=["/etc/passwd"]), "image input '/etc/passwd': give an http(s) URL or a data: URI"),
        (job_line(images=["s3://genqueue-outputs/outputs/inputs/job_x/a.png"]), "give an http(s) URL or a data: URI"),
        (job_line(options={"video_url": "file:///etc/passwd"}), "video input 'file:///etc/passwd'"),
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
        other.get(f"/v1/jobs/{job['id']}/history"),
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


def test_listing_pages_a_keys_own_jobs_newest_first(api_url: str, pipeline_env: dict[str, str]) -> None:
    api, other = client(api_url, make_key(pipeline_env)), client(api_url, make_key(pipeline_env))
    made = [api.post("/v1/jobs", json=job_line()).json()["id"] for _ in range(3)]
    other.post("/v1/jobs", json=job_line())
    listed, cursor, pages = [], None, 0
    while True:
        answer = api.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        page = answer.json()
        listed += [job["id"] for job in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert listed == made[::-1] and pages >= 2
    canceled = api.post(f"/v1/jobs/{made[1]}/cancel").json()
    by_status = api.get("/v1/jobs", params={"status": "canceled"}).json()
    assert [job["id"] for job in by_status["data"]] == [canceled["id"]]
    assert api.get("/v1/jobs", params={"batch": "no-such-batch"}).json() == {"data": [], "next_cursor": None}
    assert_problem(api.get("/v1/jobs", params={"cursor": "!!not-ours"}), 422, "invalid_request")
    assert_problem(api.get("/v1/jobs", params={"status": "sleeping"}), 422, "invalid_request")
    assert_problem(api.get("/v1/jobs", params={"limit": 0}), 422, "invalid_request")


def test_a_keys_webhooks_are_signed_with_its_own_secret(
    api_url: str, pipeline_env: dict[str, str], workers: ServerProcess
) -> None:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    from infra.local.webhook_receiver import start_receiver

    mine, theirs = make_key(pipeline_env), make_key(pipeline_env)
    receiver = start_receiver(mine["webhook_secret"])
    try:
        job = client(api_url, mine).post("/v1/jobs", json=job_line(webhook=receiver.url)).json()
        event = receiver.wait_for(job["id"])
    finally:
        receiver.stop()
    assert event.verified and event.body["type"] == "job.succeeded" and event.body["data"]["id"] == job["id"]
    body = event.raw
    Webhook(mine["webhook_secret"]).verify(body, event.headers)  # the check below can fail: the right one verifies
    with pytest.raises(WebhookVerificationError):  # another tenant's secret cannot verify (or forge) it
        Webhook(theirs["webhook_secret"]).verify(body, event.headers)
    with pytest.raises(WebhookVerificationError):  # nor can the operator's own
        Webhook(pipeline_env["GENQUEUE_WEBHOOK_SECRET"]).verify(body, event.headers)


def read_events(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Every job.updated event of the stream, until the server closes it."""
    events, kind = [], None
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                assert kind == "job.updated"
                events.append(json.loads(line.removeprefix("data: ")))
    return events


def test_events_stream_every_change_until_the_job_ends(
    api_url: str, pipeline_env: dict[str, str], sandbox_url: str, workers: ServerProcess
) -> None:
    api = client(api_url, make_key(pipeline_env))
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 2.0})
    try:
        job = api.post("/v1/jobs", json=job_line()).json()
        events = read_events(api, job["id"])
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    statuses = [event["status"] for event in events]
    assert statuses[-1] == "succeeded" and len(events[-1]["outputs"]) == 1
    assert "running" in statuses or "submitted" in statuses  # changes streamed as they happened, not only the end
    moves = [(event["status"], event["updated_at"]) for event in events]
    assert len(set(moves)) == len(moves)  # no change sent twice
    # a client that connects again after the end gets the job as it is, and the stream closes
    again = read_events(api, job["id"])
    assert [event["status"] for event in again] == ["succeeded"]
    assert_problem(client(api_url, make_key(pipeline_env)).get(f"/v1/jobs/{job['id']}/events"), 404, "not_found")


def test_a_key_past_its_rate_is_answered_429_with_retry_after(api_url: str, pipeline_env: dict[str, str]) -> None:
    result = run_cli(pipeline_env, "keys", "create", f"slow-{uuid.uuid4().hex[:8]}", "--rate-per-minute", "2", "--json")
    assert result.returncode == 0, result.stderr
    api = client(api_url, json.loads(result.stdout))
    assert [api.get("/v1/jobs").status_code for _ in range(2)] == [200, 200]
    limited = api.get("/v1/jobs")
    body = assert_problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 30 and "2 requests a minute" in body["detail"]
    assert client(api_url, make_key(pipeline_env)).get("/v1/jobs").status_code == 200  # other keys go on


def test_a_keys_budget_refuses_the_job_that_would_pass_it(
    api_url: str, pipeline_env: dict[str, str], workers: ServerProcess
) -> None:
    name = f"budgeted-{uuid.uuid4().hex[:8]}"
    result = run_cli(pipeline_env, "keys", "create", name, "--budget-usd", "0.36", "--json")
    assert result.returncode == 0, result.stderr
    api = client(api_url, json.loads(result.stdout))
    # grok-video-1 bills $0.03 a second (document 002): 6 s is $0.18, so two fit in $0.36
    line = {"provider": "veogen", "model": "grok-video-1", "options": {"duration": 6}}
    made = [api.post("/v1/jobs", json={**line, "prompt": f"clip {n}"}) for n in range(2)]
    assert [answer.status_code for answer in made] == [201, 201]
    refused = assert_problem(api.post("/v1/jobs", json={**line, "prompt": "one too many"}), 422, "invalid_request")
    assert refused["detail"].startswith("budget_exhausted:") and "budget of 0.36 usd" in refused["detail"]
    unpriced = {"provider": "vicsee", "model": "sora-2-pro", "prompt": "no estimate"}
    assert "cannot bound it" in assert_problem(api.post("/v1/jobs", json=unpriced), 422, "invalid_request")["detail"]
    for answer in made:
        assert wait_ended(api, answer.json()["id"])["status"] == "succeeded"
    listed = run_cli(pipeline_env, "keys", "list", "--json")
    [row] = [row for row in json.loads(listed.stdout) if row["name"] == name]
    assert row["spend"]["usd"] == pytest.approx(0.36) and row["budget"] == {"currency": "usd", "amount": 0.36}


def test_redeliver_sends_the_last_event_again_with_the_same_webhook_id(
    api_url: str, pipeline_env: dict[str, str], workers: ServerProcess
) -> None:
    from infra.local.webhook_receiver import start_receiver

    key = make_key(pipeline_env)
    receiver = start_receiver(key["webhook_secret"])
    try:
        api = client(api_url, key)
        job = api.post("/v1/jobs", json=job_line(webhook=receiver.url)).json()
        first = receiver.wait_for(job["id"])
        assert_problem(api.post("/v1/jobs/job_nothing/webhook/redeliver"), 404, "not_found")
        answer = api.post(f"/v1/jobs/{job['id']}/webhook/redeliver")
        assert answer.status_code == 202, answer.text
        deadline = time.monotonic() + 30
        while len(receiver.for_job(job["id"])) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        events = receiver.for_job(job["id"])
    finally:
        receiver.stop()
    assert len(events) == 2 and all(event.verified for event in events)
    assert events[1].headers["webhook-id"] == first.headers["webhook-id"]
    without_hook = api.post("/v1/jobs", json=job_line()).json()
    wait_ended(api, without_hook["id"])
    assert_problem(api.post(f"/v1/jobs/{without_hook['id']}/webhook/redeliver"), 422, "invalid_request")


def test_providers_shows_each_providers_limits(api_url: str, pipeline_env: dict[str, str]) -> None:
    rows = client(api_url, make_key(pipeline_env)).get("/v1/providers").json()
    by_name = {row["provider"]: row for row in rows}
    assert {"sandbox", "capped", "vicsee"} <= set(by_name)
    assert by_name["capped"]["max_in_flight"] == 1 and by_name["sandbox"]["breaker"] == "closed"
    assert_problem(httpx.get(f"{api_url}/v1/providers"), 401, "unauthorized")


def test_a_batch_body_past_the_bound_is_413_before_it_is_read(api_url: str, pipeline_env: dict[str, str]) -> None:
    from producer.http_api.batches import MAX_BODY_BYTES

    api = client(api_url, make_key(pipeline_env))
    answer = api.post("/v1/batches", params={"name": "huge"}, content=b"x" * (MAX_BODY_BYTES + 1))
    assert "at most 64 MiB" in assert_problem(answer, 413, "invalid_request")["detail"]


def test_prefer_wait_answers_when_its_time_runs_out(
    api_url: str, pipeline_env: dict[str, str], sandbox_url: str, workers: ServerProcess
) -> None:
    api = client(api_url, make_key(pipeline_env))
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 8.0})
    try:
        answer = api.post("/v1/jobs", json=job_line(), headers={"Prefer": "respond-async, wait=1"})
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    assert answer.status_code == 201 and answer.headers["preference-applied"] == "wait=1"
    assert answer.json()["status"] not in ("succeeded", "failed", "canceled")  # answered before the job ended


def test_a_malformed_idempotency_key_is_refused_and_stores_nothing(api_url: str, pipeline_env: dict[str, str]) -> None:
    api = client(api_url, make_key(pipeline_env))
    before = api.get("/v1/jobs").json()["data"]
    answer = api.post("/v1/jobs", json=job_line(), headers={"Idempotency-Key": "has spaces in it"})
    assert "Idempotency-Key must be 1-255 printable ASCII" in assert_problem(answer, 422, "invalid_request")["detail"]
    assert api.get("/v1/jobs").json()["data"] == before
    not_json = api.post("/v1/jobs", content=b"provider=sandbox", headers={"Content-Type": "text/plain"})
    detail = assert_problem(not_json, 422, "invalid_request")["detail"]
    assert detail == "the body must be a JSON object, sent with Content-Type: application/json"
