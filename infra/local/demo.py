"""`make demo`: the main job end to end on local defaults.

Starts what is missing (redis-server, moto's S3 server unless GENQUEUE_S3_ENDPOINT_URL names another, the
sandbox provider, a celery worker, Flower, a webhook receiver), submits a handful of jobs of different kinds
through the Producer API, shows their progress live, prints where each output landed and the webhook each
fired, then runs a small batch through the command line (`genqueue batch submit`, `batch status --watch`,
`genqueue stats`), and stops what it started.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console
from rich.live import Live
from rich.table import Table

from infra.local.processes import free_port, port_open
from infra.local.stack import LocalStack, stack_env
from infra.local.webhook_receiver import ReceivedEvent, WebhookReceiver, start_receiver
from shared.models import Job

ROOT = Path(__file__).resolve().parents[2]
console = Console()


def tiny_png(path: Path) -> Path:
    """A real 2x2 PNG, to show a local image input being uploaded by the producer."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x80\x00" * 2 for _ in range(2))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


DEMO_JOBS: list[dict[str, object]] = [
    {
        "provider": "vicsee",
        "model": "sora-2",
        "prompt": "a timelapse of a flower opening",
        "options": {"duration": 10, "aspect_ratio": "16:9"},
    },
    {
        "provider": "veogen",
        "model": "gpt-4o-image",
        "prompt": "a serene mountain landscape at sunset",
        "options": {"aspect_ratio": "16:9"},
    },
    {
        "provider": "veo3api",
        "model": "veo3_fast",
        "prompt": "the cat starts running through the garden",
        "options": {"aspect_ratio": "9:16"},
        "images": ["LOCAL_PNG"],
    },
    {"provider": "gateway", "model": "veo3", "prompt": "a cat surfing in sunset, cinematic"},
    {"provider": "sandbox", "model": "sandbox-video", "prompt": "waves on a beach", "options": {"duration": 6}},
    # sora-2 wherever the route chooses (VicSee or VeoGen): with no prices set, the route's own order breaks the tie
    {"provider": "auto", "model": "sora-2", "prompt": "a flower, wherever it goes", "options": {"duration": 10}},
]


def start_stack(stack: LocalStack) -> tuple[dict[str, str], WebhookReceiver]:
    """Start what is missing and return the environment the jobs run with, and the webhook receiver."""
    redis_url = os.environ.get("GENQUEUE_REDIS_URL", "redis://localhost:6379/0")
    parts = urlsplit(redis_url)
    if port_open(parts.port or 6379, parts.hostname or "localhost"):
        console.print(f"redis: using the one at {parts.hostname}:{parts.port or 6379}")
    else:
        redis_url = stack.start_redis(parts.port or 6379)
        console.print(f"redis: started redis-server on {redis_url} (AOF on, infra/redis/redis.conf)")
    s3_endpoint = os.environ.get("GENQUEUE_S3_ENDPOINT_URL")
    if s3_endpoint:
        console.print(f"storage: using {s3_endpoint}")
    else:
        s3_endpoint = stack.start_moto()
        console.print(f"storage: started moto's S3 server on {s3_endpoint}")
    sandbox_port = 8900 if not port_open(8900) else free_port()
    sandbox_url = stack.start_sandbox(sandbox_port, delay=3.0)
    console.print(f"sandbox: all four vendor dialects on {sandbox_url}")
    from shared.webhooks.signing import generate_secret

    secret = os.environ.get("GENQUEUE_WEBHOOK_SECRET") or generate_secret()
    receiver = start_receiver(secret)
    console.print(f"webhooks: receiver on {receiver.url} (verifies with the standardwebhooks package)")
    env = stack_env(
        redis_url, s3_endpoint, sandbox_url, secret, os.environ.get("GENQUEUE_S3_BUCKET", "genqueue-outputs")
    )
    env.update({"GENQUEUE_POLL_INITIAL_SECONDS": "1", "GENQUEUE_POLL_MAX_INTERVAL_SECONDS": "3"})
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    os.environ.update(env)
    stack.env = dict(os.environ)
    stack.start_workers()
    console.print("workers: celery -A workers worker (queues submit, poll, finalize, webhooks)")
    stack.start_beat()
    console.print("sweeper: celery -A workers beat (resumes jobs whose next step is overdue)")
    flower_url = stack.start_flower()
    console.print(f"flower: {flower_url} (user admin, password genqueue)")
    return env, receiver


def progress_table(jobs: list[Job], started: float) -> Table:
    table = Table(title=f"genqueue demo: {time.monotonic() - started:5.1f}s")
    for column in ("job", "provider/model", "status", "progress", "cost"):
        table.add_column(column)
    for job in jobs:
        progress = f"{job.progress * 100:.0f}%" if job.progress is not None else ""
        cost = " ".join(f"{v:g} {u}" for u, v in (("cr", job.cost.credits), ("$", job.cost.usd)) if v is not None)
        style = {"succeeded": "green", "failed": "red", "canceled": "yellow"}.get(job.status.value, "")
        table.add_row(
            job.id,
            f"{job.provider}/{job.model}",
            f"[{style}]{job.status.value}" if style else job.status.value,
            progress,
            cost,
        )
    return table


def run_jobs(receiver: WebhookReceiver, workdir: Path) -> bool:
    from producer.api import Producer
    from producer.render import route_lines
    from shared.settings import Settings
    from shared.storage import Storage

    settings = Settings()
    Storage(settings).ensure_bucket()
    producer = Producer(settings)
    png = tiny_png(workdir / "cat.png")
    jobs = []
    for spec in DEMO_JOBS:
        images = [str(png) if image == "LOCAL_PNG" else str(image) for image in spec.get("images", [])]  # type: ignore[attr-defined]
        jobs.append(
            producer.submit(
                str(spec["provider"]),
                str(spec["model"]),
                str(spec["prompt"]),
                dict(spec.get("options", {})),
                images,
                webhook_url=receiver.url,  # type: ignore[call-overload]
                metadata={"demo": "true"},
            )
        )
    started = time.monotonic()
    with Live(progress_table(jobs, started), console=console, refresh_per_second=4) as live:
        while time.monotonic() - started < 120:
            jobs = [producer.get(job.id) for job in jobs]
            live.update(progress_table(jobs, started))
            if all(
                job.status.terminal and job.webhook and (job.webhook.delivered or job.webhook.gave_up) for job in jobs
            ):
                break
            time.sleep(0.25)
    console.print()
    ok = True
    for job in jobs:
        console.print(f"[bold]{job.id}[/bold] {job.provider}/{job.model}: {job.status.value}")
        for output in job.outputs:
            console.print(
                f"  output  s3://{output.bucket}/{output.key}  {output.size} bytes  sha256 {output.sha256[:16]}…"
            )
        if job.error:
            console.print(f"  error   {job.error.code}: {job.error.message}")
        if job.route is not None:
            for line in route_lines(job.route):
                console.print(line, markup=False)
        events = receiver.for_job(job.id)
        for event in events:
            mark = "verified" if event.verified else "NOT VERIFIED"
            console.print(
                f"  webhook {event.body.get('type')}  webhook-id {event.headers.get('webhook-id')}  signature {mark}"
            )
        ok = ok and job.status.value == "succeeded" and any(e.verified for e in events)
    return ok


def run_batch(receiver: WebhookReceiver, workdir: Path) -> bool:
    """A small overnight-style batch through the command line: submit a file, watch it, print job metrics."""
    path = workdir / "batch.jsonl"
    lines = [{"provider": "sandbox", "model": "sandbox-image", "prompt": f"a postcard of city {n}"} for n in range(6)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    name = f"demo-{int(time.time())}"
    genqueue = str(Path(sys.executable).parent / "genqueue")
    commands = [
        ["batch", "submit", str(path), "--name", name, "--budget-credits", "10", "--webhook", receiver.url],
        ["batch", "status", name, "--watch"],
        ["stats"],
    ]
    for command in commands:
        console.print(f"[bold]$ genqueue {' '.join(command)}[/bold]")
        result = subprocess.run([genqueue, *command], check=False, timeout=180)
        if result.returncode != 0:
            return False
    deadline = time.monotonic() + 10
    while not (events := completion_events(receiver, name)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for event in events[:1]:
        mark = "verified" if event.verified else "NOT VERIFIED"
        console.print(f"webhook batch.completed {event.body['data']['counts']}  signature {mark}")
    return bool(events) and events[0].verified


def completion_events(receiver: WebhookReceiver, name: str) -> list[ReceivedEvent]:
    return [
        event
        for event in list(receiver.events)
        if event.body.get("type") == "batch.completed" and event.body.get("data", {}).get("name") == name
    ]


def main() -> int:
    workdir = ROOT / ".demo"
    workdir.mkdir(exist_ok=True)
    stack = LocalStack(workdir)
    receiver = None
    try:
        _, receiver = start_stack(stack)
        ok = run_jobs(receiver, workdir) and run_batch(receiver, workdir)
    except KeyboardInterrupt:
        ok = False
    finally:
        console.print("stopping what the demo started…")
        if receiver is not None:
            receiver.stop()
        stack.stop()
    console.print(
        "[green]demo finished: every job and the batch succeeded, every webhook verified[/green]"
        if ok
        else f"[red]demo finished with problems; logs in {workdir}[/red]"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
