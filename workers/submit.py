"""Stage 1, submit: send the job to its vendor once, record the vendor's task id and cost, schedule the first poll.

The double charge is the failure to avoid: the intent (`submit_started_at`) is recorded before the POST and the
vendor's task id after it. A submit that finds an intent with no task id does not POST again blindly: the job
fails with `submit_outcome_unknown`, unless the provider's settings allow a resubmit. Those rules are
shared/decisions/submit.py's; this module does the I/O (the provider's limits, the POST) and writes them.
"""

from __future__ import annotations

import logging
import time

from celery import Task

from shared import lifecycle
from shared.batch import BatchStore
from shared.constants import SUBMIT_TASK
from shared.decisions import Effects
from shared.decisions import submit as submit_rules
from shared.errors import GenqueueError
from shared.models import Job, JobStatus, utcnow
from shared.providers.base import HttpAnswer, SubmitResult
from shared.providers.registry import get_adapter
from shared.queueing import publish_step
from shared.settings import ProviderConfig
from shared.storage import StorageInputs
from shared.store import NotReplicated
from workers import context
from workers.app import app, genqueue_task
from workers.steps import call_vendor, cancel, carry_out, fail, run_step, write

log = logging.getLogger("genqueue.workers")


@genqueue_task(SUBMIT_TASK)
def submit(self: Task, job_id: str) -> None:
    """Submit job `job_id` to its vendor (at most once per accepted answer). The claim holds the short step lease;
    the intent, written before the POST, lengthens it to the vendor call's (submit_rules.record_intent)."""
    run_step(self, job_id, "submit", context.settings().step_lease_seconds, submit_job)


def submit_job(job: Job, task_id: str) -> None:
    """The submit step for a claimed job: the checks, admission, the intent, the POST, its answer recorded."""
    if job.status is not JobStatus.QUEUED:
        return
    if job.batch_id is not None:
        BatchStore(context.store().redis).mark_started(job.provider, job.id)
        reason = submit_rules.deadline_cancel(job, utcnow())
        if reason is not None:
            cancel(job.id, task_id, reason)
            return
    try:
        config = context.settings().provider(job.provider)
        refusal = submit_rules.resubmit_refusal(job, config.allow_resubmit)
        if refusal is not None:
            raise refusal
        adapter = get_adapter(config.dialect)
        request = adapter.build_submit(job.request, config, StorageInputs(context.storage()))
        task_scope = adapter.task_scope(job.request, config)
    except GenqueueError as exc:
        fail(job.id, task_id, exc)
        return
    if not admitted(job, task_id, config):
        return
    now = utcnow()
    try:
        intended = context.store().update(
            job.id,
            lambda j: submit_rules.record_intent(j, task_id, config.dialect, context.settings(), now),
            durable=True,
        )
    except NotReplicated as exc:  # GENQUEUE_REDIS_MIN_REPLICAS: nothing is sent until a replica has the intent
        log.warning("submit: job %s: %s; not sent, tried again", job.id, exc)
        carry_out(Effects(free_slot=True), config, job.id)
        write(job.id, lambda j: submit_rules.intent_withdrawn(j, task_id, context.settings(), utcnow()), now)
        return
    if intended is None:
        return
    answer = None
    try:
        answer = call_vendor("submit", config, request)
        result = adapter.parse_submit(answer)
    except GenqueueError as exc:
        record_unanswered(job, task_id, config, exc, answer)
        return
    record_accepted(intended, task_id, config, result, task_scope)


def admitted(job: Job, task_id: str, config: ProviderConfig) -> bool:
    """Take a rate-limit token and an in-flight slot for the job, or reschedule it to wait (False): see
    submit_rules.over_capacity."""
    settings = context.settings()
    ttl = settings.job_timeout_seconds + 3600
    admission = context.guard().admit(config, job.id, time.time(), ttl_seconds=ttl)
    if admission.allowed:
        return True
    now = utcnow()
    write(job.id, lambda j: submit_rules.over_capacity(j, task_id, admission, settings, now, context.rng()), now)
    return False


def record_unanswered(
    job: Job, task_id: str, config: ProviderConfig, exc: GenqueueError, answer: HttpAnswer | None
) -> None:
    """A submit that got no task id: the provider's limits told, the job failed or retried, or (canceled during
    the POST) its charge recorded from what may have happened at the vendor."""
    carry_out(submit_rules.error_effects(exc), config, job.id)
    settings, rng, now = context.settings(), context.rng(), utcnow()
    allow = config.allow_resubmit
    write(job.id, lambda j: submit_rules.unanswered(j, task_id, exc, answer, allow, settings, now, rng), now)
    outcome = submit_rules.unanswered_outcome(exc, answer)
    context.store().update(job.id, lambda j: lifecycle.unanswered_after_cancel(j, outcome, now))


def record_accepted(
    job: Job, task_id: str, config: ProviderConfig, result: SubmitResult, task_scope: str | None
) -> None:
    """The vendor took the job (`job` as its intent was written): submitted, its first poll published; or,
    canceled during the POST, followed to its end at the vendor holding its slot."""
    carry_out(submit_rules.ACCEPTED, config, job.id)
    settings, now = context.settings(), utcnow()
    charge = submit_rules.reported_charge(job.charge, result)
    written = write(job.id, lambda j: submit_rules.accepted(j, task_id, result, task_scope, charge, settings, now), now)
    late = None
    if written is None:
        late = context.store().update(
            job.id, lambda j: lifecycle.accepted_after_cancel(j, now, result.task_id, task_scope, charge)
        )
        # a webhook step it keeps is already published; only a new quiet poll is
        if late is not None and late.step is not None and late.step.name == "poll":
            publish_step(app, settings, job.id, late.step, now)
    carry_out(submit_rules.accepted_effects(written, late), config, job.id)
