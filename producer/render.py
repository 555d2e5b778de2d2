"""How the command line shows a job to a person."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from shared.models import HISTORY_HEAD, Job, Route
from shared.protection import ProviderStatus


def job_lines(job: Job) -> list[str]:
    """A job as a few readable lines."""
    lines = [f"{job.id}  {job.status.value}  {job.provider}/{job.model}"]
    if job.provider_task_id:
        lines.append(f"  vendor task: {job.provider_task_id}")
    cost = ", ".join(
        f"{value:g} {unit}" for unit, value in (("credits", job.cost.credits), ("USD", job.cost.usd)) if value
    )
    if cost:
        lines.append(f"  cost: {cost}")
    for output in job.outputs:
        lines.append(f"  output: s3://{output.bucket}/{output.key}  {output.size} bytes  {output.content_type}")
        lines.append(f"          {output.url}")
    if job.error:
        lines.append(f"  error: {job.error.code}: {job.error.message}")
    if job.webhook:
        state = "delivered" if job.webhook.delivered else (job.webhook.gave_up or "pending")
        lines.append(f"  webhook: {job.webhook.event_type} {job.webhook.event_id} {state}")
    if job.route is not None:
        lines.extend(route_lines(job.route))
    return lines


def route_lines(route: Route) -> list[str]:
    """A route's latest choice: the policy, each candidate with its estimate and why it was passed over, and the
    providers that refused the job without charging."""
    lines = [f"  route: {route.model}, {route.policy}, chose {route.chosen or '(none yet)'}"]
    for found in route.candidates:
        usd = "?" if found.estimate_usd is None else f"${found.estimate_usd:g}"
        render = "" if found.render_seconds is None else f", renders in {found.render_seconds:.0f} s"
        verdict = "chosen" if found.provider == route.chosen else (found.skipped or "eligible")
        lines.append(f"    {found.provider}/{found.model}: {usd}{render}: {verdict}")
    for failover in route.failovers:
        lines.append(f"    refused by {failover.provider}: {failover.code}: {failover.message}")
    return lines


def history_lines(job: Job) -> list[str]:
    """The job's step runs, oldest first, one line each: start time, step, attempt, answer, duration, outcome."""
    lines = [f"{'started (UTC)':23}  {'step':15} {'try':>3}  {'answer':9} {'took':>8}  outcome"]
    for n, record in enumerate(job.history):
        if n == HISTORY_HEAD and job.history_dropped:
            lines.append(f"… {job.history_dropped} more runs not kept …")
        answer = "-" if record.answer is None else str(record.answer)
        started = record.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
        lines.append(
            f"{started:23}  {record.step:15} {record.attempt:>3}  {answer:9} {record.seconds:>7.2f}s  {record.outcome}"
        )
    if not job.history:
        lines.append("(no step has run yet)")
    return lines


def progress_printer(stream: TextIO) -> Callable[[Job], None]:
    """An `on_change` callback for Producer.wait that prints each status/progress change with the elapsed time."""
    started = time.monotonic()

    def show(job: Job) -> None:
        progress = f" {job.progress * 100:.0f}%" if job.progress is not None else ""
        stream.write(f"[{time.monotonic() - started:6.1f}s] {job.id} {job.status.value}{progress}\n")
        stream.flush()

    return show


def provider_lines(rows: list[ProviderStatus]) -> list[str]:
    """Provider limits as a table: tokens, in flight, breaker and credit pause."""
    lines = [f"{'provider':<12} {'tokens':>9} {'in flight':>11} {'breaker':<10} {'failures':>8}  credit pause"]
    for row in rows:
        pause = "-"
        if row.credit_pause is not None:
            next_probe = max(0.0, row.credit_pause.next_probe_at - time.time())
            pause = f"PAUSED ({row.credit_pause.message}); next probe in {next_probe:.0f}s"
        lines.append(
            f"{row.provider:<12} {row.tokens:>4.1f}/{row.burst:<4} {row.in_flight:>5}/{row.max_in_flight:<5} "
            f"{row.breaker.value:<10} {row.consecutive_failures:>8}  {pause}"
        )
    return lines


def human_duration(seconds: float) -> str:
    """3.2s, 4m10s, 2h05m, 3d04h."""
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"
