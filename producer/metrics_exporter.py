"""Job-level metrics for Prometheus: a collector that reads the job store on every scrape.

`JobMetricsCollector(client)` calls `shared.metrics.collect` each time it is collected and yields the families
below; nothing is cached, so a scrape costs one SCAN of the job keys. A Redis error fails the scrape (Prometheus
then records `up == 0`) instead of exposing stale figures. `serve(redis_url, host, port)` exposes only this
collector (no process or Python metrics) over HTTP and blocks.

Families (all describe the jobs in Redis at scrape time; see shared/metrics.py for each figure):
- gauges: genqueue_jobs{provider,status}, genqueue_job_errors{provider,code}, genqueue_jobs_polled{provider},
  genqueue_job_state_count{provider,status}, genqueue_webhooks_delivered, genqueue_webhooks_given_up,
  genqueue_webhooks_dead_letters, genqueue_quarantined_records, genqueue_job_charged{provider,charged},
  genqueue_steps_due{queue}, genqueue_steps_overdue{queue}, genqueue_batches_active (the signals to autoscale
  workers on: infra/k8s/)
- counters: genqueue_job_polls_total{provider}, genqueue_job_state_seconds_total{provider,status},
  genqueue_job_cost_credits_total{provider}, genqueue_job_cost_usd_total{provider},
  genqueue_webhook_attempts_total, genqueue_webhook_failed_attempts_total
The counters sum over the jobs in the store, so they drop when jobs expire (GENQUEUE_JOB_RETENTION_DAYS, 30 by
default); Prometheus reads a drop as a counter reset, so a rate() across an expiry overstates for one window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import redis
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from shared.metrics import JobMetrics, collect
from shared.models import utcnow


class JobMetricsCollector(Collector):
    """Yields the job metric families of the job store behind `client`, read afresh on each collect()."""

    def __init__(self, client: redis.Redis, clock: Callable[[], datetime] = utcnow) -> None:
        self.client = client
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        return iter(families(collect(self.client, self.clock())))


def families(metrics: JobMetrics) -> list[Metric]:
    """The Prometheus metric families of one snapshot."""
    jobs = GaugeMetricFamily("genqueue_jobs", "Jobs in the store by provider and status", labels=["provider", "status"])
    errors = GaugeMetricFamily(
        "genqueue_job_errors", "Jobs carrying an error, by provider and error code", labels=["provider", "code"]
    )
    polls = CounterMetricFamily(
        "genqueue_job_polls_total", "Vendor polls summed over the jobs polled at least once", labels=["provider"]
    )
    polled = GaugeMetricFamily("genqueue_jobs_polled", "Jobs polled at least once", labels=["provider"])
    state_seconds = CounterMetricFamily(
        "genqueue_job_state_seconds_total",
        "Seconds jobs spent in each status (a current non-terminal status counts until now)",
        labels=["provider", "status"],
    )
    state_count = GaugeMetricFamily(
        "genqueue_job_state_count",
        "Stays in each status counted in genqueue_job_state_seconds_total",
        labels=["provider", "status"],
    )
    credits = CounterMetricFamily("genqueue_job_cost_credits_total", "Job cost in vendor credits", labels=["provider"])
    usd = CounterMetricFamily("genqueue_job_cost_usd_total", "Job cost in US dollars", labels=["provider"])
    charged = GaugeMetricFamily(
        "genqueue_job_charged",
        "Ended jobs by whether the vendor charged them (yes, no, unknown; pending: canceled, vendor still rendering)",
        labels=["provider", "charged"],
    )
    for name, provider in metrics.providers.items():
        for status, count in provider.jobs_by_status.items():
            jobs.add_metric([name, status], count)
        for code, count in provider.errors_by_code.items():
            errors.add_metric([name, code], count)
        polls.add_metric([name], provider.polls)
        polled.add_metric([name], provider.polled_jobs)
        for status, spent in provider.state_time.items():
            state_seconds.add_metric([name, status], spent.seconds)
            state_count.add_metric([name, status], spent.count)
        credits.add_metric([name], provider.cost_credits)
        usd.add_metric([name], provider.cost_usd)
        for state, count in provider.charged.items():
            charged.add_metric([name, state], count)
    due = GaugeMetricFamily(
        "genqueue_steps_due", "Steps whose due time has passed, by the queue they run on", labels=["queue"]
    )
    overdue = GaugeMetricFamily(
        "genqueue_steps_overdue",
        "Steps due for more than a minute (no worker has taken them), by the queue they run on",
        labels=["queue"],
    )
    for queue, steps in metrics.steps_due.items():
        due.add_metric([queue], steps.due)
        overdue.add_metric([queue], steps.overdue)
    hooks = metrics.webhooks
    return [
        due,
        overdue,
        GaugeMetricFamily(
            "genqueue_batches_active",
            "Batches with work left for the dispatcher, which runs on the poll workers",
            value=metrics.batches_active,
        ),
        jobs,
        errors,
        polls,
        polled,
        state_seconds,
        state_count,
        credits,
        usd,
        charged,
        CounterMetricFamily("genqueue_webhook_attempts_total", "Webhook POSTs made", value=hooks.attempts),
        CounterMetricFamily(
            "genqueue_webhook_failed_attempts_total",
            "Webhook POSTs that got no answer or a non-2xx answer",
            value=hooks.failed_attempts,
        ),
        GaugeMetricFamily(
            "genqueue_webhooks_delivered", "Jobs whose webhook event was delivered", value=hooks.delivered
        ),
        GaugeMetricFamily(
            "genqueue_webhooks_given_up", "Jobs whose webhook event was given up on", value=hooks.given_up
        ),
        GaugeMetricFamily(
            "genqueue_webhooks_dead_letters", "Length of the webhook dead-letter list", value=hooks.dead_letters
        ),
        GaugeMetricFamily(
            "genqueue_quarantined_records",
            "Jobs and batches set aside because their stored record could not be read",
            value=metrics.quarantined,
        ),
    ]


def registry_for(client: redis.Redis) -> CollectorRegistry:
    """A registry holding only the job metrics collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobMetricsCollector(client))
    return registry


def serve(client: redis.Redis, host: str, port: int) -> None:
    """Expose the job metrics of the store behind `client` at http://host:port/metrics and block until interrupted."""
    server, thread = start_http_server(port, addr=host, registry=registry_for(client))
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
