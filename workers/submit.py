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

from shared import counters, lifecycle
from shared.batch import BatchStore
from shared.batch.models import hold_of
from shared.constants import SUBMIT_TASK
from shared.decisions import Effects
from shared.decisions import route as route_rules
from shared.decisions import submit as submit_rules
from shared.errors import GenqueueError, InvalidRequest
from shared.models import Job, JobStatus, Route, utcnow
from shared.protection import Admission
from shared.providers.base import HttpAnswer, SubmitResult
from shared.providers.registry import get_adapter
from shared.queueing import publish_step
from shared.settings import ProviderConfig, Settings
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
        BatchStore(context.store().redis).mark_started(hold_of(job), job.id)
        reason = submit_rules.deadline_cancel(job, utcnow())
        if reason is not None:
            cancel(job.id, task_id, reason)
            return
    chosen: route_rules.Chosen | None = None
    if job.route is not None and job.submit_started_at is None:
        chosen = routed(job, task_id)
        if chosen is None:
            return
        job = chosen.job
    try:
        config = chosen.config if chosen is not None else context.settings().provider(job.provider)
        refusal = submit_rules.resubmit_refusal(job, config.allow_resubmit)
        if refusal is not None:
            raise refusal
        adapter = get_adapter(config.dialect)
        request = adapter.build_submit(job.request, config, StorageInputs(context.storage()))
        task_scope = adapter.task_scope(job.request, config)
    except GenqueueError as exc:
        if chosen is not None:
            carry_out(Effects(free_slot=True), chosen.config, job.id)
        fail(job.id, task_id, exc)
        return
    if chosen is None and not admitted(job, task_id, config):
        return
    now = utcnow()

    def intent(current: Job) -> Job | None:
        if chosen is not None:  # the stored job as it is, sent where the route chose
            current = route_rules.switched(current, chosen.route, chosen.candidate)
        return submit_rules.record_intent(current, task_id, config.dialect, context.settings(), now)

    try:
        intended = context.store().update(job.id, intent, durable=True)
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


def routed(job: Job, task_id: str) -> route_rules.Chosen | None:
    """Where a routed job goes now (route_rules.choose), admitted there; None when it was rescheduled to wait for
    capacity (the route as decided recorded) or failed because no candidate is configured and honours it."""
    assert job.route is not None
    settings, now = context.settings(), utcnow()
    states = provider_states(job.route, job.request.model, settings)
    route, order = route_rules.choose(job.route, job.request, states, now)
    if not order:
        reasons = "; ".join(f"{found.provider}: {found.skipped}" for found in route.candidates)
        fail(job.id, task_id, InvalidRequest(f"no provider of route {route.model} can take the job: {reasons}"))
        return None
    ttl = settings.job_timeout_seconds + 3600
    refusals = []
    for found in order:
        config = states[found.provider].config
        assert config is not None  # choose orders only configured candidates
        admission = admit(config, job, ttl)
        if admission.allowed:
            return route_rules.Chosen(route_rules.switched(job, route, found), config, route, found)
        refusals.append(admission)
    soonest = min(refusals, key=lambda admission: admission.wait_seconds)
    rng = context.rng()
    waiting = route.model_copy(update={"chosen": None})
    write(
        job.id,
        lambda j: submit_rules.over_capacity(
            j.model_copy(update={"route": waiting}), task_id, soonest, settings, now, rng
        ),
        now,
    )
    return None


def provider_states(route: Route, model: str, settings: Settings) -> dict[str, route_rules.ProviderState]:
    """What the cluster knows of each of the route's providers: configuration, limits (one round trip for all)
    and the mean render time seen there for the provider's model of the route (one more)."""
    configs = {name: route_rules.usable_config(settings, name) for name in route.providers}
    usable = [config for config, _ in configs.values() if config is not None]
    statuses = {status.provider: status for status in context.guard().status(usable, time.time())}
    models = {found.provider: found.model for found in route.candidates} or {name: model for name in route.providers}
    fields = [part for name in route.providers for part in counters.render_fields(name, models.get(name, model))]
    sums = context.store().redis.hmget(counters.COUNTERS_KEY, fields)
    states = {}
    for index, name in enumerate(route.providers):
        total, count = sums[2 * index], sums[2 * index + 1]
        render = float(total) / float(count) if total is not None and count and float(count) > 0 else None
        config, unusable = configs[name]
        states[name] = route_rules.ProviderState(config, unusable, statuses.get(name), render)
    return states


def admitted(job: Job, task_id: str, config: ProviderConfig) -> bool:
    """Take a rate-limit token and an in-flight slot for the job, or reschedule it to wait (False): see
    submit_rules.over_capacity."""
    settings = context.settings()
    ttl = settings.job_timeout_seconds + 3600
    admission = admit(config, job, ttl)
    if admission.allowed:
        return True
    now = utcnow()
    write(job.id, lambda j: submit_rules.over_capacity(j, task_id, admission, settings, now, context.rng()), now)
    return False


def admit(config: ProviderConfig, job: Job, ttl_seconds: float) -> Admission:
    """ProviderGuard.admit for `job`; a job of no batch is interactive, and while one waits it holds batch jobs
    back a little longer than its own recheck can take (submit_rules.over_capacity: recheck x 1.25 at most)."""
    hold = context.settings().capacity_recheck_seconds * 1.25 + 1.0
    return context.guard().admit(
        config,
        job.id,
        time.time(),
        ttl_seconds=ttl_seconds,
        interactive=job.batch_id is None,
        interactive_hold_seconds=hold,
    )


def record_unanswered(
    job: Job, task_id: str, config: ProviderConfig, exc: GenqueueError, answer: HttpAnswer | None
) -> None:
    """A submit that got no task id: the provider's limits told, the job failed or retried, or (canceled during
    the POST) its charge recorded from what may have happened at the vendor."""
    carry_out(submit_rules.error_effects(exc), config, job.id)
    settings, rng, now = context.settings(), context.rng(), utcnow()
    route = job.route
    moves_on = route is not None and route_rules.moves_on(exc, answer)
    if moves_on and route is not None and route_rules.next_candidate_left(route, job.provider):
        moved = write(job.id, lambda j: route_rules.failed_over(j, task_id, exc, now), now)
        if moved is not None:
            log.info(
                "submit: job %s: %s refused it (%s); on to the next provider of %s",
                job.id,
                job.provider,
                exc.code,
                route.model,
            )
            return
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
