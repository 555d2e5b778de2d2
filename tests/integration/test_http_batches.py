"""Batches over HTTP through a real `genqueue api`, real workers and beat's dispatcher, and the sandbox."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from infra.local.processes import ServerProcess
from tests.integration.test_http_api import assert_problem, client, make_key

pytestmark = pytest.mark.integration

NDJSON = {"Content-Type": "application/x-ndjson"}


def body(*lines: dict[str, Any]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def image(n: int) -> dict[str, Any]:
    return {"provider": "sandbox", "model": "sandbox-image", "prompt": f"picture {n}", "metadata": {"n": n}}


def wait_completed(api: httpx.Client, name: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        summary: dict[str, Any] = api.get(f"/v1/batches/{name}").json()
        if summary["completed_at"]:
            return summary
        time.sleep(0.3)
    raise AssertionError(f"batch {name} did not complete")


def test_a_batch_uploaded_runs_reports_and_is_the_keys_alone(
    api_url: str, pipeline_env: dict[str, str], workers: ServerProcess
) -> None:
    api, other = client(api_url, make_key(pipeline_env)), client(api_url, make_key(pipeline_env))
    name = f"night-{uuid.uuid4().hex[:6]}"
    made = api.post("/v1/batches", params={"name": name, "budget_credits": 10}, content=body(*map(image, range(3))))
    assert made.status_code == 201, made.text
    assert made.json()["name"] == name and made.json()["total"] == 3 and made.headers["location"].endswith(name)
    summary = wait_completed(api, name)
    assert summary["counts"] == {"succeeded": 3} and summary["cost"]["credits"] == 3
    report = api.get(f"/v1/batches/{name}/report").text.splitlines()
    assert [json.loads(row)["metadata"]["n"] for row in report] == ["0", "1", "2"]  # the file's line order
    rows = list(csv.DictReader(io.StringIO(api.get(f"/v1/batches/{name}/report", params={"format": "csv"}).text)))
    assert [row["line"] for row in rows] == ["1", "2", "3"] and {row["status"] for row in rows} == {"succeeded"}
    # the jobs are the key's: listed by batch, and not another key's to see
    listed = api.get("/v1/jobs", params={"batch": name}).json()["data"]
    assert sorted(job["metadata"]["n"] for job in listed) == ["0", "1", "2"]
    for path in (f"/v1/batches/{name}", f"/v1/batches/{name}/report", f"/v1/jobs/{listed[0]['id']}"):
        assert_problem(other.get(path), 404, "not_found")
    assert_problem(other.post(f"/v1/batches/{name}/retry"), 404, "not_found")
    # the same name under another key is another batch
    theirs = other.post("/v1/batches", params={"name": name}, content=body(image(9)))
    assert theirs.status_code == 201 and theirs.json()["id"] != made.json()["id"]


def test_a_batch_with_a_bad_line_is_refused_whole_naming_the_line(api_url: str, pipeline_env: dict[str, str]) -> None:
    api = client(api_url, make_key(pipeline_env))
    name = f"bad-{uuid.uuid4().hex[:6]}"
    lines = body(image(1), {"provider": "nosuch", "model": "m", "prompt": "x"}) + "{not json\n"
    refused = api.post("/v1/batches", params={"name": name}, content=lines, headers=NDJSON)
    problem = assert_problem(refused, 422, "invalid_request")
    assert problem["detail"] == "2 of 3 lines refused; nothing enqueued"
    assert [entry["line"] for entry in problem["errors"]] == [2, 3]
    assert "unknown provider 'nosuch'" in problem["errors"][0]["detail"]
    assert_problem(api.get(f"/v1/batches/{name}"), 404, "not_found")  # nothing enqueued
    plan = api.post("/v1/batches", params={"name": name, "dry_run": True}, content=lines)
    assert plan.status_code == 200 and plan.json()["jobs"] == 1 and len(plan.json()["refused"]) == 2
    assert plan.json()["providers"] == {"sandbox": {"jobs": 1, "credits": 1.0, "usd": None}}
    assert_problem(api.get(f"/v1/batches/{name}"), 404, "not_found")  # a dry run enqueues nothing either
    skipped = api.post("/v1/batches", params={"name": name, "skip_invalid": True}, content=lines)
    assert skipped.status_code == 201 and skipped.json()["total"] == 1


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"name": "no spaces please"}, "name:"),
        ({"name": "ok", "budget_usd": 1, "budget_credits": 1}, "not both"),
        ({"name": "ok", "not_before": "whenever"}, "not_before 'whenever'"),
        ({"name": "ok", "not_before": "+2h", "deadline": "+1h"}, "deadline must come after not_before"),
    ],
)
def test_batch_options_are_checked_before_anything_is_stored(
    api_url: str, pipeline_env: dict[str, str], params: dict[str, Any], detail: str
) -> None:
    answer = client(api_url, make_key(pipeline_env)).post("/v1/batches", params=params, content=body(image(1)))
    assert detail in assert_problem(answer, 422, "invalid_request")["detail"]


def test_resume_by_name_and_retry_of_failed_jobs(
    api_url: str, pipeline_env: dict[str, str], sandbox_url: str, workers: ServerProcess
) -> None:
    api = client(api_url, make_key(pipeline_env))
    name = f"resume-{uuid.uuid4().hex[:6]}"
    one, two = ({**image(n), "prompt": f"{name} picture {n}"} for n in (1, 2))
    # the failure is picked by prompt: other tests' jobs reach the same sandbox meanwhile
    failure = {"count": 1, "reason": "nsfw", "dialect": "sandbox", "prompt": one["prompt"]}
    httpx.post(f"{sandbox_url}/_control/fail_next", json=failure)
    first = api.post("/v1/batches", params={"name": name}, content=body(one))
    assert first.status_code == 201
    wait_completed(api, name)
    again = api.post("/v1/batches", params={"name": name}, content=body(one, two))
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"] and again.json()["total"] == 2
    summary = wait_completed(api, name)
    assert summary["counts"] == {"failed": 1, "succeeded": 1}
    retried = api.post(f"/v1/batches/{name}/retry")
    assert retried.status_code == 200 and retried.json()["retried"] == 1
    assert wait_completed(api, name)["counts"] == {"failed": 1, "succeeded": 2}


def test_a_batch_that_would_pass_the_keys_budget_is_refused(api_url: str, pipeline_env: dict[str, str]) -> None:
    from tests.integration.test_pipeline import run_cli

    result = run_cli(pipeline_env, "keys", "create", f"small-{uuid.uuid4().hex[:6]}", "--budget-credits", "2", "--json")
    api = client(api_url, json.loads(result.stdout))
    refused = api.post("/v1/batches", params={"name": "too-big"}, content=body(*map(image, range(3))))
    problem = assert_problem(refused, 422, "invalid_request")
    [entry] = problem["errors"]
    assert entry["line"] == 0 and entry["detail"].startswith("budget_exhausted: the batch's estimated 3 credits")
    assert_problem(api.get("/v1/batches/too-big"), 404, "not_found")


def test_a_batch_line_naming_a_file_of_the_servers_is_refused(api_url: str, pipeline_env: dict[str, str]) -> None:
    api = client(api_url, make_key(pipeline_env))
    lines = body(image(1), {**image(2), "images": ["/etc/hostname"]})
    problem = assert_problem(api.post("/v1/batches", params={"name": "files"}, content=lines), 422, "invalid_request")
    [entry] = problem["errors"]
    assert entry["line"] == 2 and "give an http(s) URL or a data: URI" in entry["detail"]


def test_a_batch_body_that_is_not_text_or_holds_no_line_is_refused(api_url: str, pipeline_env: dict[str, str]) -> None:
    api = client(api_url, make_key(pipeline_env))
    binary = api.post("/v1/batches", params={"name": "binary"}, content=b"\xff\xfe\x00")
    assert assert_problem(binary, 422, "invalid_request")["detail"] == "the body is not UTF-8 text"
    empty = api.post("/v1/batches", params={"name": "empty"}, content=b"\n\n")
    assert assert_problem(empty, 422, "invalid_request")["detail"] == "the body holds no jobs"
    assert_problem(api.get("/v1/batches/binary"), 404, "not_found")
