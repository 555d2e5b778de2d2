"""One model across providers through real workers and the sandbox (shared/decisions/route.py).

sora-2 is sold by VicSee (20 credits at 10 s, $0.01 a credit here: $0.20) and VeoGen ($0.15 by the price setting
of pipeline_env). Each test says where its jobs went and checks that no job was submitted twice anywhere.
"""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.processes import ServerProcess
from producer.api import Producer
from shared.models import Job
from shared.protection import ProviderGuard
from shared.settings import Settings
from tests.integration.test_batch import wait_ended as batch_wait_ended
from tests.integration.test_http_api import assert_problem, client, make_key, wait_ended
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration


def stats(sandbox_url: str) -> dict[str, Any]:
    return httpx.get(f"{sandbox_url}/_control/stats").json()


def grew(before: dict[str, Any], after: dict[str, Any], figure: str, dialect: str) -> int:
    return int(after[figure].get(dialect, 0)) - int(before[figure].get(dialect, 0))


@pytest.fixture
def producer(settings: Settings) -> Iterator[Producer]:
    client = Producer(settings)
    yield client
    for name in ("vicsee", "veogen"):  # a test that held or tripped a provider leaves it as it found it
        client.resume_provider(name)


def routed(producer: Producer, prompt: str, policy: str = "preferred", **options: object) -> Job:
    job = producer.submit("auto", "sora-2", prompt, {"duration": 10, **options}, route_policy=policy)
    final = producer.wait(job.id, timeout=60)
    assert final.status.value == "succeeded", final.error
    assert final.route is not None
    return final


def test_cheapest_picks_the_cheaper_provider_as_catalog_and_credit_price_say(
    workers: ServerProcess, producer: Producer, sandbox_url: str
) -> None:
    before = stats(sandbox_url)
    final = routed(producer, "cheapest of two", policy="cheapest")
    assert (final.provider, final.model) == ("veogen", "sora-2")
    assert final.route is not None
    assert {c.provider: c.estimate_usd for c in final.route.candidates} == {"vicsee": 0.2, "veogen": 0.15}
    after = stats(sandbox_url)
    assert (grew(before, after, "submit_attempts", "veogen"), grew(before, after, "submit_attempts", "vicsee")) == (
        1,
        0,
    )
    assert after["duplicate_submits"] == before["duplicate_submits"]


def test_a_429_storm_on_one_provider_sends_jobs_to_the_other_once_each(
    workers: ServerProcess, producer: Producer, sandbox_url: str
) -> None:
    jobs = 3
    httpx.post(
        f"{sandbox_url}/_control/faults",
        json={"target": "submit", "dialect": "vicsee", "status": 429, "retry_after": 30, "count": jobs},
    )
    before = stats(sandbox_url)
    started = time.monotonic()
    finals = [routed(producer, f"storm {index}") for index in range(jobs)]
    after = stats(sandbox_url)
    assert time.monotonic() - started < 30  # not one waited out the Retry-After: each moved on at once
    assert {final.provider for final in finals} == {"veogen"}
    for final in finals:
        assert final.route is not None
        assert [(f.provider, f.code) for f in final.route.failovers] == [("vicsee", "rate_limited")]
    assert grew(before, after, "submit_attempts", "vicsee") == jobs  # the 429s
    assert grew(before, after, "submits", "vicsee") == 0
    assert grew(before, after, "submits", "veogen") == jobs
    assert after["duplicate_submits"] == before["duplicate_submits"]


def test_credits_out_on_one_provider_sends_jobs_to_the_other(
    workers: ServerProcess, producer: Producer, sandbox_url: str
) -> None:
    httpx.post(f"{sandbox_url}/_control/balance", json={"dialect": "vicsee", "balance": 0})
    try:
        before = stats(sandbox_url)
        first = routed(producer, "vicsee is broke")
        second = routed(producer, "vicsee is still on hold")
        after = stats(sandbox_url)
    finally:
        httpx.post(f"{sandbox_url}/_control/balance", json={"dialect": "vicsee", "balance": 1_000_000_000})
    assert (first.provider, second.provider) == ("veogen", "veogen")
    assert first.route is not None and second.route is not None
    assert [(f.provider, f.code) for f in first.route.failovers] == [("vicsee", "insufficient_credits")]
    # the second is passed over at choice, with its reason, and never sent to VicSee
    assert second.route.failovers == []
    vicsee = next(c for c in second.route.candidates if c.provider == "vicsee")
    assert vicsee.skipped is not None and vicsee.skipped.startswith("credits on hold since")
    assert grew(before, after, "submit_attempts", "vicsee") == 1
    assert grew(before, after, "submits", "veogen") == 2
    assert after["duplicate_submits"] == before["duplicate_submits"]


def test_an_open_breaker_sends_jobs_to_the_other(
    workers: ServerProcess, producer: Producer, settings: Settings, sandbox_url: str
) -> None:
    config = settings.provider("vicsee")
    guard = ProviderGuard(producer.store.redis)
    for _ in range(config.limits.breaker_threshold):
        guard.record_failure(config, time.time())
    before = stats(sandbox_url)
    final = routed(producer, "vicsee's breaker is open")
    after = stats(sandbox_url)
    assert final.provider == "veogen"
    assert final.route is not None
    vicsee = next(c for c in final.route.candidates if c.provider == "vicsee")
    assert vicsee.skipped is not None and vicsee.skipped.startswith("breaker open for")
    assert grew(before, after, "submit_attempts", "vicsee") == 0
    assert after["duplicate_submits"] == before["duplicate_submits"]


def test_a_request_only_one_provider_can_honour_goes_only_there(
    workers: ServerProcess, producer: Producer, sandbox_url: str
) -> None:
    before = stats(sandbox_url)
    final = routed(producer, "a style preset", style="anime")
    after = stats(sandbox_url)
    assert final.provider == "veogen"
    assert final.route is not None
    vicsee = next(c for c in final.route.candidates if c.provider == "vicsee")
    assert vicsee.skipped is not None and "'style'" in vicsee.skipped
    assert grew(before, after, "submit_attempts", "vicsee") == 0


def test_with_nothing_in_the_way_the_preferred_provider_takes_the_job(
    workers: ServerProcess, producer: Producer, sandbox_url: str
) -> None:
    final = routed(producer, "vicsee first")
    assert (final.provider, final.model) == ("vicsee", "sora-2")
    assert final.route is not None and final.route.chosen == "vicsee" and final.route.policy == "preferred"
    assert final.public()["route"]["chosen"] == "vicsee"


def test_the_command_line_routes_and_status_shows_the_choice(
    workers: ServerProcess, pipeline_env: dict[str, str], sandbox_url: str
) -> None:
    submitted = run_cli(
        pipeline_env,
        "submit",
        "--provider",
        "auto",
        "--model",
        "sora-2",
        "--prompt",
        "a flower opening",
        "--option",
        "duration=10",
        "--wait",
        "--json",
    )
    assert submitted.returncode == 0, submitted.stderr + submitted.stdout
    job = json.loads(submitted.stdout)
    assert (job["status"], job["provider"], job["route"]["policy"], job["route"]["chosen"]) == (
        "succeeded",
        "veogen",
        "cheapest",
        "veogen",
    )
    shown = run_cli(pipeline_env, "status", job["id"])
    assert shown.returncode == 0, shown.stderr
    assert "route: sora-2, cheapest, chose veogen" in shown.stdout
    lines = {line.strip().split(":")[0]: line for line in shown.stdout.splitlines() if "/sora-2: $" in line}
    assert lines["vicsee/sora-2"].startswith("    vicsee/sora-2: $0.2") and lines["vicsee/sora-2"].endswith(
        ": eligible"
    )
    assert lines["veogen/sora-2"].startswith("    veogen/sora-2: $0.15") and lines["veogen/sora-2"].endswith(": chosen")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provider", "auto", "--model", "sandbox-image"], "model 'sandbox-image' has no route across providers"),
        (["--provider", "vicsee,gateway", "--model", "sora-2"], "provider 'gateway' does not sell sora-2"),
        (["--provider", "auto", "--model", "sora-2", "--route-policy", "slowest"], "route policy 'slowest'"),
        (["--provider", "auto", "--model", "sora-2", "--option", "duration=25"], "no provider of route sora-2"),
    ],
)
def test_a_route_that_cannot_be_taken_is_refused_in_one_line(
    pipeline_env: dict[str, str], args: list[str], message: str
) -> None:
    result = run_cli(pipeline_env, "submit", "--prompt", "p", *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_http_api_routes_a_job_and_shows_its_route(
    api_url: str, pipeline_env: dict[str, str], workers: ServerProcess
) -> None:
    api = client(api_url, make_key(pipeline_env))
    line = {"provider": "vicsee,veogen", "model": "sora-2", "prompt": "over http", "options": {"duration": 10}}
    answer = api.post("/v1/jobs", json={**line, "route_policy": "preferred"})
    assert answer.status_code == 201, answer.text
    ended = wait_ended(api, answer.json()["id"])
    assert ended["status"] == "succeeded" and ended["provider"] == "vicsee"
    assert ended["route"]["providers"] == ["vicsee", "veogen"] and ended["route"]["chosen"] == "vicsee"


def test_a_key_with_a_budget_cannot_route_yet(api_url: str, pipeline_env: dict[str, str]) -> None:
    result = run_cli(pipeline_env, "keys", "create", f"routed-{uuid.uuid4().hex[:8]}", "--budget-usd", "5", "--json")
    assert result.returncode == 0, result.stderr
    api = client(api_url, json.loads(result.stdout))
    line = {"provider": "auto", "model": "sora-2", "prompt": "budgeted", "options": {"duration": 10}}
    refused = assert_problem(api.post("/v1/jobs", json=line), 422, "invalid_request")
    assert refused["detail"] == "a key with a budget cannot send jobs to auto or a provider list; name one"
    upload = api.post("/v1/batches", params={"name": "budgeted"}, content=json.dumps(line) + "\n")
    refused = assert_problem(upload, 422, "invalid_request")
    assert refused["errors"][0]["detail"] == "a key with a budget cannot send jobs to auto or a provider list; name one"


def test_a_batch_uploaded_over_http_may_name_a_route(
    api_url: str, pipeline_env: dict[str, str], workers: ServerProcess
) -> None:
    api = client(api_url, make_key(pipeline_env))
    name = f"routed-{uuid.uuid4().hex[:6]}"
    lines = [
        {"provider": "vicsee,veogen", "model": "sora-2", "prompt": f"{name} {n}", "options": {"duration": 10}}
        for n in range(3)
    ]
    upload = api.post("/v1/batches", params={"name": name}, content="".join(json.dumps(line) + "\n" for line in lines))
    assert upload.status_code == 201, upload.text
    deadline = time.monotonic() + 60
    while not api.get(f"/v1/batches/{name}").json()["completed_at"]:
        assert time.monotonic() < deadline, "the batch did not complete"
        time.sleep(0.3)
    jobs = [json.loads(row) for row in api.get(f"/v1/batches/{name}/report").text.splitlines()]
    assert {job["status"] for job in jobs} == {"succeeded"}
    assert all(job["route"]["providers"] == ["vicsee", "veogen"] for job in jobs)
    assert all(job["provider"] == job["route"]["chosen"] for job in jobs)


def test_a_batch_sent_to_a_route_spreads_over_its_providers_within_a_usd_budget(
    workers: ServerProcess, pipeline_env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    """Both providers take 5 submits a second (burst 10): the dispatcher releases at the two paces added up, each
    submit goes to VeoGen (cheaper) while its rate allows and to VicSee when not. Committed against the budget:
    what VeoGen charged in USD, and VicSee's 20 credits a job at $0.01."""
    name = f"routed-{uuid.uuid4().hex[:6]}"
    lines = [
        {"provider": "auto", "model": "sora-2", "prompt": f"{name} {n}", "options": {"duration": 10}} for n in range(24)
    ]
    path = tmp_path / "routed.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    before = stats(sandbox_url)
    submitted = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--budget-usd", "10")
    assert submitted.returncode == 0, submitted.stderr
    summary = batch_wait_ended(pipeline_env, name)
    after = stats(sandbox_url)
    assert summary["counts"] == {"succeeded": 24}
    report = run_cli(pipeline_env, "batch", "report", name, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    went = Counter(row["provider"] for row in rows)
    assert set(went) == {"veogen", "vicsee"}, went
    assert all(row["route"].startswith(f"sora-2 cheapest: {row['provider']}") for row in rows), rows[0]["route"]
    taken = grew(before, after, "submits", "veogen") + grew(before, after, "submits", "vicsee")
    assert taken == 24 and after["duplicate_submits"] == before["duplicate_submits"]
    # what each job was charged (VeoGen's sandbox reports its own figure, not the price setting's estimate)
    usd = sum(float(row["cost_usd"] or 0) for row in rows)
    credits = sum(float(row["cost_credits"] or 0) for row in rows)
    assert credits == 20 * went["vicsee"] and usd > 0
    assert summary["cost"] == {"credits": credits, "usd": pytest.approx(usd)}
    assert summary["committed"] == pytest.approx(usd + 0.01 * credits)  # VicSee's credits at $0.01
