"""The exporter: counters and gauges from the store's indexes, a scrape whose Redis work does not grow with the
number of jobs, and the HTTP endpoint."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from typing import Any

import fakeredis
import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from producer import metrics_exporter
from shared import lifecycle
from shared.batch import Batch, BatchStore
from shared.constants import (
    BATCH_KEY,
    DISPATCH_LAST_RUN_KEY,
    PROVIDER_BREAKER_KEY,
    PROVIDER_CREDIT_PAUSE_KEY,
    SWEEP_LAST_RUN_KEY,
)
from shared.models import Cost, GenerationRequest, Job, JobStatus, utcnow
from shared.quarantine import Quarantine
from shared.settings import Settings
from shared.store import JobStore
from tests.support import promtool

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def series(text: str) -> Series:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: fakeredis.FakeRedis, providers: list[Any] | None = None) -> Series:
    return series(generate_latest(metrics_exporter.registry_for(client, providers)).decode())


def a_job(job_id: str, provider: str = "sandbox") -> Job:
    now = utcnow()
    return Job(
        id=job_id,
        provider=provider,
        request=GenerationRequest(model="sandbox-video", prompt="a flower opening"),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("submit", now - timedelta(seconds=5)),
    )


def test_a_jobs_life_shows_as_counters_gauges_and_histograms() -> None:
    client = fakeredis.FakeRedis()
    store = JobStore(client)
    store.create(a_job("job_a"))
    store.create(a_job("job_b"))
    store.update(
        "job_a",
        lambda job: job.model_copy(update={"status": JobStatus.SUCCEEDED, "step": None, "cost": Cost(usd=0.25)}),
    )
    got = scrape(client)
    assert got[("genqueue_jobs_created_total", (("provider", "sandbox"),))] == 2
    assert got[("genqueue_jobs_ended_total", (("code", "none"), ("provider", "sandbox"), ("status", "succeeded")))] == 1
    assert got[("genqueue_cost_usd_total", (("provider", "sandbox"),))] == 0.25
    assert got[("genqueue_jobs", (("provider", "sandbox"), ("status", "queued")))] == 1
    assert got[("genqueue_job_status_seconds_count", (("provider", "sandbox"), ("status", "queued")))] == 1
    inf = (("le", "+Inf"), ("provider", "sandbox"), ("status", "queued"))
    assert got[("genqueue_job_status_seconds_bucket", inf)] == 1
    assert got[("genqueue_steps_due", (("queue", "submit"),))] == 1  # job_b's submit, due 5 s ago
    assert not any(name.startswith(("process_", "python_")) for name, _ in got)


def test_gauges_for_passes_batches_and_providers() -> None:
    client = fakeredis.FakeRedis()
    now = time.time()
    client.set(SWEEP_LAST_RUN_KEY, repr(now - 40))
    client.set(DISPATCH_LAST_RUN_KEY, repr(now - 2))
    batches = BatchStore(client)
    batches.create(Batch(id="batch_t", name="t", providers=["sandbox", "vicsee"], total=3))
    for line, (provider, job_id) in enumerate([("sandbox", "job_1"), ("vicsee", "job_2"), ("vicsee", "job_3")]):
        batches.hold("batch_t", provider, job_id, line + 1)
    client.hset(PROVIDER_BREAKER_KEY.format(name="sandbox"), mapping={"failures": 5, "open_until": now + 30})
    client.hset(PROVIDER_CREDIT_PAUSE_KEY.format(name="vicsee"), mapping={"since": now, "refused_at": now})
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    providers = [settings.provider("sandbox"), settings.provider("vicsee")]
    got = scrape(client, providers)
    assert 39 <= got[("genqueue_sweeper_last_pass_age_seconds", ())] < 45
    assert 1 <= got[("genqueue_dispatcher_last_pass_age_seconds", ())] < 8
    assert got[("genqueue_provider_breaker_open", (("provider", "sandbox"),))] == 1
    assert got[("genqueue_provider_breaker_open", (("provider", "vicsee"),))] == 0
    assert got[("genqueue_provider_credit_paused", (("provider", "vicsee"),))] == 1
    assert got[("genqueue_batches_active", ())] == 1
    assert got[("genqueue_batch_jobs_held", ())] == 3


def test_a_pass_that_never_ran_has_no_age() -> None:
    got = scrape(fakeredis.FakeRedis())
    assert got[("genqueue_sweeper_last_pass_age_seconds", ())] != got[("genqueue_sweeper_last_pass_age_seconds", ())]


class CountingRedis(fakeredis.FakeRedis):
    """Counts the commands it is sent, pipelined or not, and the round trips (a pipeline's execute is one)."""

    commands = 0
    round_trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        CountingRedis.commands += 1
        CountingRedis.round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        original = pipe.execute

        def execute(raise_on_error: bool = True) -> Any:
            CountingRedis.commands += len(pipe.command_stack)
            CountingRedis.round_trips += 1
            return original(raise_on_error)

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe


@pytest.mark.parametrize("jobs", [10, 2000])
def test_a_scrape_sends_the_same_commands_at_10_jobs_and_at_2000(jobs: int) -> None:
    client = CountingRedis()
    store = JobStore(client)
    for n in range(jobs):
        store.create(a_job(f"job_{n}", provider="sandbox" if n % 2 else "vicsee"))
    registry = metrics_exporter.registry_for(client)
    CountingRedis.commands = 0
    generate_latest(registry)
    assert CountingRedis.commands == SCRAPE_COMMANDS


#: HGETALL, 10 ZCOUNTs, SMEMBERS, 2 GETs, LLEN, HLEN, INFO (no active batch, no provider configured)
SCRAPE_COMMANDS = 17


def held_batches(client: fakeredis.FakeRedis, count: int) -> list[str]:
    """`count` active batches of two providers, batch n holding n + 1 jobs of each."""
    batches = BatchStore(client)
    ids = [f"batch_{n}" for n in range(count)]
    for n, batch_id in enumerate(ids):
        batches.create(Batch(id=batch_id, name=batch_id, providers=["sandbox", "vicsee"], total=2 * (n + 1)))
        for line in range(n + 1):
            batches.hold(batch_id, "sandbox", f"{batch_id}_s{line}", 2 * line + 1)
            batches.hold(batch_id, "vicsee", f"{batch_id}_v{line}", 2 * line + 2)
    return ids


@pytest.mark.parametrize("count", [1, 5])
def test_the_held_jobs_of_any_number_of_batches_take_two_round_trips(count: int) -> None:
    client = CountingRedis()
    ids = held_batches(client, count)
    CountingRedis.commands = CountingRedis.round_trips = 0
    assert BatchStore(client).held_by(ids) == sum(2 * (n + 1) for n in range(count))
    assert CountingRedis.round_trips == 2
    assert CountingRedis.commands == count + 2 * count  # an HGET per batch, a ZCARD per batch and provider
    CountingRedis.commands = CountingRedis.round_trips = 0
    generate_latest(metrics_exporter.registry_for(client))
    assert CountingRedis.round_trips == 2 + 2  # the scrape's pipeline and INFO, then the two for the batches
    assert CountingRedis.commands == SCRAPE_COMMANDS + 3 * count


def test_a_garbage_or_missing_batch_record_is_skipped_and_the_others_count() -> None:
    client = CountingRedis()
    ids = held_batches(client, 3)  # batch_0 holds 2 jobs, batch_1 4, batch_2 6
    client.hset(BATCH_KEY.format(batch_id="batch_1"), "data", "{not json")
    BatchStore(client).activate("batch_gone")  # active, with no record at all
    CountingRedis.commands = CountingRedis.round_trips = 0
    assert BatchStore(client).held_by([*ids, "batch_gone"]) == 2 + 6
    assert CountingRedis.round_trips == 2 + 1  # and the write quarantining batch_1, as BatchStore.get makes
    assert Quarantine(client).contains("batch", "batch_1")
    assert not Quarantine(client).contains("batch", "batch_gone")
    got = scrape(client)
    assert got[("genqueue_batches_active", ())] == 4
    assert got[("genqueue_batch_jobs_held", ())] == 2 + 6
    assert got[("genqueue_quarantined_records", ())] == 1


def test_no_active_batch_costs_no_round_trip() -> None:
    client = CountingRedis()
    CountingRedis.commands = CountingRedis.round_trips = 0
    assert BatchStore(client).held_by([]) == 0
    assert CountingRedis.round_trips == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_scrapes_over_http() -> None:
    client = fakeredis.FakeRedis()
    JobStore(client).create(a_job("job_a"))
    port = free_port()
    threading.Thread(target=metrics_exporter.serve, args=(client, "127.0.0.1", port), daemon=True).start()
    deadline = time.monotonic() + 10
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert response.status_code == 200
    assert series(response.text)[("genqueue_jobs_created_total", (("provider", "sandbox"),))] == 1


def test_the_exposition_passes_promtool_and_holds_exactly_the_catalog_the_rules_and_dashboard_use() -> None:
    client = fakeredis.FakeRedis()
    store = JobStore(client)
    store.create(a_job("job_a"))
    store.update(
        "job_a",
        lambda job: job.model_copy(update={"status": JobStatus.SUCCEEDED, "step": None, "cost": Cost(usd=0.25)}),
    )
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    text = generate_latest(metrics_exporter.registry_for(client, [settings.provider("sandbox")])).decode()
    assert promtool.check_metrics(text) == ""
    exposed = {family.name: family.type for family in text_string_to_metric_families(text)}
    # the parser names a counter family without its _total
    catalog = {name.removesuffix("_total"): family.kind for name, family in promtool.METRICS.items()}
    assert exposed == {name: kind for name, kind in catalog.items() if name != "up"}
