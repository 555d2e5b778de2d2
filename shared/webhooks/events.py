"""The body of a webhook event, as INTERFACE.md shows it: `{"type", "timestamp", "data": <the job>}`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from shared.models import JobStatus

EVENT_TYPES = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELED: "job.canceled",
}


def event_type_for(status: JobStatus | str) -> str:
    """The event type of a terminal status; ValueError for a status that is not terminal."""
    event_type = EVENT_TYPES.get(JobStatus(status))
    if event_type is None:
        raise ValueError(f"no webhook event for non-terminal status {JobStatus(status).value!r}")
    return event_type


def iso_timestamp(timestamp: datetime) -> str:
    """ISO 8601 in UTC with a "Z", as pydantic writes the job's own times (a naive time is taken as UTC)."""
    aware = timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp.astimezone(UTC)
    return aware.isoformat().replace("+00:00", "Z")


def event_body(event_type: str, timestamp: datetime, job_public: dict[str, Any]) -> bytes:
    """The compact JSON body; the same inputs give the same bytes, so every retry of an event sends one body."""
    event = {"type": event_type, "timestamp": iso_timestamp(timestamp), "data": job_public}
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
