"""What `/ui` reads: a viewer's jobs, newest first and paged, one job the viewer may see, and the same for batches.

A tenant's jobs come from its index (shared/store.py `tenant_jobs`), filtered as `GET /v1/jobs` filters them. The
operator's come from a scan of every job in the store, keeping only the page being asked for in memory: a page
costs a read of the whole store, which suits stores of up to some tens of thousands of jobs.

Batches come from the batch store's index of creation (BatchStore.created), the same way.
"""

from __future__ import annotations

import base64
import binascii
import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from producer.api import JobNotFound, Producer
from producer.batch import BatchProducer
from producer.http_api.batches import owned_batch
from producer.http_api.jobs import MAX_EXAMINED, owned_job
from producer.http_api.problems import not_found
from producer.http_api.ui_session import Viewer
from shared.batch import Batch
from shared.models import Job, JobStatus

#: jobs on one page of the jobs list
PAGE_SIZE = 25

Position = tuple[float, str]
P = TypeVar("P")
T = TypeVar("T")


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list shows: of one status, provider and batch (by id), with one metadata key set to a value,
    created at or after `created_after` and before `created_before` (None: any)."""

    status: JobStatus | None = None
    provider: str | None = None
    batch_id: str | None = None
    metadata: tuple[str, str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def admits(self, job: Job) -> bool:
        return (
            (self.status is None or job.status is self.status)
            and (self.provider is None or job.provider == self.provider)
            and (self.batch_id is None or job.batch_id == self.batch_id)
            and (self.metadata is None or job.metadata.get(self.metadata[0]) == self.metadata[1])
            and (self.created_after is None or job.created_at >= self.created_after)
            and (self.created_before is None or job.created_at < self.created_before)
        )


def job_filter(batches: BatchProducer, viewer: Viewer, given: dict[str, str]) -> JobFilter:
    """The filter a jobs list's query (`status`, `provider`, `batch`, `metadata`, `created_after`,
    `created_before`; "" for none) asks for: ValueError for a value that is not one, ApiProblem 404 for a batch
    `viewer` may not see."""
    status, metadata = given["status"], given["metadata"]
    try:
        chosen_status = JobStatus(status) if status else None
    except ValueError:
        raise ValueError(f"status: {status!r} is not a job status") from None
    pair = None
    if metadata:
        name, equals, value = metadata.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"metadata: {metadata!r} is not key=value")
        pair = (name.strip(), value.strip())
    return JobFilter(
        status=chosen_status,
        provider=given["provider"] or None,
        batch_id=visible_batch(batches, viewer, given["batch"]).id if given["batch"] else None,
        metadata=pair,
        created_after=_moment(given["created_after"], "created_after"),
        created_before=_moment(given["created_before"], "created_before"),
    )


def _moment(value: str, name: str) -> datetime | None:
    """An ISO 8601 time (without a zone: UTC, as a datetime-local field sends it); None for ""."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an ISO 8601 time such as 2026-12-03T02:00") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@dataclass(frozen=True)
class JobsPage:
    """A page of jobs, newest first; `next_cursor` asks for the next page (None: there is none)."""

    jobs: list[Job]
    next_cursor: str | None


def visible_job(producer: Producer, viewer: Viewer, job_id: str) -> Job:
    """The job if `viewer` may see it (the operator sees every job); ApiProblem 404 otherwise, as the API answers."""
    if viewer.key is not None:
        return owned_job(producer, viewer.key, job_id)
    try:
        return producer.get(job_id)
    except JobNotFound:
        raise not_found(f"job {job_id!r}") from None


def jobs_page(producer: Producer, viewer: Viewer, chosen: JobFilter, cursor: str | None, limit: int) -> JobsPage:
    """The page of `viewer`'s jobs that `chosen` admits, after the one `cursor` ended (None: the newest)."""
    before = decode_cursor(cursor)
    if viewer.key is None:
        return _all_jobs_page(producer, chosen, before, limit)
    return _tenant_page(producer, viewer.key.name, chosen, before, limit)


def _tenant_page(producer: Producer, tenant: str, chosen: JobFilter, before: Position | None, limit: int) -> JobsPage:
    if chosen.created_before is not None:  # the index is by creation: start at the newest one admitted
        newest = (_ms(chosen.created_before), "")
        before = newest if before is None else min(before, newest)

    def fetch(after: Position | None, count: int) -> list[tuple[Position, Job]]:
        return [((score, job_id), job) for score, job_id, job in producer.store.tenant_jobs(tenant, after, count)]

    found, last = page_through(fetch, functools.partial(_verdict, chosen), before, limit)
    return JobsPage(found, None if last is None else encode_cursor(last))


def _all_jobs_page(producer: Producer, chosen: JobFilter, before: Position | None, limit: int) -> JobsPage:
    """The operator's page: every job by the store's index of creation (JobStore.created_jobs), newest first."""
    position = None if before is None or not before[1].isdigit() else (int(before[0]), int(before[1]))
    if chosen.created_before is not None:  # the index is by creation: start at the newest one admitted
        newest = (int(_ms(chosen.created_before)) // 60000, sys.maxsize)
        position = newest if position is None else min(position, newest)
    found, last = page_through(producer.store.created_jobs, functools.partial(_verdict, chosen), position, limit)
    return JobsPage(found, None if last is None else encode_cursor((last[0], str(last[1]))))


def _verdict(chosen: JobFilter, job: Job) -> bool | None:
    """Whether a job of a list newest first is shown (None: it is older than the filter's start, so is the rest)."""
    if chosen.created_after is not None and job.created_at < chosen.created_after:
        return None
    return chosen.admits(job)


def page_through(
    fetch: Callable[[P | None, int], Sequence[tuple[P, T]]],
    verdict: Callable[[T], bool | None],
    before: P | None,
    limit: int,
) -> tuple[list[T], P | None]:
    """Up to `limit` items an index gives newest first (`fetch(after, count)`, with each item's position) that
    `verdict` keeps, looking at MAX_EXAMINED at most (a page of a rare filter may come back short); with the
    position to go on from, None when the index (or the filter's time range) is at its end."""
    found: list[T] = []
    examined = 0
    while len(found) < limit and examined < MAX_EXAMINED:
        page = fetch(before, min(limit * 4, MAX_EXAMINED - examined))
        if not page:
            return found, None
        for position, item in page:
            kept = verdict(item)
            if kept is None:
                return found, None
            before = position
            examined += 1
            if kept:
                found.append(item)
                if len(found) == limit:
                    break
    return found, before


def _created_ms(job: Job) -> float:
    return _ms(job.created_at)


def _ms(moment: datetime) -> float:
    return float(int(moment.timestamp() * 1000))


@dataclass(frozen=True)
class BatchesPage:
    """A page of batches, newest first; `next_cursor` asks for the next page (None: there is none)."""

    batches: list[Batch]
    next_cursor: str | None


def visible_batch(batches: BatchProducer, viewer: Viewer, name: str) -> Batch:
    """The batch called `name` (or with that id) if `viewer` may see it; ApiProblem 404 otherwise, as the API
    answers. A tenant finds only its own (by its own names); the operator finds its own by name and any by id."""
    if viewer.key is not None:
        return owned_batch(batches, viewer.key, name)
    found = batches.batches.get_by_name(name)
    if found is None:
        raise not_found(f"batch {name!r}")
    return found


def batches_page(batches: BatchProducer, viewer: Viewer, cursor: str | None, limit: int) -> BatchesPage:
    """The page of `viewer`'s batches (the operator: every batch), newest first, after the one `cursor` ended: by
    the batch store's index of creation (page_through)."""
    tenant = None if viewer.key is None else viewer.key.name

    def verdict(batch: Batch) -> bool:
        return tenant is None or batch.tenant == tenant

    found, last = page_through(batches.batches.created, verdict, decode_cursor(cursor), limit)
    return BatchesPage(found, None if last is None else encode_cursor(last))


def encode_cursor(position: Position) -> str:
    return base64.urlsafe_b64encode(f"{position[0]:.0f}:{position[1]}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position | None:
    """The position a cursor names; None for none, and for one this UI did not make (the list starts over)."""
    if not cursor:
        return None
    try:
        score, _, job_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        return (float(score), job_id) if job_id else None
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
