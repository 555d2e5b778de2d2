"""The dispatcher (run by celery beat every GENQUEUE_DISPATCH_INTERVAL_SECONDS): the one place batch jobs move.

Each pass, for every active batch: jobs that ended are settled against the budget; held jobs are released to
the submit queue as fast as each provider's rate limit and in-flight cap allow (never before the batch's
not-before time, never past its budget); held jobs past the batch's deadline, or that would pass its budget,
are canceled with the reason; and a batch whose jobs have all ended is completed (and its webhook sent). One pass
runs at a time (a lock in Redis) to keep the pace; even two could not release a job twice, since a release is a
compare-and-set on the job (its submit step is set only while it has none). Each pass that finishes is noted in
Redis, so `batch status` can tell held jobs that wait for no dispatcher at all. The rules (window, pace, budget,
settlements, orphans) are shared/decisions/dispatch.py's; this module reads and writes the batch store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from datetime import datetime

from celery import Task
from redis.exceptions import LockError

from shared import lifecycle
from shared.batch import Batch, BatchStore, pacing
from shared.batch import lifecycle as batch_lifecycle
from shared.batch.models import ended_count, hold_of
from shared.batch.store import jobs_by_line
from shared.constants import DISPATCH_LOCK_KEY, DISPATCH_TASK
from shared.decisions import dispatch as dispatch_rules
from shared.decisions import route as route_rules
from shared.decisions.dispatch import Action, Held
from shared.errors import InvalidRequest
from shared.models import Job, JobStatus, utcnow
from shared.protection import ProviderStatus
from shared.quarantine import UnreadableRecord
from shared.queueing import publish_step, write_and_publish
from shared.settings import ProviderConfig
from workers import context
from workers.app import app, genqueue_task
from workers.batch_webhooks import publish_batch_step

log = logging.getLogger("genqueue.dispatcher")

#: held jobs looked at per provider per pass, at most (cancellations included), so one pass stays short
MAX_EXAMINED = 500
#: a released job not started after this long is assumed lost; the sweeper resumes it
RELEASED_MAX_AGE = 120.0
#: how often a batch with queued jobs but nothing held is checked for jobs whose hold was lost
ORPHAN_CHECK_SECONDS = 60.0


@genqueue_task(DISPATCH_TASK)
def dispatch(self: Task) -> int:
    """Dispatcher passes every dispatch_interval_seconds for dispatch_task_seconds, unless another task is at it;
    the number of jobs released.

    One task runs many passes so that Flower's task list (which keeps the last 10,000) is not flooded by a task a
    second; beat starts one every dispatch_task_seconds, and a start that finds the lock taken returns at once.
    """
    settings = context.settings()
    interval = settings.dispatch_interval_seconds
    # a short lock, renewed every pass: if this worker dies, the next task takes over within seconds
    lock = context.store().redis.lock(DISPATCH_LOCK_KEY, timeout=max(5.0, interval * 5))
    if not lock.acquire(blocking=False):
        return 0
    released = 0
    try:
        stop = time.monotonic() + settings.dispatch_task_seconds
        while True:
            released += dispatch_pass(utcnow())
            if time.monotonic() + interval >= stop:
                return released
            time.sleep(interval)
            lock.reacquire()
    except LockError:  # a pass outlived the lock and another task took over: leave the passes to it
        return released
    finally:
        with contextlib.suppress(LockError):
            lock.release()


def dispatch_pass(now: datetime) -> int:
    """Settle, release, cancel and complete across every active batch; the number of jobs released."""
    batches = BatchStore(context.store().redis)
    statuses: dict[str, ProviderStatus | None] = {}
    released = 0
    for batch_id in batches.active():
        try:
            batch = batches.get(batch_id)
        except UnreadableRecord:  # quarantined: the other batches go on
            continue
        if batch is None:
            batches.deactivate(batch_id)
            continue
        settle_ended(batches, batch)
        window = dispatch_rules.window(batch, now)
        for provider in batch.providers if not window.closed else []:
            status = known_status(statuses, provider)
            if status is None:  # its configuration was removed since the batch was submitted
                cancel_all_held(batches, batch, provider, f"provider {provider} is no longer configured", now)
                continue
            allowance = dispatch_rules.allowance(window, status, released_now(batches, provider, now), interval())
            done = release_or_cancel(batches, batch, provider, window, allowance, now)
            statuses[provider] = _minus(status, done)  # the next batch sees fewer free tokens
            released += done
        for hold, providers in batch.routes.items() if not window.closed else []:
            released += release_route(batches, batch, hold, providers, window, statuses, now)
        complete_if_done(batches, batch, now)
    batches.record_dispatcher_run(now)
    return released


def release_route(
    batches: BatchStore,
    batch: Batch,
    hold: str,
    providers: list[str],
    window: dispatch_rules.Window,
    statuses: dict[str, ProviderStatus | None],
    now: datetime,
) -> int:
    """Release a route's held jobs as fast as its providers' paces add up (shared/batch/pacing.py), each one's
    submit choosing among them (workers/submit.py); cancel them all once none of its providers is configured (as
    a routed submit sees it: with an API key, route_rules.usable_config)."""
    settings = context.settings()
    configured = [name for name in providers if route_rules.usable_config(settings, name)[0] is not None]
    usable = [(name, status) for name in configured if (status := known_status(statuses, name)) is not None]
    if not usable:
        cancel_all_held(batches, batch, hold, f"no provider of {hold} is configured any longer", now)
        return 0
    shares = [pacing.route_share(status, released_now(batches, name, now), interval()) for name, status in usable]
    allowance = 0 if window.past_deadline else pacing.route_allowance(shares, released_now(batches, hold, now))
    done = release_or_cancel(batches, batch, hold, window, allowance, now)
    for (name, status), taken in zip(usable, pacing.spread(shares, done), strict=True):
        statuses[name] = _minus(status, taken)
    return done


def known_status(statuses: dict[str, ProviderStatus | None], provider: str) -> ProviderStatus | None:
    """`provider`'s limits as this pass knows them (read once a pass); None when it is not configured."""
    if provider not in statuses:
        statuses[provider] = provider_status(provider)
    return statuses[provider]


def released_now(batches: BatchStore, hold: str, now: datetime) -> int:
    """Jobs released under `hold` and not started yet."""
    return batches.released_count(hold, now.timestamp(), RELEASED_MAX_AGE)


def interval() -> float:
    return context.settings().dispatch_interval_seconds


def configured(provider: str) -> ProviderConfig | None:
    """`provider`'s configuration; None once it is no longer configured."""
    try:
        return context.settings().provider(provider)
    except InvalidRequest:
        return None


def usd_per_credit(provider: str) -> float | None:
    config = configured(provider)
    return None if config is None else config.usd_per_credit


def provider_status(name: str) -> ProviderStatus | None:
    config = configured(name)
    return None if config is None else context.guard().status([config], time.time())[0]


def settle_ended(batches: BatchStore, batch: Batch) -> None:
    """Replace the reservation of each job that ended by what it was charged (dispatch_rules.settlement).

    A job canceled while its vendor renders it has no charge yet: it keeps its reservation until the vendor
    reports the task ended, and is settled by a later pass.
    """
    while ended := batches.take_ended(batch.id):
        for job_id, job in zip(ended, context.store().get_many(ended), strict=True):
            if job is not None:
                batches.mark_started(hold_of(job), job.id)
            if dispatch_rules.settles_now(job):
                settle_job(batches, batch, job_id, job)
            else:
                batches.defer_settle(batch.id, job_id)
    unsettled = batches.unsettled(batch.id)
    for job_id, job in zip(unsettled, context.store().get_many(unsettled), strict=True):
        if dispatch_rules.settles_now(job):
            settle_job(batches, batch, job_id, job)
            batches.settled(batch.id, job_id)


def settle_job(batches: BatchStore, batch: Batch, job_id: str, job: Job | None) -> None:
    """Book one ended job whose charge is decided: its cost as spent, and as its reservation's replacement."""
    if job is None:  # expired, or unreadable (quarantined): what it cost is unknown, so it counts as spent
        if batch.budget is not None:
            batches.settle_as_reserved(batch.id, job_id)
        return
    booked = dispatch_rules.settlement(batch, job, usd_per_credit(job.provider))
    batches.add_spent(batch.id, booked.credits, booked.usd)
    if booked.counted is not None:
        batches.settle(batch.id, job.id, booked.counted)


def release_or_cancel(
    batches: BatchStore, batch: Batch, hold: str, window: dispatch_rules.Window, allowance: int, now: datetime
) -> int:
    """Release up to `allowance` of the jobs held under `hold`, cancel what may no longer run (`window` is open);
    the number released."""
    to_publish: list[Job] = []
    for job_id in batches.held(batch.id, hold, dispatch_rules.examine_count(batch, window, allowance, MAX_EXAMINED)):
        try:
            job = context.store().get(job_id)
        except UnreadableRecord:  # quarantined: no longer held, the next held job goes on
            batches.unhold(batch.id, hold, job_id)
            continue
        action = dispatch_rules.held_action(job, window, allowance - len(to_publish))
        if action.held is Held.RELEASE:
            assert job is not None
            action = reserve(batches, batch, job)
        if action.held is Held.STOP:
            break  # no room left this pass, or over budget while running jobs hold reservations that may come back
        if action.held is Held.CANCEL:
            cancel_held(job_id, action.reason, now)
        elif action.held is Held.RELEASE:
            written = context.store().update(job_id, lambda j: lifecycle.release(j, now))
            if written is not None:
                to_publish.append(written)
            elif batch.budget is not None:  # canceled meanwhile: give its reservation back
                batches.settle(batch.id, job_id, 0.0)
        batches.unhold(batch.id, hold, job_id)
    batches.mark_released(hold, [job.id for job in to_publish], now.timestamp())
    settings = context.settings()
    for job in to_publish:
        assert job.step is not None
        publish_step(app, settings, job.id, job.step, now)
    return len(to_publish)


def reserve(batches: BatchStore, batch: Batch, job: Job) -> Action:
    """Reserve the job's estimate against the batch's budget (atomically): release it if it fits (or there is
    no budget), else dispatch_rules.over_budget."""
    if batch.budget is None:
        return Action(Held.RELEASE)
    rate = usd_per_credit(job.provider)
    if batches.reserve(batch.id, job.id, dispatch_rules.estimate(batch, job, rate), batch.budget.amount):
        return Action(Held.RELEASE)
    return dispatch_rules.over_budget(batch, job, batches.outstanding(batch.id), batches.committed(batch.id), rate)


def cancel_held(job_id: str, reason: str, now: datetime) -> None:
    """Cancel held job `job_id` with `reason` (lifecycle.cancel_held) and publish its webhook, if it has one."""
    write_and_publish(
        context.store(), app, context.settings(), job_id, lambda j: lifecycle.cancel_held(j, reason, now), now
    )


def cancel_all_held(batches: BatchStore, batch: Batch, hold: str, reason: str, now: datetime) -> None:
    """Cancel (up to MAX_EXAMINED per pass) the jobs `batch` holds under `hold`, with `reason`."""
    for job_id in batches.held(batch.id, hold, MAX_EXAMINED):
        cancel_held(job_id, reason, now)
        batches.unhold(batch.id, hold, job_id)


def complete_if_done(batches: BatchStore, batch: Batch, now: datetime) -> None:
    """Complete the batch once every enqueued line's job has ended: summary webhook, off the active list.

    The completion, its event and the step that delivers it are one write, re-decided on the batch as it is then:
    a resume or retry that raised the total meanwhile keeps the batch open.
    """
    if batch.completed_at is not None or batch.total == 0:
        return
    held = batches.held_count(batch.id, batch.holds)
    if held:
        return
    counts = batches.counts(batch.id)
    ended = ended_count(counts)
    if ended < batch.total:
        if counts.get(JobStatus.QUEUED.value) and batches.orphan_check_due(batch.id, ORPHAN_CHECK_SECONDS):
            rehold_orphans(batches, batch)
        return
    settle_ended(batches, batch)  # every job counted as ended was pushed to the ended list in the same write
    if batches.unsettled(batch.id):
        return  # canceled jobs the vendor still renders: the summary's cost waits for their charges
    completed = batches.update(batch.id, lambda current: batch_lifecycle.complete(current, ended, held, now))
    if completed is None:
        return
    batches.deactivate(batch.id)
    batches.expire(completed, context.settings().job_retention_seconds)
    log.info("batch %s (%s) completed: %s", batch.name, batch.id, counts)
    if completed.step is not None:
        publish_batch_step(completed.id, completed.step, now)


def rehold_orphans(batches: BatchStore, batch: Batch) -> int:
    """Hold again every job of the batch that waits to be released but is held nowhere; how many.

    Nothing is held, yet some jobs are still queued: released ones waiting for a submit worker, or jobs whose hold
    was lost (a Redis crash took the last second of writes after the job was stored). Only the latter have no step.
    """
    orphans = 0
    for line, job in jobs_by_line(batches, context.store(), batch.id):
        if dispatch_rules.is_orphan(job):
            batches.hold(batch.id, hold_of(job), job.id, line)
            orphans += 1
    if orphans:
        log.warning("batch %s: %d jobs were held nowhere; held again", batch.id, orphans)
    return orphans


def _minus(status: ProviderStatus, used: int) -> ProviderStatus:
    return dataclasses.replace(status, tokens=status.tokens - used, in_flight=status.in_flight + used)
