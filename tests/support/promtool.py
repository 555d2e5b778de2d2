"""Prometheus's promtool for the tests, and the catalog of metric families `genqueue metrics serve` exposes.

`promtool_binary()` finds promtool (`$PROMTOOL`, else on PATH) or raises `PromtoolMissing`, whose message says to
run `infra/local/ensure-system-deps.sh --test` (it installs Debian's `prometheus` package, which carries promtool).
`check_metrics(text)` lints a text exposition with `promtool check metrics`; `run(...)` runs any promtool command.

`METRICS` is the one list of names the monitoring files (infra/monitoring/) may use and the exporter must expose:
tests/unit/test_monitoring_files.py checks every alert rule and dashboard query against it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = "run `infra/local/ensure-system-deps.sh --test` (it installs promtool, Debian package `prometheus`)"


class PromtoolMissing(RuntimeError):
    """promtool is not installed (or $PROMTOOL does not name an executable)."""


def promtool_binary() -> str:
    """The path of promtool: `$PROMTOOL` when set, else the first `promtool` on PATH."""
    configured = os.environ.get("PROMTOOL")
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise PromtoolMissing(f"PROMTOOL={configured} is not an executable file; unset it or {INSTALL_HINT}")
    found = shutil.which("promtool")
    if found is None:
        raise PromtoolMissing(f"promtool is not installed: {INSTALL_HINT}")
    return found


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`promtool ARGS…`, its output captured as text; never raises on a non-zero exit status."""
    return subprocess.run(
        [promtool_binary(), *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def check_metrics(text: str) -> str:
    """promtool's complaints about the text exposition `text` (`promtool check metrics`), empty when it is clean.

    promtool exits 3 with lint findings (one per line: a counter without `_total`, a family without HELP, …) and
    1 when the text does not parse; both come back as its output.
    """
    result = run("check", "metrics", stdin=text)
    if result.returncode == 0:
        return ""
    output = (result.stdout + result.stderr).strip()
    return output or f"promtool check metrics exited {result.returncode} without saying why"


@dataclass(frozen=True)
class Family:
    """One metric family: counter, gauge or histogram, and its labels (besides job, instance and a bucket's le)."""

    kind: str
    labels: tuple[str, ...] = ()


#: every family the exporter exposes, by its exposed name (a counter's with `_total`)
METRICS: dict[str, Family] = {
    # counters: kept in Redis, incremented when things happen, never decrease
    "genqueue_jobs_created_total": Family("counter", ("provider",)),
    "genqueue_jobs_ended_total": Family("counter", ("provider", "status", "code")),
    "genqueue_polls_total": Family("counter", ("provider",)),
    "genqueue_vendor_requests_total": Family("counter", ("provider", "kind", "status")),
    "genqueue_output_bytes_total": Family("counter", ("provider",)),
    "genqueue_webhook_attempts_total": Family("counter", ("outcome",)),
    "genqueue_cost_usd_total": Family("counter", ("provider",)),
    "genqueue_cost_credits_total": Family("counter", ("provider",)),
    "genqueue_jobs_routed_total": Family("counter", ("route", "provider")),
    # gauges
    "genqueue_jobs": Family("gauge", ("provider", "status")),
    "genqueue_steps_due": Family("gauge", ("queue",)),
    "genqueue_steps_overdue": Family("gauge", ("queue",)),
    "genqueue_batches_active": Family("gauge"),
    "genqueue_batch_jobs_held": Family("gauge"),
    "genqueue_sweeper_last_pass_age_seconds": Family("gauge"),
    "genqueue_dispatcher_last_pass_age_seconds": Family("gauge"),
    "genqueue_webhooks_dead_letters": Family("gauge"),
    "genqueue_quarantined_records": Family("gauge"),
    "genqueue_redis_used_memory_bytes": Family("gauge"),
    "genqueue_redis_maxmemory_bytes": Family("gauge"),
    "genqueue_provider_breaker_open": Family("gauge", ("provider",)),
    "genqueue_provider_credit_paused": Family("gauge", ("provider",)),
    "genqueue_provider_in_flight": Family("gauge", ("provider",)),
    # histograms (_bucket{le}, _sum, _count)
    "genqueue_job_status_seconds": Family("histogram", ("provider", "status")),
    "genqueue_ready_to_webhook_seconds": Family("histogram", ("provider",)),
    "genqueue_render_seconds": Family("histogram", ("provider", "model")),
}

#: labels every scraped series carries, whatever its family
TARGET_LABELS = ("job", "instance")


def series_names() -> dict[str, tuple[str, Family]]:
    """Every series name the exporter's families give, each with its family's name and the family:
    a histogram's `_bucket`, `_sum` and `_count`, the others' own name."""
    names: dict[str, tuple[str, Family]] = {}
    for name, family in METRICS.items():
        suffixes = ("_bucket", "_sum", "_count") if family.kind == "histogram" else ("",)
        for suffix in suffixes:
            names[name + suffix] = (name, family)
    return names
