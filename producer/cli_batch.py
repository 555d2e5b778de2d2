"""`genqueue batch submit|status|report|retry`: bulk runs from a JSON Lines or CSV file (INTERFACE.md)."""

from __future__ import annotations

import csv
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from producer.batch import REPORT_COLUMNS, BatchOptions, BatchProducer, Plan, parse_when, report_row
from producer.cli_common import producer, refuse
from producer.render import human_duration
from shared.errors import GenqueueError
from shared.models import Budget, JobStatus

batch_app = typer.Typer(no_args_is_help=True, help="Bulk runs: submit a file of jobs, follow it, report, retry.")

#: how long `--watch` waits, once every job has ended, for the dispatcher to complete the batch
SETTLE_WAIT_SECONDS = 10.0
ORDER = [status.value for status in JobStatus]


def parse_time(value: str, option: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (a time without a zone is UTC) or a delay from now such as `+30m`, `2h`, `1d`; refused
    (exit 2) otherwise."""
    try:
        return parse_when(value, option, now)
    except ValueError as exc:
        refuse(str(exc))


@batch_app.command("submit")
def batch_submit(
    file: Annotated[Path, typer.Argument(help="JSON Lines (.jsonl) or CSV (.csv), one job a line")],
    name: Annotated[str | None, typer.Option(help="the batch's name; the same name again resumes it")] = None,
    not_before: Annotated[str | None, typer.Option(help="start no earlier: ISO 8601 time or +30m, 2h")] = None,
    deadline: Annotated[str | None, typer.Option(help="jobs not submitted by then end canceled")] = None,
    budget_credits: Annotated[float | None, typer.Option(help="submit nothing past this many credits")] = None,
    budget_usd: Annotated[float | None, typer.Option(help="submit nothing past this many US dollars")] = None,
    webhook: Annotated[str | None, typer.Option(help="jobs' webhook where a line names none; batch.completed")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="enqueue the valid lines anyway")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and its cost; enqueue nothing")] = False,
) -> None:
    """Check a whole batch file, then enqueue it (nothing at all if any line is bad, unless --skip-invalid)."""
    if budget_credits is not None and budget_usd is not None:
        refuse("give --budget-credits or --budget-usd, not both")
    budget = None
    if budget_credits is not None or budget_usd is not None:
        amount = budget_credits if budget_credits is not None else budget_usd
        if amount is None or amount <= 0:
            refuse("a budget must be more than 0")
        budget = Budget(currency="credits" if budget_credits is not None else "usd", amount=amount)
    options = BatchOptions(
        name=name or file.stem,
        not_before=parse_time(not_before, "--not-before") if not_before else None,
        deadline=parse_time(deadline, "--deadline") if deadline else None,
        budget=budget,
        webhook_url=webhook,
    )
    if options.not_before and options.deadline and options.deadline <= options.not_before:
        refuse("--deadline must come after --not-before")
    batches = BatchProducer(producer())
    try:
        plan = batches.plan(file, options)
    except (ValueError, GenqueueError) as exc:
        refuse(exc.message if isinstance(exc, GenqueueError) else str(exc))
    for line, reason in plan.refused:
        typer.echo(f"{file}:{line}: {reason}", err=True)
    if dry_run:
        print_plan(plan, options)
    if plan.refused and not skip_invalid:
        refuse(f"{len(plan.refused)} of {len(plan.refused) + len(plan.jobs)} lines refused; nothing enqueued")
    if dry_run:
        return
    if not plan.jobs:
        refuse("no valid line to enqueue")
    console = Console(stderr=True)
    with Progress(
        TextColumn("enqueueing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    ) as bar:
        task = bar.add_task("enqueue", total=len(plan.jobs))
        try:
            result = batches.enqueue(plan, options, on_progress=lambda done: bar.update(task, completed=done))
        except GenqueueError as exc:
            refuse(exc.message)
    verb = "created" if result.created else "resumed"
    typer.echo(
        f"batch {result.batch.name} ({result.batch.id}) {verb}: {result.enqueued} jobs enqueued"
        + (f", {result.already} already enqueued before" if result.already else "")
        + (f", {len(plan.refused)} lines skipped" if plan.refused else "")
    )


def print_plan(plan: Plan, options: BatchOptions) -> None:
    """The dry run's answer: jobs and estimated cost per provider and in total."""
    typer.echo(f"batch {options.name}: {len(plan.jobs)} jobs would be enqueued, {len(plan.refused)} lines refused")
    rows = plan.by_provider()
    width = max([12, *map(len, rows)])
    typer.echo(f"{'provider':<{width}} {'jobs':>6} {'credits':>12} {'usd':>10}")
    total_credits: float | None = 0.0
    total_usd: float | None = 0.0
    for provider, (jobs, credits, usd) in rows.items():
        typer.echo(f"{provider:<{width}} {jobs:>6} {_amount(credits):>12} {_amount(usd):>10}")
        total_credits = None if total_credits is None or credits is None else total_credits + credits
        total_usd = None if total_usd is None or usd is None else total_usd + usd
    typer.echo(f"{'total':<{width}} {len(plan.jobs):>6} {_amount(total_credits):>12} {_amount(total_usd):>10}")
    if options.budget is not None:
        typer.echo(f"budget: {options.budget.amount:g} {options.budget.currency}")
    for label, when in (("not before", options.not_before), ("deadline", options.deadline)):
        if when is not None:
            typer.echo(f"{label}: {when.isoformat()}")


def _amount(value: float | None) -> str:
    return "unknown" if value is None else f"{value:g}"


@batch_app.command("status")
def batch_status(
    name: Annotated[str, typer.Argument(help="the batch's name (or id)")],
    watch: Annotated[bool, typer.Option("--watch", help="a live progress bar until the batch ends")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Counts by status, cost so far and an ETA; --watch follows it live."""
    batches = BatchProducer(producer())
    try:
        batch = batches.get(name)
    except GenqueueError as exc:
        refuse(exc.message)
    if as_json and not watch:
        typer.echo(json.dumps(batches.summary(batch), indent=2))
        return
    if not watch:
        summary = batches.summary(batch)
        typer.echo(status_line(summary, time.time() - batch.created_at.timestamp()))
        if (warning := dispatcher_warning(summary, datetime.now(UTC))) is not None:
            typer.echo(f"genqueue: warning: {warning}", err=True)
        return
    final = watch_batch(batches, name)
    typer.echo(json.dumps(final, indent=2) if as_json else status_line(final, 0))


def counts_text(summary: dict[str, Any]) -> str:
    """Counts by status in lifecycle order: `queued 75, succeeded 20, failed 5`."""
    counts: dict[str, int] = summary["counts"]
    return ", ".join(f"{status} {counts[status]}" for status in ORDER if counts.get(status))


def cost_text(summary: dict[str, Any]) -> str:
    """What vendors charged so far: `25 credits`, `20 credits + 0.3 usd`, or `0`."""
    cost = summary["cost"]
    return " + ".join(f"{cost[unit]:g} {unit}" for unit in ("credits", "usd") if cost[unit]) or "0"


def status_line(summary: dict[str, Any], elapsed: float) -> str:
    """One line: done/total, counts by status, cost, ETA."""
    ended, total = summary["ended"], summary["total"]
    parts = [f"{summary['name']}: {ended}/{total} ended", counts_text(summary), f"cost {cost_text(summary)}"]
    if summary["completed_at"]:
        parts.append("completed")
    elif ended and elapsed > 0:
        parts.append(f"ETA {human_duration((total - ended) * elapsed / ended)}")
    return "  ".join(parts)


def dispatcher_warning(summary: dict[str, Any], now: datetime) -> str | None:
    """Why the batch cannot start, when its held jobs wait for a dispatcher that is not running; else None."""
    dispatcher = summary["dispatcher"]
    if not dispatcher["stale"]:
        return None
    if dispatcher["last_run"] is None:
        since = "yet"
    else:
        quiet = (now - datetime.fromisoformat(dispatcher["last_run"])).total_seconds()
        since = f"for {human_duration(quiet)}"
    return f"jobs are held but no dispatcher has run {since}: start `celery -A workers beat`"


def watch_batch(batches: BatchProducer, name: str) -> dict[str, Any]:
    """A live progress bar (on stderr) with counts by status, cost and ETA, until the batch completes; its summary
    then."""
    batch = batches.get(name)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(batch.name, total=batch.total)
        settled_wait: float | None = None
        warned = False
        while True:
            summary = batches.summary(batches.get(name))
            ended = summary["ended"]
            warning = dispatcher_warning(summary, datetime.now(UTC))
            if warning is not None and not warned:
                bar.console.print(f"genqueue: warning: {warning}", markup=False, highlight=False)
            warned = warning is not None
            description = f"{name} [{counts_text(summary)}] cost {cost_text(summary)}"
            bar.update(task, completed=ended, total=summary["total"], description=description)
            # the dispatcher completes the batch (and settles its cost) within a pass of the last job ending
            if summary["completed_at"]:
                break
            if ended >= summary["total"] and not summary["held"]:
                settled_wait = settled_wait or time.monotonic() + SETTLE_WAIT_SECONDS
                if time.monotonic() > settled_wait:  # no dispatcher running (beat down?): stop all the same
                    break
            time.sleep(1.0)
    return summary


@batch_app.command("report")
def batch_report(
    name: Annotated[str, typer.Argument(help="the batch's name (or id)")],
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl")] = "jsonl",
) -> None:
    """Every job of the batch in the file's line order, with its outputs or its error."""
    if fmt not in ("csv", "jsonl"):
        refuse(f"--format must be csv or jsonl, not {fmt!r}")
    batches = BatchProducer(producer())
    try:
        batch = batches.get(name)
    except GenqueueError as exc:
        refuse(exc.message)
    writer = csv.DictWriter(sys.stdout, REPORT_COLUMNS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()

    def unreadable(line: int, job_id: str) -> None:
        typer.echo(f"genqueue: warning: line {line}: job {job_id} is unreadable (genqueue quarantine list)", err=True)

    for line, job in batches.jobs(batch, on_unreadable=unreadable):
        if writer is None:
            typer.echo(json.dumps(job.public()))
            continue
        writer.writerow(report_row(line, job))


@batch_app.command("retry")
def batch_retry(
    name: Annotated[str, typer.Argument(help="the batch's name (or id)")],
    failed: Annotated[
        bool, typer.Option("--failed", help="re-enqueue the failed jobs as new jobs of the batch")
    ] = False,
) -> None:
    """Re-enqueue the batch's failed jobs as new jobs of the same batch."""
    if not failed:
        refuse("say what to retry: --failed")
    batches = BatchProducer(producer())
    try:
        batch = batches.get(name)
        count = batches.retry_failed(batch)
    except GenqueueError as exc:
        refuse(exc.message)
    typer.echo(f"batch {batch.name}: {count} failed jobs re-enqueued")
