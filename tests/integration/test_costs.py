"""Cost as a record, through real workers and the sandbox: what each job was charged by its vendor's rule, how a
batch budget counts it, and a cancel that keeps the vendor's in-flight limit until the vendor's task ends."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.processes import ServerProcess
from infra.local.webhook_receiver import WebhookReceiver
from producer.api import Producer
from shared.batch import BatchStore
from shared.models import Job, JobStatus
from shared.settings import Settings
from tests.integration.conftest import settings_for
from tests.integration.test_batch import report, wait_ended, write_jsonl
from tests.integration.test_pipeline import run_cli

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def veogen_line(n: int) -> dict[str, Any]:
    # grok-video-1 bills $0.03 a second (document 002), so 6 s is $0.18, estimate and charge alike
    return {"provider": "veogen", "model": "grok-video-1", "prompt": f"clip {n}", "options": {"duration": 6}}


def charges(sandbox_url: str) -> dict[str, dict[str, Any]]:
    """The sandbox's record of what each accepted task bills, by task id."""
    rows = httpx.get(f"{sandbox_url}/_control/charges").json()
    return {row["task_id"]: row for row in rows}


def in_flight(env: dict[str, str], provider: str, cli: bool = False) -> int:
    """The provider's in-flight count as `genqueue provider status` reads it (Producer.provider_status); with `cli`,
    from the command's --json output (a `genqueue` process each time: the last check of two tests reads it so)."""
    if not cli:
        [status] = [row for row in Producer(settings_for(env)).provider_status() if row.provider == provider]
        return status.in_flight
    result = run_cli(env, "provider", "status", "--json")
    assert result.returncode == 0, result.stderr
    [row] = [row for row in json.loads(result.stdout) if row["provider"] == provider]
    return int(row["in_flight"])


def wait_until(check: Any, timeout: float = 30.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def test_a_failed_veogen_generation_is_not_charged(
    workers: ServerProcess, settings: Settings, sandbox_url: str
) -> None:
    httpx.post(f"{sandbox_url}/_control/fail_next", json={"count": 1, "reason": "nsfw", "dialect": "veogen"})
    producer = Producer(settings)
    line = veogen_line(0)
    job = producer.submit("veogen", line["model"], line["prompt"], line["options"])
    final = producer.wait(job.id, timeout=60)
    assert final.status is JobStatus.FAILED and final.error is not None
    assert final.error.code == "generation_failed"
    assert final.charge.reported.usd == pytest.approx(0.18)  # the submit's price_usd is kept in the record
    public = final.public()
    assert public["charged"] == "no" and public["cost"] == {"credits": None, "usd": 0.0}
    assert final.provider_task_id is not None
    assert charges(sandbox_url)[final.provider_task_id]["billed"] == 0.0


def test_a_usd_budget_counts_nothing_for_a_failed_veogen_job(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, sandbox_url: str, tmp_path: Path
) -> None:
    # room for two $0.18 jobs: the third runs only if the failed one gives its reservation back in full
    httpx.post(f"{sandbox_url}/_control/fail_next", json={"count": 1, "reason": "nsfw", "dialect": "veogen"})
    name = f"usd-{uuid.uuid4().hex[:6]}"
    path = write_jsonl(tmp_path / "usd.jsonl", [veogen_line(n) for n in range(3)])
    result = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--budget-usd", "0.36")
    assert result.returncode == 0, result.stderr
    summary = wait_ended(pipeline_env, name)
    assert summary["counts"] == {"succeeded": 2, "failed": 1}
    assert summary["cost"]["usd"] == pytest.approx(0.36) and summary["committed"] == pytest.approx(0.36)
    [failed] = [job for job in report(pipeline_env, name) if job["status"] == "failed"]
    assert failed["charged"] == "no" and failed["cost"]["usd"] == 0.0


def test_a_canceled_submitted_job_keeps_its_slot_until_the_vendor_task_ends(
    workers: ServerProcess,
    pipeline_env: dict[str, str],
    settings: Settings,
    sandbox_url: str,
    receiver: WebhookReceiver,
) -> None:
    producer = Producer(settings)
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 4.0})
    try:
        job = producer.submit("capped", "sandbox-video", "to cancel", {"duration": 3}, webhook_url=receiver.url)
        wait_until(lambda: producer.get(job.id).provider_task_id)
        canceled = producer.cancel(job.id)
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    assert canceled.status is JobStatus.CANCELED and canceled.error is not None
    assert "the vendor was not asked to stop" in canceled.error.message
    assert canceled.public()["charged"] is None
    assert receiver.wait_for(job.id).body["type"] == "job.canceled"
    assert in_flight(pipeline_env, "capped") == 1  # the vendor is still rendering it
    task_id = canceled.provider_task_id
    assert task_id is not None
    ended: Job = wait_until(lambda: (j := producer.get(job.id)).charged is not None and j, timeout=30)
    assert charges(sandbox_url)[task_id]["phase"] == "succeeded"  # it ended at the vendor first
    assert in_flight(pipeline_env, "capped", cli=True) == 0
    assert ended.status is JobStatus.CANCELED and ended.outputs == []
    assert ended.charged == "yes" and ended.cost.credits == charges(sandbox_url)[task_id]["billed"] == 3
    assert ended.step is None
    time.sleep(1.0)
    assert [event.body["type"] for event in receiver.for_job(job.id)] == ["job.canceled"]  # no second webhook


def test_a_canceled_jobs_webhook_retries_while_its_vendor_task_is_followed(
    workers: ServerProcess,
    pipeline_env: dict[str, str],
    settings: Settings,
    sandbox_url: str,
    receiver: WebhookReceiver,
) -> None:
    producer = Producer(settings)
    httpx.post(f"{sandbox_url}/_control/fail_next", json={"count": 1, "reason": "nsfw", "dialect": "veogen"})
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 3.0})
    try:
        line = veogen_line(99)
        job = producer.submit("veogen", line["model"], line["prompt"], line["options"], webhook_url=receiver.url)
        wait_until(lambda: producer.get(job.id).provider_task_id)
        receiver.answer_next(503, count=1)
        canceled = producer.cancel(job.id)
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    assert receiver.wait_for(job.id).body["type"] == "job.canceled"  # delivered on a retry
    ended: Job = wait_until(lambda: (j := producer.get(job.id)).charged is not None and j, timeout=30)
    assert ended.charged == "no" and ended.cost.usd == 0.0  # VeoGen failed it after the cancel: not charged
    assert canceled.provider_task_id is not None
    assert charges(sandbox_url)[canceled.provider_task_id]["billed"] == 0.0
    events = receiver.for_job(job.id)
    assert [event.answered for event in events] == [503, 200]
    assert len({event.headers["webhook-id"] for event in events}) == 1
    assert in_flight(pipeline_env, "veogen", cli=True) == 0


def test_a_job_canceled_during_its_submit_post_keeps_its_slot_and_records_the_vendors_charge(
    workers: ServerProcess,
    pipeline_env: dict[str, str],
    settings: Settings,
    sandbox_url: str,
    receiver: WebhookReceiver,
) -> None:
    """The vendor answers the submit 2 s late and accepts it: the job canceled meanwhile learns its task id from that
    answer, keeps the in-flight slot while the vendor renders, and records what the vendor charged."""
    producer = Producer(settings)
    fault = {"target": "submit", "dialect": "veogen", "delay_seconds": 2.0}
    httpx.post(f"{sandbox_url}/_control/faults", json=fault).raise_for_status()
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 2.0})
    try:
        line = veogen_line(7)
        job = producer.submit("veogen", line["model"], line["prompt"], line["options"], webhook_url=receiver.url)
        wait_until(lambda: producer.get(job.id).submit_started_at)
        canceled = producer.cancel(job.id)
        assert canceled.status is JobStatus.CANCELED and canceled.provider_task_id is None
        assert canceled.charged is None  # not decided while the POST may still be accepted
        assert in_flight(pipeline_env, "veogen") == 1
        accepted: Job = wait_until(lambda: (j := producer.get(job.id)).provider_task_id and j, timeout=15)
        assert accepted.charged is None and in_flight(pipeline_env, "veogen") == 1  # the vendor renders it
        ended: Job = wait_until(lambda: (j := producer.get(job.id)).charged is not None and j, timeout=30)
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    task_id = ended.provider_task_id
    assert task_id is not None and charges(sandbox_url)[task_id]["phase"] == "succeeded"
    assert ended.status is JobStatus.CANCELED and ended.charged == "yes"
    assert ended.cost.usd == pytest.approx(charges(sandbox_url)[task_id]["billed"]) == pytest.approx(0.18)
    assert in_flight(pipeline_env, "veogen") == 0
    assert [event.body["type"] for event in receiver.for_job(job.id)] == ["job.canceled"]


def test_a_job_canceled_during_a_submit_the_vendor_refuses_is_not_charged(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, sandbox_url: str
) -> None:
    producer = Producer(settings)
    fault = {"target": "submit", "dialect": "veogen", "delay_seconds": 2.0, "status": 422}
    httpx.post(f"{sandbox_url}/_control/faults", json=fault).raise_for_status()
    line = veogen_line(8)
    job = producer.submit("veogen", line["model"], line["prompt"], line["options"])
    wait_until(lambda: producer.get(job.id).submit_started_at)
    assert producer.cancel(job.id).charged is None
    ended: Job = wait_until(lambda: (j := producer.get(job.id)).charged is not None and j, timeout=15)
    assert ended.status is JobStatus.CANCELED and ended.provider_task_id is None
    assert ended.charged == "no" and ended.cost.usd == 0.0
    assert in_flight(pipeline_env, "veogen") == 0


def test_a_budgeted_batch_reconciles_to_the_cent_with_the_vendor(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, sandbox_url: str, tmp_path: Path
) -> None:
    """Successes, failures, a cancel mid-render: the ledger equals what the sandbox bills, job by job."""
    name = f"recon-{uuid.uuid4().hex[:6]}"
    balance_before = httpx.get(f"{sandbox_url}/_control/balance").json()["veogen"]
    httpx.post(f"{sandbox_url}/_control/fail_next", json={"count": 2, "reason": "nsfw", "dialect": "veogen"})
    httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 3.0})
    try:
        path = write_jsonl(tmp_path / "recon.jsonl", [veogen_line(n) for n in range(6)])
        result = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--budget-usd", "5")
        assert result.returncode == 0, result.stderr
        producer = Producer(settings)
        batch = BatchStore(producer.store.redis).get_by_name(name)
        assert batch is not None
        ids = [job_id for _, job_id in BatchStore(producer.store.redis).line_jobs(batch.id)]
        # once the vendor renders them all, cancel one it will fail and one it will finish (the sandbox knows
        # which tasks it fails; which jobs those are depends on the order the workers submitted them in)
        tasks = {job_id: wait_until(lambda job_id=job_id: producer.get(job_id).provider_task_id) for job_id in ids}
        fates = charges(sandbox_url)
        failing = [job_id for job_id in ids if fates[tasks[job_id]]["fail_reason"]]
        finishing = [job_id for job_id in ids if not fates[tasks[job_id]]["fail_reason"]]
        for victim in (failing[0], finishing[0]):
            assert producer.cancel(victim).charged is None
    finally:
        httpx.post(f"{sandbox_url}/_control/config", json={"delay_seconds": 0.5})
    summary = wait_ended(pipeline_env, name)
    assert summary["counts"] == {"succeeded": 3, "failed": 1, "canceled": 2}
    jobs = report(pipeline_env, name)
    billed = charges(sandbox_url)
    rows = []
    for job in jobs:
        vendor = billed[job["provider_task_id"]]
        rows.append((job["id"], job["status"], vendor["phase"], job["charged"], job["cost"]["usd"], vendor["billed"]))
    ledger = BatchStore(producer.store.redis).ledger(batch.id)
    vendor_total = round(sum(row[5] for row in rows), 2)
    balance_taken = round(balance_before - httpx.get(f"{sandbox_url}/_control/balance").json()["veogen"], 2)
    table = [
        f"{'job':<38} {'status':<10} {'vendor':<10} {'charged':<8} {'genqueue usd':>12} {'vendor usd':>10}",
        *(f"{r[0]:<38} {r[1]:<10} {r[2]:<10} {r[3]:<8} {r[4]:>12.2f} {r[5]:>10.2f}" for r in rows),
        f"{'total: batch ledger spent_usd / sandbox billed':<69} {ledger['spent_usd']:>12.2f} {vendor_total:>10.2f}",
        f"{'batch ledger committed (budget $5)':<69} {ledger['committed']:>12.2f}",
        f"{'batch summary cost.usd':<69} {summary['cost']['usd']:>12.2f}",
        f"{'sandbox veogen balance taken (failed generations refunded)':<69} {'':>12} {balance_taken:>10.2f}",
    ]
    text = "\n".join(table) + "\n"
    print(text)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cost-reconciliation.txt").write_text(text)
    assert all(round(r[4], 2) == round(r[5], 2) for r in rows), text
    assert round(ledger["spent_usd"], 2) == vendor_total == round(ledger["committed"], 2)
    assert round(summary["cost"]["usd"], 2) == vendor_total == balance_taken
    for job, row in zip(jobs, rows, strict=True):  # every charge decided by how the vendor ended the task
        assert job["charged"] == ("no" if row[2] == "failed" else "yes"), text


def test_stats_by_metadata_sums_what_each_customer_was_charged(
    workers: ServerProcess, pipeline_env: dict[str, str], settings: Settings, sandbox_url: str
) -> None:
    """`genqueue stats --by metadata.customer` over real jobs: the failed VeoGen job counts nothing, and each
    customer's total is what the sandbox bills for that customer's tasks."""
    run = uuid.uuid4().hex[:6]
    acme, globex = f"acme-{run}", f"globex-{run}"
    producer = Producer(settings)
    httpx.post(f"{sandbox_url}/_control/fail_next", json={"count": 1, "reason": "nsfw", "dialect": "veogen"})
    first = producer.submit("veogen", "grok-video-1", "one", {"duration": 6}, metadata={"customer": acme})
    # the failure goes to the next task the sandbox accepts: this job's, once it is accepted before the others are sent
    wait_until(lambda: producer.get(first.id).provider_task_id)
    jobs = [first] + [
        producer.submit("veogen", "grok-video-1", f"clip {n}", {"duration": 6}, metadata={"customer": customer})
        for n, customer in enumerate([acme, globex])
    ]
    ended = [producer.wait(job.id, timeout=60) for job in jobs]
    assert [job.status for job in ended] == [JobStatus.FAILED, JobStatus.SUCCEEDED, JobStatus.SUCCEEDED]
    billed = charges(sandbox_url)
    vendor_usd = {acme: 0.0, globex: 0.0}
    for job in ended:
        assert job.provider_task_id is not None
        assert billed[job.provider_task_id]["unit"] == "usd"
        vendor_usd[job.metadata["customer"]] += billed[job.provider_task_id]["billed"]
    result = run_cli(pipeline_env, "stats", "--by", "metadata.customer", "--json")
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)
    assert groups[acme]["jobs_by_status"]["failed"] == 1 and groups[acme]["jobs_by_status"]["succeeded"] == 1
    assert round(groups[acme]["cost"]["usd"], 2) == round(vendor_usd[acme], 2) == 0.18
    assert round(groups[globex]["cost"]["usd"], 2) == round(vendor_usd[globex], 2) == 0.18
    text = run_cli(pipeline_env, "stats", "--by", "metadata.customer")
    assert [line.split() for line in text.stdout.splitlines() if line.startswith(acme)] == [
        [acme, "2", "1", "1", "0", "0", "0.18"]
    ]


def test_a_budgeted_batch_refuses_a_line_it_cannot_estimate_and_enqueues_nothing(
    pipeline_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    name = f"unpriced-{uuid.uuid4().hex[:6]}"
    lines = [veogen_line(1), {"provider": "vicsee", "model": "sora-2-pro", "prompt": "not in the catalog"}]
    path = write_jsonl(tmp_path / "unpriced.jsonl", lines)
    result = run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--budget-usd", "5")
    assert result.returncode == 2
    assert f"{path}:2: no usd estimate for vicsee sora-2-pro, so a --budget-usd cannot bound it" in result.stderr
    assert result.stderr.splitlines()[-1] == "genqueue: error: 1 of 2 lines refused; nothing enqueued"
    assert BatchStore(Producer(settings).store.redis).get_by_name(name) is None
    # without a budget the same file runs: the unknown VicSee model is sent with no estimate
    assert run_cli(pipeline_env, "batch", "submit", str(path), "--name", name, "--dry-run").returncode == 0
