"""The `genqueue` command line (INTERFACE.md): submit, status, cancel, batches, keys, the HTTP API, the sandbox.

Exit status: 0 succeeded (or enqueued), 1 the job failed or was canceled, 2 refused before anything was enqueued
(with a one-line reason on stderr), 3 the wait ran out before the job ended.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Annotated, Any

import redis
import typer

from producer.api import JobNotFound
from producer.cli_batch import batch_app
from producer.cli_common import EXIT_FAILED, EXIT_REFUSED, EXIT_WAIT_TIMEOUT, producer, refuse
from producer.cli_keys import keys_app
from producer.render import history_lines, job_lines, progress_printer, provider_lines
from producer.stats_cli import metrics_serve, stats
from shared import logs
from shared.errors import GenqueueError
from shared.models import Job, JobStatus
from shared.quarantine import UnreadableRecord
from shared.settings import get_settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="genqueue: AI image and video generation jobs.",
)


def parse_pairs(pairs: list[str], what: str, as_json: bool) -> dict[str, Any]:
    """KEY=VALUE pairs as a dict; values parsed as JSON where they parse (when `as_json`), else kept as strings."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            refuse(f"{what} must be KEY=VALUE, got {pair!r}")
        if as_json:
            try:
                parsed[key.strip()] = json.loads(value)
            except ValueError:
                parsed[key.strip()] = value
        else:
            parsed[key.strip()] = value
    return parsed


def print_job(job: Job, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(job.public(), indent=2))
    else:
        typer.echo("\n".join(job_lines(job)))


def exit_for(job: Job) -> int:
    if job.status is JobStatus.SUCCEEDED:
        return 0
    return EXIT_FAILED if job.status.terminal else EXIT_WAIT_TIMEOUT


@app.command()
def submit(
    provider: Annotated[
        str,
        typer.Option(
            help="provider name, e.g. vicsee, veogen, gateway, veo3api, sandbox; or auto (any provider of the"
            " model's route), or a comma-separated list of them"
        ),
    ],
    model: Annotated[str, typer.Option(help="model id of that provider; with auto or a list, the route's model")],
    prompt: Annotated[str, typer.Option(help="what to generate")] = "",
    option: Annotated[list[str], typer.Option("--option", help="KEY=VALUE of the unified request")] = [],  # noqa: B006
    image: Annotated[list[str], typer.Option("--image", help="image input: https URL or local file")] = [],  # noqa: B006
    webhook: Annotated[str | None, typer.Option(help="URL to POST the signed completion event to")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="the same key gives back the same job for 24 h")] = None,
    metadata: Annotated[list[str], typer.Option("--metadata", help="KEY=VALUE kept on the job")] = [],  # noqa: B006
    wait: Annotated[bool, typer.Option("--wait", help="wait until the job ends and print it")] = False,
    timeout: Annotated[float | None, typer.Option(help="with --wait: stop waiting after this many seconds")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the job as JSON")] = False,
    route_policy: Annotated[
        str, typer.Option(help="with auto or a list: cheapest, fastest, or preferred (the list's order)")
    ] = "cheapest",
) -> None:
    """Enqueue a generation job; print its id (or the job, with --json or --wait)."""
    options = parse_pairs(option, "--option", as_json=True)
    meta = parse_pairs(metadata, "--metadata", as_json=False)
    client = producer()
    try:
        job = client.submit(provider, model, prompt, options, image, webhook, meta, idempotency_key, route_policy)
    except GenqueueError as exc:
        refuse(exc.message)
    if not wait:
        if as_json:
            print_job(job, as_json=True)
        else:
            typer.echo(job.id)
        return
    job = client.wait(job.id, timeout, on_change=progress_printer(sys.stderr))
    print_job(job, as_json)
    raise typer.Exit(exit_for(job))


@app.command()
def status(
    job_id: Annotated[str, typer.Argument(help="the job id submit printed")],
    as_json: Annotated[bool, typer.Option("--json", help="print the job as JSON")] = False,
    with_history: Annotated[bool, typer.Option("--history", help="and every step run: time, try, answer")] = False,
) -> None:
    """Print a job's current state (with --history, each run of each step as well)."""
    try:
        job = producer().get(job_id)
    except JobNotFound as exc:
        refuse(str(exc))
    if not with_history:
        print_job(job, as_json)
    elif as_json:
        history = [record.model_dump(mode="json") for record in job.history]
        typer.echo(json.dumps({**job.public(), "history": history, "history_dropped": job.history_dropped}, indent=2))
    else:
        typer.echo("\n".join([*job_lines(job), "", *history_lines(job)]))


@app.command()
def cancel(job_id: Annotated[str, typer.Argument(help="the job id submit printed")]) -> None:
    """Cancel a job that has not ended yet."""
    try:
        job = producer().cancel(job_id)
    except JobNotFound as exc:
        refuse(str(exc))
    typer.echo(f"{job.id} {job.status.value}")
    if job.status is not JobStatus.CANCELED:
        raise typer.Exit(EXIT_FAILED)


webhooks_app = typer.Typer(no_args_is_help=True, help="Webhook deliveries: dead letters and redelivery.")
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("redeliver")
def webhooks_redeliver(job_id: Annotated[str, typer.Argument(help="the job whose event to send again")]) -> None:
    """Send a job's webhook event again, with the same webhook-id."""
    try:
        job = producer().redeliver_webhook(job_id)
    except (JobNotFound, GenqueueError) as exc:
        refuse(str(exc))
    assert job.webhook is not None
    typer.echo(f"{job.id} {job.webhook.event_type} {job.webhook.event_id} scheduled for redelivery")


@webhooks_app.command("dead")
def webhooks_dead(as_json: Annotated[bool, typer.Option("--json", help="print jobs as JSON lines")] = False) -> None:
    """List jobs whose webhook event was given up on after the whole retry schedule."""
    for job in producer().dead_letters():
        if as_json:
            typer.echo(json.dumps(job.public()))
        else:
            assert job.webhook is not None
            typer.echo(f"{job.id} {job.webhook.event_type} {job.webhook.event_id} {job.webhook.gave_up}")


provider_app = typer.Typer(no_args_is_help=True, help="Provider limits: rate, in-flight, breaker, credit pause.")
app.add_typer(provider_app, name="provider")


@provider_app.command("status")
def provider_status(as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False) -> None:
    """Show each provider's limits as every worker sees them."""
    rows = producer().provider_status()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(row) for row in rows], indent=2, default=str))
        return
    typer.echo("\n".join(provider_lines(rows)))


@provider_app.command("resume")
def provider_resume(name: Annotated[str, typer.Argument(help="provider name")]) -> None:
    """Lift a credit pause or an open circuit breaker on provider NAME (after topping up, say)."""
    try:
        producer().resume_provider(name)
    except GenqueueError as exc:
        refuse(exc.message)
    typer.echo(f"{name} resumed")


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8900,
    delay: Annotated[float, typer.Option(help="seconds until a task finishes")] = 2.0,
    output_bytes: Annotated[int, typer.Option(help="size of each output file")] = 256 * 1024,
    fault: Annotated[list[str], typer.Option("--fault", help="e.g. submit:429:count=5:retry_after=2")] = [],  # noqa: B006
) -> None:
    """Run the sandbox provider: all four vendor dialects (and our own) over HTTP, for tests and demos."""
    from sandbox import SandboxConfig, serve
    from sandbox.config import parse_fault

    try:
        faults = [parse_fault(spec) for spec in fault]
    except ValueError as exc:
        refuse(str(exc))
    logs.configure(get_settings().log_format)
    serve(SandboxConfig(host=host, port=port, delay_seconds=delay, output_bytes=output_bytes, faults=faults))


@app.command()
def api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Serve the HTTP API (one process; run one per container and scale by containers)."""
    import uvicorn

    from producer.http_api.app import create_app

    settings = get_settings()
    logs.configure(settings.log_format, "INFO", settings.secrets())
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


quarantine_app = typer.Typer(no_args_is_help=True, help="Records that could not be read, set aside.")
app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object a line")] = False,
) -> None:
    """List jobs and batches whose stored record could not be read, oldest first, with the reason.

    Every loop (sweeper, dispatcher, reports, metrics) sets such a record aside and carries on; the record itself
    is kept in Redis as it was, for inspection.
    """
    for record in producer().store.quarantine.records():
        if as_json:
            typer.echo(record.model_dump_json())
        else:
            typer.echo(f"{record.at.isoformat(timespec='seconds')} {record.kind} {record.id}: {record.reason}")


@quarantine_app.command("readmit")
def quarantine_readmit(job_id: Annotated[str, typer.Argument(help="a quarantined job's id")]) -> None:
    """Take a repaired job out of quarantine: it must read now; its next step (if any) is due again at once."""
    store = producer().store
    if not store.quarantine.contains("job", job_id):
        refuse(f"job {job_id!r} is not in quarantine")
    job = store.readmit(job_id)
    if job is None:
        store.quarantine.remove("job", job_id)
        typer.echo(f"{job_id} no longer exists; removed from quarantine")
        return
    typer.echo(f"{job.id} readmitted ({job.status.value})")


app.add_typer(batch_app, name="batch")
app.add_typer(keys_app, name="keys")
app.command("stats")(stats)
metrics_app = typer.Typer(no_args_is_help=True, help="Job metrics for Prometheus (Flower shows tasks, not jobs).")
app.add_typer(metrics_app, name="metrics")
metrics_app.command("serve")(metrics_serve)


def main() -> None:
    """Entry point of the `genqueue` console script."""
    try:
        app()
    except redis.exceptions.ConnectionError:
        url = get_settings().store_redis_url.split("@")[-1]
        typer.echo(f"genqueue: error: cannot reach Redis at {url} (is redis-server running?)", err=True)
        sys.exit(EXIT_REFUSED)
    except UnreadableRecord as exc:
        typer.echo(f"genqueue: error: {exc} (see `genqueue quarantine list`)", err=True)
        sys.exit(EXIT_REFUSED)
