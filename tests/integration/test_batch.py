"""Batches through real workers and the dispatcher (celery beat): submit, resume, schedule, budget, report, retry."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from infra.local.processes import ServerProcess
from infra.local.webhook_receiver import WebhookReceiver
from producer.api import Producer
from producer.batch import BatchProducer
from shared.models import Job
from shared.settings import Settings
from tests.integration.conftest import settings_for
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

#: jobs of the batch an interactive job must not wait behind
BUSY_JOBS = 24


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def image_line(n: int, **extra: Any) -> dict[str, Any]:
    return {"provider": "sandbox", "model": "sandbox-image", "prompt": f"picture {n}", **extra}


def wait_ended(env: dict[str, str], name: str, timeout: float = 90) -> dict[str, Any]:
    """`batch status NAME --json` once the batch has completed. The wait reads the batch in-process, as the command
    does (BatchProducer.summary), instead of starting a `genqueue` process every half second; the summary returned
    is the command's."""
    batches = BatchProducer(Producer(settings_for(env)))
    deadline = time.monotonic() + timeout
    summary: dict[str, Any] = {}
    while time.monotonic() < deadline:
        batch = batches.batches.get_by_name(name)
        assert batch is not None, f"no batch {name}"
        summary = batches.summary(batch)
        if summary["completed_at"]:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"batch {name} did not complete: {summary}")
    result = run_cli(env, "batch", "status", name, "--json")
    assert result.returncode == 0, result.stderr
    final: dict[str, Any] = json.loads(result.stdout)
    assert final["completed_at"], final
    return final


def report(env: dict[str, str], name: str) -> list[dict[str, Any]]:
    result = run_cli(env, "batch", "report", name, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def sandbox_submits(sandbox_url: str) -> int:
    return int(httpx.get(f"{sandbox_url}/_control/stats").json()["submits"].get("sandbox", 0))


def test_a_batch_runs_to_the_end_with_report_and_completion_webhook(
    workers: ServerProcess, pipeline_env: dict[str, str], receiver: WebhookReceiver, tmp_path: Path
) -> None:
    name = f"overnight-{uuid.uuid4().hex[:6]}"
    lines = [image_line(n) for n in range(5)] + [
        {"provider": "vicsee", "model": "sora-2", "prompt": "a flower", "options": {"duration": 10}},
    ]
    path = write_jsonl(tmp_path / "jobs.jsonl", lines)
    result = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--webhook", receiver.url)
    assert result.returncode == 0, result.stderr
    assert "6 jobs enqueued" in result.stdout
    summary = wait_ended(pipeline_env, name)
    assert summary["counts"] == {"succeeded": 6}
    assert summary["cost"]["credits"] == 5 * 1 + 20  # sandbox-image 1 credit each, vicsee sora-2 20
    jobs = report(pipeline_env, name)
    assert [job["model"] for job in jobs] == ["sandbox-image"] * 5 + ["sora-2"]  # the file's line order
    assert all(job["status"] == "succeeded" and job["outputs"] and job["batch_id"] == summary["id"] for job in jobs)
    event = receiver.wait_for(summary["id"])
    assert event.verified and event.body["type"] == "batch.completed"
    assert event.body["data"]["counts"] == {"succeeded": 6} and event.body["data"]["name"] == name
    job_events = [receiver.wait_for(job["id"]) for job in jobs]  # the batch's webhook serves its jobs too
    assert all(e.body["type"] == "job.succeeded" for e in job_events)
    rows = list(csv.DictReader(io.StringIO(run_cli(pipeline_env, "batch", "report", name, "--format", "csv").stdout)))
    assert [row["line"] for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert all(row["outputs"].startswith("s3://") for row in rows)


def test_a_file_with_bad_lines_is_refused_whole_with_line_numbers(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        json.dumps(image_line(1))
        + "\n{not json\n"
        + json.dumps({"provider": "sandbox", "model": "no-such-model", "prompt": "x"})
        + "\n\n"
        + json.dumps(image_line(4, webhook="ftp://example.com/hooks"))
        + "\n"
        + json.dumps(image_line(5))
        + "\n"
    )
    name = f"mixed-{uuid.uuid4().hex[:6]}"
    before = set(redis.Redis.from_url(settings.redis_url).scan_iter("genqueue:job:*"))
    result = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name)
    assert result.returncode == 2
    errors = result.stderr.splitlines()
    assert errors[0].startswith(f"{path}:2: not JSON")
    assert errors[1].startswith(f"{path}:3: ") and "no-such-model" in errors[1]
    assert errors[2].startswith(f"{path}:5: ") and "webhook" in errors[2]
    assert errors[-1] == "genqueue: error: 3 of 5 lines refused; nothing enqueued"
    after = set(redis.Redis.from_url(settings.redis_url).scan_iter("genqueue:job:*"))
    assert after == before
    assert run_cli(pipeline_env, "batch", "status", name).returncode == 2  # no batch was made

    skipped = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--skip-invalid")
    assert skipped.returncode == 0, skipped.stderr
    assert "2 jobs enqueued, 3 lines skipped" in skipped.stdout
    assert wait_ended(pipeline_env, name)["counts"] == {"succeeded": 2}


def test_dry_run_prints_the_cost_and_enqueues_nothing(
    workers: ServerProcess, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    lines = [image_line(n) for n in range(3)] + [
        {"provider": "veo3api", "model": "veo3_fast", "prompt": "x"},
    ]
    path = write_jsonl(tmp_path / "plan.jsonl", lines)
    name = f"plan-{uuid.uuid4().hex[:6]}"
    result = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--dry-run")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert rows["sandbox"][:2] == ["3", "3"]  # 3 jobs, 3 credits
    assert rows["total"][0] == "4"
    assert run_cli(pipeline_env, "batch", "status", name).returncode == 2


def test_the_same_file_under_the_same_name_resumes_without_enqueueing_twice(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    name = f"resume-{uuid.uuid4().hex[:6]}"
    path = write_jsonl(tmp_path / "resume.jsonl", [image_line(n) for n in range(4)])
    first = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name)
    assert "4 jobs enqueued" in first.stdout
    write_jsonl(path, [image_line(n) for n in range(6)])  # the run was cut short: two more lines now
    again = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name)
    assert again.returncode == 0, again.stderr
    assert "resumed: 2 jobs enqueued, 4 already enqueued before" in again.stdout
    summary = wait_ended(pipeline_env, name)
    assert summary["total"] == 6 and summary["counts"] == {"succeeded": 6}
    changed = write_jsonl(path, [image_line(n + 100) for n in range(6)])
    refused = run_cli(pipeline_env, "batch", "submit", str(changed), "--name", name)
    assert refused.returncode == 2 and "line 1" in refused.stderr and "changed" in refused.stderr


def test_not_before_holds_the_batch_back(
    workers: ServerProcess, pipeline_env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    name = f"later-{uuid.uuid4().hex[:6]}"
    path = write_jsonl(tmp_path / "later.jsonl", [image_line(n) for n in range(2)])
    before = sandbox_submits(sandbox_url)
    started = time.monotonic()
    assert run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--not-before", "+4s").returncode == 0
    time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))
    assert sandbox_submits(sandbox_url) == before  # nothing went to the vendor before its time
    summary = wait_ended(pipeline_env, name)
    assert summary["counts"] == {"succeeded": 2}
    assert time.monotonic() - started >= 4.0


def test_jobs_not_submitted_by_the_deadline_end_canceled(
    workers: ServerProcess, pipeline_env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    # `capped` takes one job at a time, each rendering ~0.5 s: twelve cannot all start within 2 s
    name = f"deadline-{uuid.uuid4().hex[:6]}"
    lines = [{"provider": "capped", "model": "sandbox-image", "prompt": f"p{n}"} for n in range(12)]
    path = write_jsonl(tmp_path / "deadline.jsonl", lines)
    assert run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--deadline", "+2s").returncode == 0
    summary = wait_ended(pipeline_env, name)
    counts = summary["counts"]
    assert counts.get("canceled", 0) >= 1 and counts.get("succeeded", 0) >= 1, counts
    assert sum(counts.values()) == 12
    canceled = [job for job in report(pipeline_env, name) if job["status"] == "canceled"]
    assert all("deadline" in job["error"]["message"] and job["provider_task_id"] is None for job in canceled)


def test_a_budget_is_never_passed_and_the_rest_end_budget_exhausted(
    workers: ServerProcess, pipeline_env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    name = f"budget-{uuid.uuid4().hex[:6]}"
    path = write_jsonl(tmp_path / "budget.jsonl", [image_line(n) for n in range(5)])  # 1 credit each
    before = sandbox_submits(sandbox_url)
    result = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--budget-credits", "3")
    assert result.returncode == 0, result.stderr
    summary = wait_ended(pipeline_env, name)
    assert summary["counts"] == {"succeeded": 3, "canceled": 2}
    assert summary["cost"]["credits"] == 3 and summary["committed"] == 3
    assert sandbox_submits(sandbox_url) == before + 3
    canceled = [job for job in report(pipeline_env, name) if job["status"] == "canceled"]
    assert all(job["error"]["message"].startswith("budget_exhausted") for job in canceled)


def test_retry_failed_reenqueues_the_failed_jobs_in_the_same_batch(
    workers: ServerProcess, pipeline_env: dict[str, str], sandbox_url: str, tmp_path: Path
) -> None:
    name = f"retry-{uuid.uuid4().hex[:6]}"
    lines = [image_line(n, prompt=f"{name} picture {n}") for n in range(4)]
    for line in lines[:2]:  # picked by prompt: other tests' jobs reach the same sandbox meanwhile
        failure = {"count": 1, "dialect": "sandbox", "prompt": line["prompt"]}
        httpx.post(f"{sandbox_url}/_control/fail_next", json=failure).raise_for_status()
    path = write_jsonl(tmp_path / "retry.jsonl", lines)
    assert run_cli(pipeline_env, "batch", "submit", str(path), "--name", name).returncode == 0
    assert wait_ended(pipeline_env, name)["counts"] == {"succeeded": 2, "failed": 2}
    retried = run_cli(pipeline_env, "batch", "retry", name, "--failed")
    assert retried.returncode == 0 and "2 failed jobs re-enqueued" in retried.stdout, retried.stderr
    summary = wait_ended(pipeline_env, name)
    assert summary["total"] == 6 and summary["counts"] == {"succeeded": 4, "failed": 2}
    jobs = report(pipeline_env, name)
    retry_of = {job["metadata"].get("genqueue_retry_of") for job in jobs[4:]}
    assert retry_of == {job["id"] for job in jobs[:4] if job["status"] == "failed"}
    again = run_cli(pipeline_env, "batch", "retry", name, "--failed")
    assert "0 failed jobs re-enqueued" in again.stdout  # each failure is retried once


def test_an_interactive_job_starts_during_a_batch(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    # `throttled` allows 2 submits a second: 24 batch jobs take ~12 s; the interactive one must not wait for them
    # (it may wait a capacity recheck or two, GENQUEUE_CAPACITY_RECHECK_SECONDS: 1 s each in FAST_SETTINGS; at the
    # default 5 s, 20 batch jobs, ~10 s, left too little room for that on a busy machine)
    name = f"busy-{uuid.uuid4().hex[:6]}"
    lines = [{"provider": "throttled", "model": "sandbox-image", "prompt": f"p{n}"} for n in range(BUSY_JOBS)]
    assert run_cli(pipeline_env, "batch", "submit", str(write_jsonl(tmp_path / "b.jsonl", lines)), "--name", name)
    time.sleep(1.0)
    producer = Producer(settings)
    job = producer.submit("throttled", "sandbox-image", "interactive")
    final: Job = producer.wait(job.id, timeout=60)
    assert final.status.value == "succeeded" and final.submit_started_at is not None
    assert wait_ended(pipeline_env, name)["counts"] == {"succeeded": BUSY_JOBS}
    # sent while the batch was still being paced out, not after it: by the vendor-call times, which a busy machine
    # shifts for both alike (the time the interactive job ended would depend on how fast this machine runs)
    batch_starts = [producer.get(line["id"]).submit_started_at for line in report(pipeline_env, name)]
    later = sum(1 for started in batch_starts if started is not None and started > final.submit_started_at)
    print(f"interactive job during a batch: {later} of {BUSY_JOBS} batch jobs were sent after it")
    assert later >= BUSY_JOBS // 4, f"only {later} of {BUSY_JOBS} batch jobs were sent after the interactive one"


def test_a_csv_batch_and_watching_it_to_the_end(
    workers: ServerProcess, pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(
        "provider,model,prompt,options,metadata\n"
        'sandbox,sandbox-video,a wave,"{""duration"": 2}","{""row"": ""1""}"\n'
        "sandbox,sandbox-image,a cat,,\n"
    )
    name = f"csv-{uuid.uuid4().hex[:6]}"
    result = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name)
    assert result.returncode == 0 and "2 jobs enqueued" in result.stdout, result.stderr
    watched = run_cli(pipeline_env, "batch", "status", name, "--watch", timeout=90)
    assert watched.returncode == 0, watched.stderr
    assert watched.stdout.startswith(f"{name}: 2/2 ended") and "succeeded 2" in watched.stdout
    assert "cost 3 credits" in watched.stdout  # 2 s of sandbox-video at 1 credit/s, and one image
    jobs = report(pipeline_env, name)
    assert jobs[0]["metadata"] == {"row": "1"} and jobs[0]["model"] == "sandbox-video"
