"""How the command line shows a job to a person."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from shared.models import Job


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
    return lines


def progress_printer(stream: TextIO) -> Callable[[Job], None]:
    """An `on_change` callback for Producer.wait that prints each status/progress change with the elapsed time."""
    started = time.monotonic()

    def show(job: Job) -> None:
        progress = f" {job.progress * 100:.0f}%" if job.progress is not None else ""
        stream.write(f"[{time.monotonic() - started:6.1f}s] {job.id} {job.status.value}{progress}\n")
        stream.flush()

    return show
