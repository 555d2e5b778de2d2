"""A record that cannot be read is set aside, and every loop carries on with the rest."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import pytest
from typer.testing import CliRunner

from producer.metrics_exporter import families, read_figures
from shared import queueing
from shared.constants import DUE_KEY, JOB_KEY
from shared.metrics import collect
from shared.models import Job, utcnow
from shared.quarantine import Quarantine, UnreadableRecord
from shared.settings import Settings
from shared.store import JobStore
from tests.unit.test_sweeper import job_with_step
from workers import context, sweeper


def overdue_job(job_id: str) -> Job:
    return job_with_step(job_id, "poll", due_ago=600)


def poison(redis: fakeredis.FakeRedis, job_id: str, data: str, due: float = 1.0) -> None:
    """A job record as a bug, an old version or a hand edit could leave it, due first in the index."""
    redis.hset(JOB_KEY.format(job_id=job_id), mapping={"data": data, "version": "1", "status": "submitted"})
    redis.zadd(DUE_KEY, {job_id: due})


def too_deep(depth: int = 300) -> str:
    """Valid JSON that pydantic's reader refuses (recursion limit)."""
    job = json.loads(overdue_job("x").model_dump_json())
    job["request"]["extra"] = json.loads("[" * depth + "]" * depth)
    return json.dumps(job)


@pytest.fixture
def redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_get_quarantines_and_raises_get_many_skips(redis: fakeredis.FakeRedis) -> None:
    store = JobStore(redis)
    store.create(overdue_job("good"))
    poison(redis, "broken", "{not json")
    with pytest.raises(UnreadableRecord, match="job broken is unreadable and was set aside"):
        store.get("broken")
    assert [job.id if job else None for job in store.get_many(["broken", "good", "none"])] == [None, "good", None]
    [record] = Quarantine(redis).records()
    assert (record.kind, record.id) == ("job", "broken")
    assert "Invalid JSON" in record.reason
    assert redis.zscore(DUE_KEY, "broken") is None  # off the due index: no loop meets it again
    assert redis.hget(JOB_KEY.format(job_id="broken"), "data") == b"{not json"  # kept as it was, for inspection


def test_sweeper_resumes_the_others_past_poison_records(
    redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JobStore(redis)
    monkeypatch.setattr(context, "store", lambda: store)
    monkeypatch.setattr(context, "settings", lambda: Settings(sweep_grace_seconds=60))
    published: list[str] = []
    monkeypatch.setattr(queueing, "publish_step", lambda app, s, job_id, step, now: published.append(job_id))
    poison(redis, "deep", too_deep(), due=1.0)
    poison(redis, "garbage", "\x00\xff", due=2.0)
    poison(redis, "wrong-shape", json.dumps({"id": "wrong-shape"}), due=3.0)
    for index in range(3):
        store.create(overdue_job(f"ok{index}"))
    assert sweeper.sweep_overdue() == 3
    assert sorted(published) == ["ok0", "ok1", "ok2"]
    assert sorted(record.id for record in Quarantine(redis).records()) == ["deep", "garbage", "wrong-shape"]
    assert sweeper.sweep_overdue() == 0  # the poison is not met again


def test_a_step_task_for_a_poison_record_drops_itself(
    redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers import steps

    store = JobStore(redis)
    monkeypatch.setattr(context, "store", lambda: store)
    poison(redis, "deep", too_deep())

    class FakeTask:
        class request:
            id = "task-1"

        name = "genqueue.poll"

    ran: list[Any] = []
    steps.run_step(FakeTask(), "deep", "poll", 60, lambda job, task_id: ran.append(job))  # type: ignore[arg-type]
    assert ran == []
    assert Quarantine(redis).contains("job", "deep")


def test_readmit_a_repaired_job(redis: fakeredis.FakeRedis) -> None:
    store = JobStore(redis)
    good = overdue_job("fixme")
    poison(redis, "fixme", "{broken")
    with pytest.raises(UnreadableRecord):
        store.get("fixme")
    with pytest.raises(UnreadableRecord):  # still broken: quarantined again
        store.readmit("fixme")
    assert Quarantine(redis).contains("job", "fixme")
    redis.hset(JOB_KEY.format(job_id="fixme"), "data", good.model_dump_json())  # the operator repairs it
    readmitted = store.readmit("fixme")
    assert readmitted is not None and readmitted.id == "fixme"
    assert not Quarantine(redis).contains("job", "fixme")
    assert redis.zscore(DUE_KEY, "fixme") is not None  # its step is indexed again


def test_metrics_count_quarantined_records(redis: fakeredis.FakeRedis) -> None:
    store = JobStore(redis)
    store.create(overdue_job("good"))
    poison(redis, "deep", too_deep())
    metrics = collect(redis, utcnow())
    assert metrics.jobs == 1
    assert metrics.quarantined == 1
    gauge = next(
        family for family in families(read_figures(redis, [], 0.0)) if family.name == "genqueue_quarantined_records"
    )
    assert gauge.samples[0].value == 1


def test_quarantine_command_lists_and_readmits(redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch) -> None:
    from producer import cli
    from producer.api import Producer

    store = JobStore(redis)
    producer = Producer(Settings(), store=store, celery=object())  # type: ignore[arg-type]
    monkeypatch.setattr(cli, "producer", lambda: producer)
    poison(redis, "broken", "{nope")
    result = CliRunner().invoke(cli.app, ["status", "broken"], standalone_mode=False, catch_exceptions=True)
    assert isinstance(result.exception, UnreadableRecord)
    listed = CliRunner().invoke(cli.app, ["quarantine", "list"])
    assert listed.exit_code == 0
    assert " job broken: Invalid JSON" in listed.output
    as_json = CliRunner().invoke(cli.app, ["quarantine", "list", "--json"])
    assert json.loads(as_json.output)["id"] == "broken"
    refused = CliRunner().invoke(cli.app, ["quarantine", "readmit", "other"])
    assert refused.exit_code == 2 and "job 'other' is not in quarantine" in refused.output
    redis.hset(JOB_KEY.format(job_id="broken"), "data", overdue_job("broken").model_dump_json())
    readmitted = CliRunner().invoke(cli.app, ["quarantine", "readmit", "broken"])
    assert readmitted.exit_code == 0, readmitted.output
    assert readmitted.output.strip() == "broken readmitted (queued)"


def test_status_of_a_poison_record_is_one_line_and_exit_2(
    redis: fakeredis.FakeRedis, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from producer import cli
    from producer.api import Producer

    producer = Producer(Settings(), store=JobStore(redis), celery=object())  # type: ignore[arg-type]
    monkeypatch.setattr(cli, "producer", lambda: producer)
    monkeypatch.setattr("sys.argv", ["genqueue", "status", "broken"])
    poison(redis, "broken", "{nope")
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("genqueue: error: job broken is unreadable and was set aside: Invalid JSON")
    assert line.endswith("(see `genqueue quarantine list`)")


def test_batch_report_lines_go_on_past_a_poison_job(redis: fakeredis.FakeRedis) -> None:
    from shared.batch import Batch, BatchStore
    from shared.batch.store import jobs_by_line

    store, batches = JobStore(redis), BatchStore(redis)
    batch = Batch(id="batch_r", name="r", providers=["sandbox"], total=3)
    batches.create(batch)
    for line in (1, 2, 3):
        store.create(overdue_job(f"job_{line}"))
        batches.claims.claim(batches.line_slot(batch.id, line), f"job_{line}", "fp")
    redis.hset(JOB_KEY.format(job_id="job_2"), "data", too_deep())
    unreadable: list[tuple[int, str]] = []
    lines = [
        line for line, _ in jobs_by_line(batches, store, batch.id, on_unreadable=lambda *seen: unreadable.append(seen))
    ]
    assert lines == [1, 3]
    assert unreadable == [(2, "job_2")]
    assert Quarantine(redis).contains("job", "job_2")


def test_an_unreadable_quarantine_entry_is_still_listed(redis: fakeredis.FakeRedis) -> None:
    from shared.constants import QUARANTINE_KEY

    redis.hset(QUARANTINE_KEY, "batch:b1", "not json")
    [record] = Quarantine(redis).records()
    assert (record.kind, record.id) == ("batch", "b1")
    assert record.reason.startswith("(unreadable quarantine entry: 'not json'")
