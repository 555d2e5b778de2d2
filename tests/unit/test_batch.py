"""Batches without servers: file parsing, time options, pacing, the batch store and the job store's batch counts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fakeredis
import pytest
import typer

from producer.batch_file import parse_csv, parse_jsonl, read_batch_file
from producer.cli_batch import parse_time, status_line
from shared import lifecycle
from shared.batch import Batch, BatchStore
from shared.batch.models import ended_count
from shared.batch.pacing import release_allowance
from shared.constants import BATCH_KEY, BATCHES_CREATED_KEY
from shared.errors import InvalidRequest
from shared.models import GenerationRequest, Job, JobStatus, utcnow
from shared.protection import BreakerState, CreditPause, ProviderStatus
from shared.store import JobStore

# --- the batch file


def test_jsonl_lines_are_numbered_as_an_editor_counts_them() -> None:
    text = '{"provider": "sandbox", "model": "m", "prompt": "a"}\n\n{oops\n[1]\n{"provider": "p"}\n'
    parsed = parse_jsonl(text)
    assert [p.number for p in parsed] == [1, 3, 4, 5]
    assert parsed[0].line is not None and parsed[0].line.prompt == "a"
    assert parsed[1].error is not None and parsed[1].error.startswith("not JSON")
    assert parsed[2].error == "not a JSON object"
    assert parsed[3].error == "model: Field required"


def test_jsonl_refuses_unknown_keys() -> None:
    (parsed,) = parse_jsonl('{"provider": "p", "model": "m", "colour": "red"}')
    assert parsed.error == "unknown option 'colour'"


def test_csv_columns_options_and_metadata_are_json() -> None:
    text = (
        "provider,model,prompt,options,metadata,images\n"
        'vicsee,sora-2,a flower,"{""duration"": 10}","{""team"": ""ads""}",https://example.com/a.png\n'
        "sandbox,sandbox-image,,not json,,\n"
        "sandbox,sandbox-image,x,,,,extra\n"
    )
    first, second, third = parse_csv(text)
    assert first.number == 2 and first.line is not None
    assert first.line.options == {"duration": 10} and first.line.metadata == {"team": "ads"}
    assert first.line.images == ["https://example.com/a.png"]
    assert second.number == 3 and second.error == "options: not JSON text"
    assert third.error == "more fields than the header names"


def test_a_file_is_read_by_its_extension_and_an_empty_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "jobs.csv").write_text("provider,model\nsandbox,sandbox-image\n")
    assert read_batch_file(tmp_path / "jobs.csv")[0].line is not None
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no jobs"):
        read_batch_file(tmp_path / "empty.jsonl")
    with pytest.raises(ValueError, match="cannot read"):
        read_batch_file(tmp_path / "missing.jsonl")


# --- --not-before / --deadline


def test_times_are_iso_or_relative() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_time("+30m", "--deadline", now) == now + timedelta(minutes=30)
    assert parse_time("2h", "--deadline", now) == now + timedelta(hours=2)
    assert parse_time("2026-12-01T02:00", "--deadline", now) == datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    assert parse_time("2026-12-01T02:00+01:00", "--x", now).utcoffset() == timedelta(hours=1)
    with pytest.raises(typer.Exit):
        parse_time("tomorrow-ish", "--deadline", now)


def test_status_line_gives_counts_cost_and_eta() -> None:
    summary = {
        "name": "night",
        "total": 100,
        "ended": 25,
        "counts": {"succeeded": 20, "failed": 5, "queued": 75},
        "cost": {"credits": 25.0, "usd": 0.0},
        "completed_at": None,
    }
    line = status_line(summary, elapsed=50.0)
    assert line.startswith("night: 25/100 ended")
    assert "queued 75, succeeded 20, failed 5" in line
    assert "cost 25 credits" in line and "ETA 2m30s" in line


# --- pacing


def status(**changes: object) -> ProviderStatus:
    base = ProviderStatus(
        provider="p",
        tokens=10.0,
        burst=10,
        rate_per_second=5.0,
        in_flight=0,
        max_in_flight=50,
        breaker=BreakerState.CLOSED,
        breaker_until=None,
        consecutive_failures=0,
        credit_pause=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_release_follows_the_rate_and_keeps_a_token_for_interactive_jobs() -> None:
    assert release_allowance(status(), released=0, interval_seconds=1.0) == 10 + 5 - 1
    assert release_allowance(status(tokens=0.5), released=0, interval_seconds=1.0) == 4
    assert release_allowance(status(tokens=0.0), released=4, interval_seconds=1.0) == 0


def test_release_follows_the_in_flight_cap() -> None:
    assert release_allowance(status(in_flight=45), released=2, interval_seconds=1.0) == 50 - 45 - 1 - 2
    assert release_allowance(status(in_flight=50), released=0, interval_seconds=1.0) == 0
    assert release_allowance(status(max_in_flight=1, burst=1, tokens=1.0), released=0, interval_seconds=1.0) == 1


def test_nothing_is_released_to_an_open_breaker_and_one_probe_to_a_held_provider() -> None:
    assert release_allowance(status(breaker=BreakerState.OPEN), 0, 1.0) == 0
    hold = CreditPause(since=0.0, message="no credits", next_probe_at=60.0)
    assert release_allowance(status(credit_pause=hold), 0, 1.0) == 1
    assert release_allowance(status(credit_pause=hold), 1, 1.0) == 0


# --- the batch store


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_a_name_opens_one_batch(client: fakeredis.FakeRedis) -> None:
    batches = BatchStore(client)
    first, created = batches.open("night", lambda batch_id: Batch(id=batch_id, name="night"))
    again, created_again = batches.open("night", lambda batch_id: Batch(id=batch_id, name="other"))
    assert created and not created_again and again.id == first.id and again.name == "night"
    assert batches.get_by_name(first.id) == first


def test_a_line_is_claimed_once_and_a_changed_line_is_refused(client: fakeredis.FakeRedis) -> None:
    batches = BatchStore(client)
    slot = batches.line_slot("b", 3)
    assert batches.claims.claim(slot, "job_a", "fp1") is None
    assert batches.claims.claim(slot, "job_b", "fp1") == "job_a"
    with pytest.raises(InvalidRequest, match=r"line 3: .*file has changed"):
        batches.claims.claim(slot, "job_c", "fp2")
    assert not batches.claims.abandon(slot, "job_other")
    assert batches.line_jobs("b") == [(3, "job_a")]
    assert client.hget("genqueue:batch:b:lines", "3") == b"job_a fp1"  # the format earlier versions wrote


def test_the_budget_ledger_reserves_then_settles_at_the_vendors_figure(client: fakeredis.FakeRedis) -> None:
    batches = BatchStore(client)
    assert batches.reserve("b", "j1", 20.0, budget=50.0)
    assert batches.reserve("b", "j1", 20.0, budget=50.0)  # reserving twice is one reservation
    assert batches.reserve("b", "j2", 20.0, budget=50.0)
    assert not batches.reserve("b", "j3", 20.0, budget=50.0)  # 60 > 50
    assert batches.committed("b") == 40.0 and batches.outstanding("b") == 2
    batches.settle("b", "j1", 0.0)  # refused by the vendor: nothing charged
    batches.settle("b", "j1", 5.0)  # settled once only
    assert batches.committed("b") == 20.0 and batches.outstanding("b") == 1
    assert batches.reserve("b", "j3", 20.0, budget=50.0)


def test_released_jobs_are_counted_until_started_or_stale(client: fakeredis.FakeRedis) -> None:
    batches = BatchStore(client)
    batches.mark_released("p", ["a", "b"], now=100.0)
    batches.mark_released("p", ["c"], now=300.0)
    batches.mark_started("p", "b")
    assert batches.released_count("p", now=310.0, max_age=120.0) == 1  # "a" is stale, "b" started


# --- the job store keeps each batch's counts and its list of ended jobs


def batch_job(job_id: str) -> Job:
    now = utcnow()
    return Job(
        id=job_id,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        batch_id="b1",
        deadline_at=now + timedelta(hours=1),
    )


def test_job_writes_keep_the_batch_counts(client: fakeredis.FakeRedis) -> None:
    store, batches = JobStore(client), BatchStore(client)
    for job_id in ("j1", "j2", "j3"):
        store.create(batch_job(job_id))
    assert batches.counts("b1") == {"queued": 3}
    now = utcnow()
    store.update("j1", lambda job: job.model_copy(update={"step": lifecycle.new_step("submit", now)}))
    store.update("j1", lambda job: job.model_copy(update={"status": JobStatus.SUBMITTED}))
    store.update("j2", lambda job: lifecycle.cancel(job, now))
    store.update("j2", lambda job: lifecycle.cancel(job, now))  # already ended: no second count
    assert batches.counts("b1") == {"queued": 1, "submitted": 1, "canceled": 1}
    assert batches.take_ended("b1") == ["j2"] and batches.take_ended("b1") == []
    stamped = store.get("j1")
    assert stamped is not None and set(stamped.entered_at) == {"queued", "submitted"}


def test_a_completed_batch_expires_with_its_jobs_and_is_kept_again_when_resumed(client: fakeredis.FakeRedis) -> None:
    batches = BatchStore(client)
    batch, _ = batches.open("night", lambda batch_id: Batch(id=batch_id, name="night", providers=["p"]))
    batches.claims.claim(batches.line_slot(batch.id, 1), "job_a", "fp")
    batches.hold(batch.id, "p", "job_a", 1)
    batches.expire(batch, 3600)
    assert 0 < client.ttl(f"genqueue:batch:{batch.id}") <= 3600
    assert 0 < client.ttl(f"genqueue:batch:{batch.id}:lines") <= 3600
    assert 0 < client.ttl("genqueue:batch-name:night") <= 3600
    batches.keep(batch)
    assert client.ttl(f"genqueue:batch:{batch.id}") == -1 and client.ttl("genqueue:batch-name:night") == -1
    batches.expire(batch, None)  # retention off: nothing expires
    assert client.ttl(f"genqueue:batch:{batch.id}:lines") == -1


def test_an_ended_job_with_nothing_left_to_do_expires_after_the_retention(client: fakeredis.FakeRedis) -> None:
    store = JobStore(client, retention_seconds=86400)
    job = batch_job("j9").model_copy(update={"webhook_url": "https://example.com/hook"})
    store.create(job)
    assert client.ttl("genqueue:job:j9") == -1  # running jobs never expire
    now = utcnow()
    ended = store.update("j9", lambda j: lifecycle.cancel(j, now))
    assert ended is not None and ended.step is not None  # its webhook is still to be delivered: kept
    assert client.ttl("genqueue:job:j9") == -1
    store.update("j9", lambda j: j.model_copy(update={"step": None}))  # delivered
    assert 86000 < client.ttl("genqueue:job:j9") <= 86400
    store.update("j9", lambda j: lifecycle.redeliver(j, now))  # `genqueue webhooks redeliver`: kept again
    assert client.ttl("genqueue:job:j9") == -1
    forever = JobStore(client)
    forever.create(batch_job("j10"))
    forever.update("j10", lambda j: lifecycle.cancel(j, now))
    assert client.ttl("genqueue:job:j10") == -1


def test_a_line_is_taken_over_only_from_the_claim_expected(client: fakeredis.FakeRedis) -> None:
    batches = BatchStore(client)
    slot = batches.line_slot("b", 1)
    batches.claims.claim(slot, "job_dead", "fp")
    assert not batches.claims.take_over(slot, "job_other", "job_new", "fp")  # it names another job by now
    assert batches.claims.take_over(slot, "job_dead", "job_new", "fp")
    assert batches.line_jobs("b") == [(1, "job_new")]


def test_ended_count_counts_terminal_statuses_only() -> None:
    assert ended_count({"queued": 3, "running": 1, "succeeded": 2, "failed": 1, "canceled": 4}) == 7


def test_batches_are_listed_newest_first_by_their_index_and_an_expired_one_drops_out(
    client: fakeredis.FakeRedis,
) -> None:
    batches = BatchStore(client)
    start = utcnow()
    for n in range(5):
        assert batches.create(Batch(id=f"batch_{n}", name=f"b{n}", created_at=start + timedelta(seconds=n)))
    client.delete(BATCH_KEY.format(batch_id="batch_3"))  # as its retention ran out
    seen, before = [], None
    while page := batches.created(before, 2):
        seen += [batch.id for _, batch in page]
        before = page[-1][0]
    assert seen == ["batch_4", "batch_2", "batch_1", "batch_0"]
    assert b"batch_3" not in client.zrange(BATCHES_CREATED_KEY, 0, -1)
