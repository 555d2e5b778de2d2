"""`genqueue stats` and `genqueue metrics serve`: job-level metrics at a terminal and for Prometheus.

`stats` reads every job once (shared.metrics.collect) and prints, per provider, jobs by status, errors by code,
average polls per polled job, average time in each status, cost, ended jobs by whether they were charged; then
one webhooks line. `--json` prints the
JobMetrics snapshot as JSON instead; `--by metadata.KEY` prints jobs by outcome and cost per value of that key.
`metrics_serve` runs the Prometheus exporter (producer.metrics_exporter) and blocks. Both are plain functions with
typer annotations; producer/cli.py registers them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated

import redis
import typer

from producer.cli_common import refuse
from producer.render import human_duration
from shared import logs
from shared.metrics import JobMetrics, StateTime, collect, read_jobs, summarize_by_metadata
from shared.models import STATUS_RANK, JobStatus, utcnow
from shared.settings import get_settings
from shared.store import store_client

#: statuses a job spends time in (terminal statuses are where it stops)
TIMED_STATUSES = [status for status in JobStatus if not status.terminal]
TERMINAL_ORDER = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED]


def stats(
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
    by: Annotated[
        str | None, typer.Option("--by", help="metadata.KEY: jobs and cost per value of that metadata key")
    ] = None,
) -> None:
    """Show job metrics per provider: status counts, errors, polls, time in each status, cost, webhooks.

    With `--by metadata.KEY`, one row per value of that key instead (a customer, a project): jobs by outcome and
    what they cost, in credits and USD.
    """
    if by is None:
        typer.echo(stats_text(_client(), as_json))
        return
    field, _, key = by.partition(".")
    if field != "metadata" or not key:
        refuse(f"--by must be metadata.KEY (a metadata key such as metadata.customer), not {by!r}")
    typer.echo(grouped_text(_client(), key, as_json))


def metrics_serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 9808,
) -> None:
    """Serve job metrics for Prometheus at http://HOST:PORT/metrics (counters and gauges read on each scrape)."""
    from producer.metrics_exporter import serve

    settings = get_settings()
    logs.configure(settings.log_format, "INFO", settings.secrets())
    typer.echo(f"serving job metrics at http://{host}:{port}/metrics", err=True)
    serve(_client(), host, port, settings.usable_providers())


def stats_text(client: redis.Redis, as_json: bool) -> str:
    """What `stats` prints for the job store behind `client`."""
    metrics = collect(client, utcnow())
    return metrics.model_dump_json(indent=2) if as_json else "\n".join(stats_lines(metrics))


def grouped_text(client: redis.Redis, key: str, as_json: bool) -> str:
    """What `stats --by metadata.KEY` prints: per value, jobs by status and cost (credits and USD)."""
    groups = summarize_by_metadata(read_jobs(client), key, utcnow())
    if as_json:
        return json.dumps({value: _group_json(metrics) for value, metrics in groups.items()}, indent=2)
    if not groups:
        return "no jobs"
    rows = [
        [
            value,
            str(metrics.jobs),
            *(str(_count_of(metrics, status)) for status in TERMINAL_ORDER),
            _amount(sum(p.cost_credits for p in metrics.providers.values())),
            _amount(sum(p.cost_usd for p in metrics.providers.values())),
        ]
        for value, metrics in groups.items()
    ]
    return "\n".join(_table([f"metadata.{key}", "jobs", *(s.value for s in TERMINAL_ORDER), "credits", "usd"], rows))


def _group_json(metrics: JobMetrics) -> dict[str, object]:
    return {
        "jobs": metrics.jobs,
        "jobs_by_status": {status.value: _count_of(metrics, status) for status in JobStatus},
        "cost": {
            "credits": round(sum(p.cost_credits for p in metrics.providers.values()), 6),
            "usd": round(sum(p.cost_usd for p in metrics.providers.values()), 6),
        },
    }


#: how ended jobs stand with their vendor (shared/costs.py); `pending`: canceled, the vendor's task still followed
CHARGED_ORDER = ("yes", "no", "unknown", "pending")


def _count_of(metrics: JobMetrics, status: JobStatus) -> int:
    return sum(provider.jobs_by_status.get(status.value, 0) for provider in metrics.providers.values())


def _amount(value: float) -> str:
    return f"{round(value, 6):g}"


def stats_lines(metrics: JobMetrics) -> list[str]:
    """A snapshot as aligned text tables."""
    if not metrics.providers:
        return ["no jobs", _webhook_line(metrics)]
    statuses = sorted(JobStatus, key=lambda status: STATUS_RANK[status])
    counts = _table(
        ["provider", *(status.value for status in statuses), "total"],
        [
            [
                name,
                *(str(provider.jobs_by_status.get(status.value, 0)) for status in statuses),
                str(provider.jobs),
            ]
            for name, provider in metrics.providers.items()
        ],
    )
    times = _table(
        ["avg time in", *(status.value for status in TIMED_STATUSES)],
        [
            [name, *(_average_time(provider.state_time.get(status.value)) for status in TIMED_STATUSES)]
            for name, provider in metrics.providers.items()
        ],
    )
    other = _table(
        ["provider", "polls/job", "credits", "usd", "errors"],
        [
            [
                name,
                "-" if provider.average_polls is None else f"{provider.average_polls:.1f}",
                f"{provider.cost_credits:.2f}",
                f"{provider.cost_usd:.2f}",
                ", ".join(f"{code} {count}" for code, count in sorted(provider.errors_by_code.items())) or "-",
            ]
            for name, provider in metrics.providers.items()
        ],
        free_text_last=True,
    )
    charged = _table(
        ["charged", *CHARGED_ORDER],
        [
            [name, *(str(provider.charged.get(kind, 0)) for kind in CHARGED_ORDER)]
            for name, provider in metrics.providers.items()
        ],
    )
    quarantined = (
        [f"quarantined records: {metrics.quarantined} (genqueue quarantine list)"] if metrics.quarantined else []
    )
    return [*counts, "", *times, "", *other, "", *charged, "", _webhook_line(metrics), *quarantined]


def _webhook_line(metrics: JobMetrics) -> str:
    hooks = metrics.webhooks
    return (
        f"webhooks: {hooks.attempts} attempts, {hooks.failed_attempts} failed, {hooks.delivered} delivered, "
        f"{hooks.given_up} given up, {hooks.dead_letters} dead letters"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], free_text_last: bool = False) -> list[str]:
    """Rows as aligned text: the first column (and the last, when free text) left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {0, len(header) - 1} if free_text_last else {0}

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(header), *(line(row) for row in rows)]


def _average_time(spent: StateTime | None) -> str:
    return "-" if spent is None or spent.average is None else human_duration(spent.average)


def _client() -> redis.Redis:
    settings = get_settings()
    return store_client(settings)
