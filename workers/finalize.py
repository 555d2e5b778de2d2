"""Stage 3, finalize: stream every output from the vendor into the bucket, then end the job as succeeded.

Copying is idempotent (the same keys are written again), so a finalize that runs twice is harmless. Output URLs
come from the vendor and are treated as hostile: they are fetched with the guarded download client
(workers/context.py), and the work is bounded: at most max_outputs_per_job outputs (more fails the job before
anything is copied, rather than dropping some silently), each within max_output_bytes and max_copy_seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from celery import Task

from shared import lifecycle
from shared.constants import FINALIZE_TASK
from shared.errors import DownloadFailed, GenqueueError, Transient
from shared.models import Job, Output, utcnow
from shared.storage import extension_for
from workers import context
from workers.app import genqueue_task
from workers.steps import count_vendor_request, fail, note_answer, retry_or_fail, run_step, write


@genqueue_task(FINALIZE_TASK)
def finalize(self: Task, job_id: str) -> None:
    """Copy job `job_id`'s outputs to storage."""
    # the copy may take many minutes; its lease is short and renewed while it runs (workers/leases.py)
    run_step(self, job_id, "finalize", context.settings().step_lease_seconds, finalize_job)


def output_key(job_id: str, index: int, url: str) -> Callable[[str], str]:
    """The key for output `index`, its extension following the content type the vendor sent (else the URL's)."""
    return lambda content_type: context.storage().output_key(job_id, index, extension_for(content_type, url))


def count_failed_download(job: Job, exc: GenqueueError) -> None:
    if isinstance(exc, DownloadFailed):  # not a write to the bucket that failed
        count_vendor_request(job.provider, "download", "error")
        note_answer("error")


def finalize_job(job: Job, task_id: str) -> None:
    """The finalize step for a claimed job."""
    limit = context.settings().max_outputs_per_job
    if len(job.output_urls) > limit:
        count = len(job.output_urls)
        bound = f"the {limit}-output bound (GENQUEUE_MAX_OUTPUTS_PER_JOB)"
        fail(job.id, task_id, DownloadFailed(f"{job.provider} gave {count} output URLs, over {bound}; none copied"))
        return
    storage = context.storage()
    outputs: list[Output] = []
    try:
        for index, url in enumerate(job.output_urls):
            outputs.append(storage.copy_from_url(context.download_http(), url, output_key(job.id, index, url)))
            count_vendor_request(job.provider, "download", 200)
            note_answer(200)
    except Transient as exc:  # a download or a write that may pass
        count_failed_download(job, exc)
        retry_or_fail(job.id, task_id, exc)
        return
    except GenqueueError as exc:
        count_failed_download(job, exc)
        fail(job.id, task_id, exc)
        return
    now = utcnow()
    write(job.id, lambda j: lifecycle.succeed_owned(j, task_id, now, outputs), now)
