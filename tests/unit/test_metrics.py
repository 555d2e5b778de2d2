"""Job-level metrics: summarize's figures, reading the store, the Prometheus collector, `genqueue stats`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest
import redis
import typer
from typer.testing import CliRunner

from producer import stats_cli
from producer.render import human_duration
from shared import lifecycle
from shared.constants import JOB_KEY
from shared.errors import GenerationFailed
from shared.metrics import collect, read_jobs, state_durations, summarize
from shared.models import (
    Charge,
    Cost,
    GenerationRequest,
    Job,
    JobError,
    JobStatus,
    WebhookAttempt,
    WebhookState,
)
from shared.quarantine import Quarantine
from shared.settings import get_settings
from shared.store import JobStore
from shared.webhooks.dead_letters import DeadLetters

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(seconds=100)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_job(
    job_id: str,
    status: JobStatus,
    entered: dict[str, float],
    provider: str = "sandbox",
    **fields: Any,
) -> Job:
    return Job(
        id=job_id,
        status=status,
        provider=provider,
        request=GenerationRequest(model="sandbox-video", prompt="a flower opening"),
        deadline_at=T0 + timedelta(hours=1),
        created_at=T0,
        entered_at={name: at(seconds) for name, seconds in entered.items()},
        **fields,
    )


def webhook(codes: list[int | None], delivered: bool = False, gave_up: str | None = None) -> WebhookState:
    return WebhookState(
        event_id="evt",
        event_type="job.succeeded",
        timestamp=T0,
        attempts=[WebhookAttempt(at=T0, status_code=code, error=None if code else "timeout") for code in codes],
        delivered=delivered,
        gave_up=gave_up,
    )


def sample_jobs() -> list[Job]:
    """Two sandbox jobs with full timelines, two without usable ones, and one failed vicsee job."""
    done = make_job(
        "done",
        JobStatus.SUCCEEDED,
        {"queued": 0, "submitted": 2, "running": 5, "finalizing": 65, "succeeded": 70},
        poll_count=4,
        cost=Cost(credits=1.5, usd=0.25),
        webhook=webhook([500, None, 200], delivered=True),
    )
    running = make_job(
        "running",
        JobStatus.RUNNING,
        {"queued": 0, "submitted": 4, "running": 10},
        poll_count=6,
        cost=Cost(credits=2.0),
    )
    legacy = make_job(  # stamped before entered_at existed
        "legacy", JobStatus.RUNNING, {}, poll_count=2, webhook=webhook([410], gave_up="endpoint gone")
    )
    unstamped = make_job("unstamped", JobStatus.SUBMITTED, {"queued": 0})  # its current status is missing
    failed = make_job(
        "failed",
        JobStatus.FAILED,
        {"queued": 0, "failed": 30},
        provider="vicsee",
        error=JobError(code="provider_error", message="boom"),
        cost=Cost(usd=0.5),
        webhook=webhook([302, 404, 503, 204, 299, 300], gave_up="retries exhausted"),
    )
    return [done, running, legacy, unstamped, failed]


def test_time_in_state_runs_until_the_next_status_entered_or_now() -> None:
    done, running, legacy, unstamped, failed = sample_jobs()
    assert state_durations(done, NOW) == [
        (JobStatus.QUEUED, 2.0),
        (JobStatus.SUBMITTED, 3.0),
        (JobStatus.RUNNING, 60.0),
        (JobStatus.FINALIZING, 5.0),
    ]
    assert state_durations(running, NOW) == [
        (JobStatus.QUEUED, 4.0),
        (JobStatus.SUBMITTED, 6.0),
        (JobStatus.RUNNING, 90.0),
    ]
    assert state_durations(legacy, NOW) == []
    assert state_durations(unstamped, NOW) == []  # when queued ended is unknown
    assert state_durations(failed, NOW) == [(JobStatus.QUEUED, 30.0)]


def test_summarize_counts_jobs_errors_polls_time_and_cost_per_provider() -> None:
    metrics = summarize(sample_jobs(), NOW)
    assert list(metrics.providers) == ["sandbox", "vicsee"]
    assert metrics.jobs == 5
    sandbox, vicsee = metrics.providers["sandbox"], metrics.providers["vicsee"]

    assert sandbox.jobs_by_status == {"succeeded": 1, "running": 2, "submitted": 1}
    assert vicsee.jobs_by_status == {"failed": 1}
    assert sandbox.errors_by_code == {}
    assert vicsee.errors_by_code == {"provider_error": 1}

    assert (sandbox.polls, sandbox.polled_jobs, sandbox.average_polls) == (12, 3, 4.0)
    assert (vicsee.polls, vicsee.polled_jobs, vicsee.average_polls) == (0, 0, None)

    spent = {status: (time.seconds, time.count) for status, time in sandbox.state_time.items()}
    assert spent == {"queued": (6.0, 2), "submitted": (9.0, 2), "running": (150.0, 2), "finalizing": (5.0, 1)}
    assert sandbox.state_time["running"].average == 75.0
    assert {status: (t.seconds, t.count) for status, t in vicsee.state_time.items()} == {"queued": (30.0, 1)}

    assert sandbox.cost_credits == pytest.approx(3.5)
    assert sandbox.cost_usd == pytest.approx(0.25)
    assert (vicsee.cost_credits, vicsee.cost_usd) == (0.0, pytest.approx(0.5))


def test_summarize_counts_webhook_attempts_failures_deliveries_and_give_ups() -> None:
    hooks = summarize(sample_jobs(), NOW).webhooks
    # done: 500, no answer fail, 200 succeeds; legacy: 410 fails; failed: 302, 404, 503, 300 fail, 204, 299 succeed
    assert (hooks.attempts, hooks.failed_attempts) == (10, 7)
    assert (hooks.delivered, hooks.given_up, hooks.dead_letters) == (1, 2, 0)


def test_summarize_of_nothing_is_empty() -> None:
    metrics = summarize([], NOW)
    assert metrics.providers == {} and metrics.jobs == 0 and metrics.webhooks.attempts == 0
    assert metrics.at == NOW


@pytest.fixture
def client() -> redis.Redis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def stored(client: redis.Redis) -> redis.Redis:
    """The sample jobs written as the job store writes them, two dead letters, and keys that are not jobs."""
    store = JobStore(client)
    for job in sample_jobs():
        store.create(job)
    DeadLetters(client).add("failed")
    DeadLetters(client).add("other")
    client.hset(JOB_KEY.format(job_id="broken"), mapping={"data": "{not json", "version": 1})
    client.set(JOB_KEY.format(job_id="notahash"), "x")
    client.hset(JOB_KEY.format(job_id="nodata"), "version", 1)
    return client


def test_read_jobs_reads_every_job_in_chunks_and_skips_what_is_not_one(stored: redis.Redis) -> None:
    jobs = list(read_jobs(stored, batch=2))
    assert sorted(job.id for job in jobs) == ["done", "failed", "legacy", "running", "unstamped"]
    by_id = {job.id: job for job in jobs}
    assert by_id["done"].webhook is not None and len(by_id["done"].webhook.attempts) == 3
    # the store stamps the current status of a job created without it
    assert by_id["legacy"].entered_at == {"running": T0}


def test_the_store_reads_every_job_quarantining_only_what_does_not_parse(stored: redis.Redis) -> None:
    ids = [job.id for job in JobStore(stored).all_jobs(chunk=1)]
    assert sorted(ids) == ["done", "failed", "legacy", "running", "unstamped"]
    assert [record.id for record in Quarantine(stored).records()] == ["broken"]  # not the string, not "nodata"


def test_collect_summarizes_the_store_and_counts_dead_letters(stored: redis.Redis) -> None:
    metrics = collect(stored, NOW)
    assert metrics.jobs == 5
    assert metrics.webhooks.dead_letters == 2
    assert metrics.webhooks.failed_attempts == 7
    # "legacy" got a running stamp at creation (T0) from the store, so it now counts 100 s of running
    running = metrics.providers["sandbox"].state_time["running"]
    assert (running.seconds, running.count) == (250.0, 3)


@pytest.fixture
def cli(stored: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    """A typer app registering the functions as producer/cli.py does, its Redis URL pointing at `stored`."""
    monkeypatch.setenv("GENQUEUE_REDIS_URL", "redis://stats:6379/7")
    get_settings.cache_clear()

    def from_url(cls: type[redis.Redis], url: str, **kwargs: Any) -> redis.Redis:
        assert url == "redis://stats:6379/7"
        return stored

    monkeypatch.setattr(redis.Redis, "from_url", classmethod(from_url))
    monkeypatch.setattr(stats_cli, "utcnow", lambda: NOW)
    app = typer.Typer()
    app.command("stats")(stats_cli.stats)
    metrics_app = typer.Typer()
    metrics_app.command("serve")(stats_cli.metrics_serve)
    app.add_typer(metrics_app, name="metrics")
    yield app
    get_settings.cache_clear()


def test_stats_prints_a_table_per_provider(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["stats"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "provider", "queued", "submitted", "running", "finalizing", "succeeded", "failed", "canceled", "total"
    ]  # fmt: skip
    assert lines[1].split() == ["sandbox", "0", "1", "2", "0", "1", "0", "0", "4"]
    assert lines[2].split() == ["vicsee", "0", "0", "0", "0", "0", "1", "0", "1"]
    times = lines[lines.index("") + 1 :]
    assert times[0].split() == ["avg", "time", "in", "queued", "submitted", "running", "finalizing"]
    # as stored, "unstamped" entered submitted at T0 and "legacy" running at T0 (the store stamps the current status)
    # sandbox: queued 2, 4 and 0 s; submitted 3, 6 and 100 s; running 60, 90 and 100 s; finalizing 5 s
    assert times[1].split() == ["sandbox", "2.0s", "36.3s", "1m23s", "5.0s"]
    assert times[2].split() == ["vicsee", "30.0s", "-", "-", "-"]
    other = next(i for i, line in enumerate(lines) if line.startswith("provider  polls/job"))
    assert lines[other + 1].split() == ["sandbox", "4.0", "3.50", "0.25", "-"]
    assert lines[other + 2].split() == ["vicsee", "-", "0.00", "0.50", "provider_error", "1"]
    charged = next(i for i, line in enumerate(lines) if line.startswith("charged "))
    assert lines[charged].split() == ["charged", "yes", "no", "unknown", "pending"]
    # the succeeded job was stored with no charge decided (a record from before): counted as charged, "unknown"
    assert lines[charged + 1].split() == ["sandbox", "0", "0", "1", "0"]
    assert lines[charged + 2].split() == ["vicsee", "0", "0", "1", "0"]  # failed by a provider error: unknown
    assert lines[-2] == "webhooks: 10 attempts, 7 failed, 1 delivered, 2 given up, 2 dead letters"
    assert lines[-1] == "quarantined records: 1 (genqueue quarantine list)"  # the job whose JSON is broken


def test_stats_json_is_the_metrics_snapshot(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["stats", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["providers"]["sandbox"]["jobs_by_status"] == {"succeeded": 1, "running": 2, "submitted": 1}
    assert data["providers"]["sandbox"]["state_time"]["running"] == {"seconds": 250.0, "count": 3}
    assert data["providers"]["vicsee"]["errors_by_code"] == {"provider_error": 1}
    assert data["webhooks"] == {"attempts": 10, "failed_attempts": 7, "delivered": 1, "given_up": 2, "dead_letters": 2}


def test_metrics_serve_is_registered_with_its_options(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["metrics", "serve", "--help"])
    assert result.exit_code == 0
    assert "--host" in result.output and "--port" in result.output


def test_durations_read_like_a_person_would_write_them() -> None:
    assert [human_duration(s) for s in (0.04, 3.21, 59.99, 250, 3599.6, 7500, 97200)] == [
        "0.0s", "3.2s", "1m00s", "4m10s", "1h00m", "2h05m", "1d03h"
    ]  # fmt: skip


def test_stats_by_metadata_sums_cost_per_value(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JobStore(client)
    rows = [
        ("a1", "acme", JobStatus.SUCCEEDED, Cost(credits=20)),
        ("a2", "acme", JobStatus.SUCCEEDED, Cost(usd=0.528)),
        ("a3", "acme", JobStatus.FAILED, Cost(usd=0.1)),
        ("b1", "globex", JobStatus.CANCELED, Cost(credits=240)),
        ("n1", None, JobStatus.SUCCEEDED, Cost(credits=1)),
    ]
    for job_id, customer, status, cost in rows:
        job = Job(
            id=job_id,
            provider="sandbox",
            request=GenerationRequest(model="sandbox-video"),
            deadline_at=NOW,
            status=status,
            cost=cost,
            metadata={"customer": customer} if customer else {},
        )
        store.create(job)
    monkeypatch.setattr(stats_cli, "_client", lambda: client)
    app = typer.Typer()
    app.command("stats")(stats_cli.stats)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["stats", "--by", "metadata.customer"])
    assert result.exit_code == 0, result.output
    assert [line.split() for line in result.output.splitlines()] == [
        ["metadata.customer", "jobs", "succeeded", "failed", "canceled", "credits", "usd"],
        ["(none)", "1", "1", "0", "0", "1", "0"],
        ["acme", "3", "2", "1", "0", "20", "0.628"],
        ["globex", "1", "0", "0", "1", "240", "0"],
    ]
    as_json = json.loads(CliRunner().invoke(app, ["stats", "--by", "metadata.customer", "--json"]).output)
    assert as_json["acme"]["cost"] == {"credits": 20, "usd": 0.628}
    assert as_json["acme"]["jobs_by_status"]["failed"] == 1
    refused = CliRunner().invoke(app, ["stats", "--by", "customer"])
    assert refused.exit_code == 2 and "--by must be metadata.KEY" in refused.output


def test_costs_and_charges_follow_the_cost_record() -> None:
    def sent(job_id: str, dialect: str) -> Job:
        job = make_job(job_id, JobStatus.RUNNING, {"queued": 0}, provider=dialect, cost=Cost(usd=0.3))
        return job.model_copy(
            update={
                "provider_task_id": "t",
                "charge": Charge(estimate=Cost(usd=0.3), reported=Cost(usd=0.3), dialect=dialect),
                "step": lifecycle.new_step("poll", T0),
            }
        )

    def failed(job: Job) -> Job:
        assert job.step is not None
        ended = lifecycle.fail_owned(job, job.step.task_id, GenerationFailed("x"), NOW, "failed")
        assert ended is not None
        return ended

    canceled = lifecycle.cancel(sent("c", "veogen"), NOW)
    assert canceled is not None
    jobs = [failed(sent("a", "veogen")), failed(sent("b", "vicsee")), canceled, sent("d", "veogen")]
    metrics = summarize(jobs, NOW)
    veogen, vicsee = metrics.providers["veogen"], metrics.providers["vicsee"]
    assert veogen.charged == {"no": 1, "pending": 1}  # the running job is not counted
    assert veogen.cost_usd == pytest.approx(0.6)  # the failed one counts 0; the canceled and running ones 0.3
    assert vicsee.charged == {"unknown": 1} and vicsee.cost_usd == pytest.approx(0.3)
