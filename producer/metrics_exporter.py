"""Job metrics for Prometheus: figures counted when things happen, and gauges read from indexes, never a scan.

`JobMetricsCollector(client, providers)` reads on every scrape, in three round trips whatever the number of jobs
(two more while any batch is active, whatever the number of batches): the counters hash (shared/counters.py:
incremented by the job store's writes and the steps), the per-queue due indexes, the active batches and what they
hold, the sweeper's and the dispatcher's last pass, the dead-letter and quarantine sizes, Redis's memory, and each
provider's protection state. A Redis error fails the scrape (Prometheus then records `up == 0`) instead of
exposing stale figures. `serve(client, host, port)` exposes only this collector (no process or Python metrics)
over HTTP and blocks. `genqueue stats` is the report that reads every job; this is not.

Families (docs/interface.md lists them with their labels):
- counters: genqueue_jobs_created_total, genqueue_jobs_ended_total, genqueue_polls_total,
  genqueue_vendor_requests_total, genqueue_output_bytes_total, genqueue_webhook_attempts_total,
  genqueue_cost_usd_total, genqueue_cost_credits_total, genqueue_jobs_routed_total
- histograms: genqueue_job_status_seconds, genqueue_ready_to_webhook_seconds, genqueue_render_seconds
- gauges: genqueue_jobs (statuses a job leaves again), genqueue_steps_due, genqueue_steps_overdue,
  genqueue_batches_active, genqueue_batch_jobs_held, genqueue_sweeper_last_pass_age_seconds,
  genqueue_dispatcher_last_pass_age_seconds, genqueue_webhooks_dead_letters, genqueue_quarantined_records,
  genqueue_redis_used_memory_bytes, genqueue_redis_maxmemory_bytes, genqueue_provider_breaker_open,
  genqueue_provider_credit_paused, genqueue_provider_in_flight
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

import redis
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from shared import counters
from shared.batch import BatchStore
from shared.constants import (
    ACTIVE_BATCHES_KEY,
    DISPATCH_LAST_RUN_KEY,
    QUARANTINE_KEY,
    SWEEP_LAST_RUN_KEY,
    WEBHOOK_DEAD_LETTERS_KEY,
)
from shared.metrics import DUE_COMMANDS, QueueSteps, queue_due_commands, queue_steps
from shared.protection import BreakerState, ProviderGuard, ProviderStatus
from shared.settings import ProviderConfig

#: help text of each counter family (the name gets `genqueue_` before it and `_total` after)
COUNTER_HELP = {
    "jobs_created": "Jobs created",
    "jobs_ended": "Jobs that ended, by status and error code (none when it has no error)",
    "polls": "Vendor status polls",
    "vendor_requests": "Vendor API calls (submit, poll) and output downloads, by answer status",
    "output_bytes": "Bytes of outputs copied to the bucket",
    "webhook_attempts": "Webhook POSTs, delivered (2xx) or failed",
    "cost_usd": "What ended jobs cost, in US dollars",
    "cost_credits": "What ended jobs cost, in vendor credits",
    "jobs_routed": "Jobs sent to auto or a provider list that a vendor took, by route (model) and provider",
}
HISTOGRAM_HELP = {
    "job_status_seconds": "Seconds a job spent in a status, observed when it left it",
    "ready_to_webhook_seconds": "Seconds from the vendor reporting the job done to its first webhook POST",
    "render_seconds": "Seconds from the vendor taking a job to its reporting it done, by provider and model",
}


@dataclass
class Figures:
    """One scrape's reading of the store."""

    samples: list[counters.Sample] = field(default_factory=list)
    steps: dict[str, QueueSteps] = field(default_factory=dict)
    batches_active: int = 0
    batch_jobs_held: int = 0
    sweeper_age: float = math.nan
    dispatcher_age: float = math.nan
    dead_letters: int = 0
    quarantined: int = 0
    used_memory: int = 0
    maxmemory: int = 0
    providers: list[ProviderStatus] = field(default_factory=list)


def read_figures(client: redis.Redis, providers: list[ProviderConfig], now: float) -> Figures:
    """Everything a scrape shows, read from the store at unix time `now`."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(counters.COUNTERS_KEY)
    queue_due_commands(pipe, now)
    pipe.smembers(ACTIVE_BATCHES_KEY)
    pipe.get(SWEEP_LAST_RUN_KEY)
    pipe.get(DISPATCH_LAST_RUN_KEY)
    pipe.llen(WEBHOOK_DEAD_LETTERS_KEY)
    pipe.hlen(QUARANTINE_KEY)
    replies = pipe.execute()
    raw_counters, due = replies[0], replies[1 : 1 + DUE_COMMANDS]
    active, sweep, dispatch, dead, quarantined = replies[1 + DUE_COMMANDS :]
    memory = _memory(client)
    return Figures(
        samples=list(counters.parse(raw_counters)),
        steps=queue_steps(due),
        batches_active=len(active),
        sweeper_age=_age(sweep, now),
        dispatcher_age=_age(dispatch, now),
        dead_letters=int(dead),
        quarantined=int(quarantined),
        used_memory=int(memory.get("used_memory", 0)),
        maxmemory=int(memory.get("maxmemory", 0)),
        providers=ProviderGuard(client).status(providers, now) if providers else [],
        batch_jobs_held=BatchStore(client).held_by([_text(batch_id) for batch_id in active]),
    )


def _memory(client: redis.Redis) -> dict[str, int]:
    """Redis's INFO memory; empty where INFO is refused (some managed Redis services disable it)."""
    try:
        return cast(dict[str, int], client.info("memory"))
    except redis.ResponseError:
        return {}


def _age(raw: bytes | str | None, now: float) -> float:
    try:
        return max(now - float(raw), 0.0) if raw is not None else math.nan
    except ValueError:
        return math.nan


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def families(figures: Figures) -> list[Metric]:
    """The Prometheus metric families of one reading."""
    made: dict[str, Metric] = {}
    for name, help_text in COUNTER_HELP.items():
        made[name] = CounterMetricFamily(f"genqueue_{name}", help_text, labels=list(counters.FAMILIES[name][1]))
    for name, help_text in HISTOGRAM_HELP.items():
        made[name] = HistogramMetricFamily(f"genqueue_{name}", help_text, labels=list(counters.FAMILIES[name][1]))
    jobs = GaugeMetricFamily(
        "genqueue_jobs", "Jobs in a status they will leave again (queued, submitted, running, finalizing)",
        labels=["provider", "status"],
    )  # fmt: skip
    made["jobs"] = jobs
    for sample in figures.samples:
        family = made[sample.family]
        if isinstance(family, HistogramMetricFamily):
            bounds = [repr(bound) for bound in counters.BUCKETS] + ["+Inf"]
            family.add_metric(list(sample.labels), list(zip(bounds, sample.buckets, strict=True)), sample.total)
        else:
            family.add_metric(list(sample.labels), sample.value)  # type: ignore[attr-defined]
    return [*made.values(), *_gauges(figures)]


def _gauges(figures: Figures) -> Iterator[Metric]:
    due = GaugeMetricFamily("genqueue_steps_due", "Steps whose time has come, by queue", labels=["queue"])
    overdue = GaugeMetricFamily(
        "genqueue_steps_overdue", "Steps due for over a minute that no worker has taken, by queue", labels=["queue"]
    )
    for queue, steps in figures.steps.items():
        due.add_metric([queue], steps.due)
        overdue.add_metric([queue], steps.overdue)
    yield due
    yield overdue
    yield GaugeMetricFamily(
        "genqueue_batches_active", "Batches with work left for the dispatcher", value=figures.batches_active
    )
    yield GaugeMetricFamily(
        "genqueue_batch_jobs_held", "Batch jobs the dispatcher holds back", value=figures.batch_jobs_held
    )
    yield GaugeMetricFamily(
        "genqueue_sweeper_last_pass_age_seconds", "Seconds since the sweeper's last pass", value=figures.sweeper_age
    )
    yield GaugeMetricFamily(
        "genqueue_dispatcher_last_pass_age_seconds",
        "Seconds since the dispatcher's last pass",
        value=figures.dispatcher_age,
    )
    yield GaugeMetricFamily(
        "genqueue_webhooks_dead_letters", "Length of the webhook dead-letter list", value=figures.dead_letters
    )
    yield GaugeMetricFamily(
        "genqueue_quarantined_records",
        "Jobs and batches set aside because their stored record could not be read",
        value=figures.quarantined,
    )
    yield GaugeMetricFamily("genqueue_redis_used_memory_bytes", "Redis used_memory", value=figures.used_memory)
    yield GaugeMetricFamily("genqueue_redis_maxmemory_bytes", "Redis maxmemory (0: no limit)", value=figures.maxmemory)
    breaker = GaugeMetricFamily(
        "genqueue_provider_breaker_open", "1 while a provider's breaker is open", labels=["provider"]
    )
    paused = GaugeMetricFamily(
        "genqueue_provider_credit_paused", "1 while a provider is paused for credits", labels=["provider"]
    )
    in_flight = GaugeMetricFamily(
        "genqueue_provider_in_flight", "Jobs a provider has accepted and not finished rendering", labels=["provider"]
    )
    for status in figures.providers:
        breaker.add_metric([status.provider], 1.0 if status.breaker is BreakerState.OPEN else 0.0)
        paused.add_metric([status.provider], 0.0 if status.credit_pause is None else 1.0)
        in_flight.add_metric([status.provider], status.in_flight)
    yield breaker
    yield paused
    yield in_flight


class JobMetricsCollector(Collector):
    """Yields the families of the store behind `client`, read afresh on each collect()."""

    def __init__(
        self, client: redis.Redis, providers: list[ProviderConfig], clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.providers = providers
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        return iter(families(read_figures(self.client, self.providers, self.clock())))


def registry_for(client: redis.Redis, providers: list[ProviderConfig] | None = None) -> CollectorRegistry:
    """A registry holding only the job metrics collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobMetricsCollector(client, providers or []))
    return registry


def serve(client: redis.Redis, host: str, port: int, providers: list[ProviderConfig] | None = None) -> None:
    """Expose the job metrics of the store behind `client` at http://host:port/metrics and block until interrupted."""
    server, thread = start_http_server(port, addr=host, registry=registry_for(client, providers))
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
