"""What `/ui` reads: a viewer's jobs, newest first and paged, and one job the viewer may see.

A tenant's jobs come from its index (shared/store.py `tenant_jobs`), filtered as `GET /v1/jobs` filters them. The
operator's come from a scan of every job in the store, keeping only the page being asked for in memory: a page
costs a read of the whole store, which suits stores of up to some tens of thousands of jobs.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from producer.api import JobNotFound, Producer
from producer.http_api.jobs import MAX_EXAMINED, owned_job
from producer.http_api.problems import not_found
from producer.http_api.ui_session import Viewer
from shared.models import Job, JobStatus

#: jobs on one page of the jobs list
PAGE_SIZE = 25

Position = tuple[float, str]


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list shows: of one status, of one provider (None: any)."""

    status: JobStatus | None = None
    provider: str | None = None

    def admits(self, job: Job) -> bool:
        return (self.status is None or job.status is self.status) and (
            self.provider is None or job.provider == self.provider
        )


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
    found: list[Job] = []
    examined = 0
    while len(found) < limit and examined < MAX_EXAMINED:
        page = producer.store.tenant_jobs(tenant, before, min(limit * 4, MAX_EXAMINED - examined))
        if not page:
            return JobsPage(found, None)
        for score, job_id, job in page:
            examined += 1
            before = (score, job_id)
            if chosen.admits(job):
                found.append(job)
                if len(found) == limit:
                    break
    return JobsPage(found, None if before is None else encode_cursor(before))


def _all_jobs_page(producer: Producer, chosen: JobFilter, before: Position | None, limit: int) -> JobsPage:
    def candidates() -> Iterator[tuple[Position, Job]]:
        for job in producer.store.all_jobs():
            position = (_created_ms(job), job.id)
            if chosen.admits(job) and (before is None or position < before):
                yield position, job

    newest = heapq.nlargest(limit + 1, candidates(), key=lambda row: row[0])
    page = newest[:limit]
    more = len(newest) > limit
    return JobsPage([job for _, job in page], encode_cursor(page[-1][0]) if more and page else None)


def _created_ms(job: Job) -> float:
    return float(int(job.created_at.timestamp() * 1000))


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
