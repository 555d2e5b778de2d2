"""Stage 3, finalize: stream every output from the vendor into the bucket, then end the job as succeeded.

Copying is idempotent (the same keys are written again), so a finalize that runs twice is harmless.
"""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit

from celery import Task

from shared import lifecycle
from shared.constants import FINALIZE_TASK
from shared.errors import DownloadFailed, GenqueueError, StorageError, TransientDownloadError, TransientStorageError
from shared.models import Job, Output, utcnow
from shared.queueing import publish_step
from workers import context
from workers.app import app, genqueue_task
from workers.steps import fail, retry_or_fail, run_step

#: a copy that has not finished after this long is taken over by a redelivered task
FINALIZE_LEASE_SECONDS = 1800


@genqueue_task(FINALIZE_TASK)
def finalize(self: Task, job_id: str) -> None:
    """Copy job `job_id`'s outputs to storage."""
    run_step(self, job_id, "finalize", FINALIZE_LEASE_SECONDS, finalize_job)


def extension_of(url: str) -> str:
    """The file extension in a URL's path (without the dot), or `bin`."""
    ext = posixpath.splitext(urlsplit(url).path)[1].lstrip(".").lower()
    return ext if ext.isalnum() and 0 < len(ext) <= 5 else "bin"


def finalize_job(job: Job, task_id: str) -> None:
    """The finalize step for a claimed job."""
    storage = context.storage()
    outputs: list[Output] = []
    try:
        for index, url in enumerate(job.output_urls):
            key = storage.output_key(job.id, index, extension_of(url))
            outputs.append(storage.copy_from_url(context.http(), url, key))
    except TransientDownloadError as exc:
        retry_or_fail(job.id, task_id, "finalize", DownloadFailed(exc.message))
        return
    except TransientStorageError as exc:
        retry_or_fail(job.id, task_id, "finalize", StorageError(exc.message))
        return
    except GenqueueError as exc:
        fail(job.id, task_id, exc)
        return
    now = utcnow()
    written = context.store().update(job.id, lambda j: lifecycle.succeed_owned(j, task_id, now, outputs))
    if written is not None and written.step is not None:
        publish_step(app, context.settings(), job.id, written.step, now)
