"""`Producer`: enqueue generation jobs and follow them, from any Python backend service."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import Celery

from producer.validate import (
    INPUT_KINDS,
    build_request,
    check_remote_inputs,
    fingerprint,
    inline_inputs,
    local_image_paths,
    normalized_metadata,
    validate,
)
from shared import costs, lifecycle, tracing
from shared.batch.models import BatchLine
from shared.claims import Slot
from shared.constants import JOB_EVENTS_CHANNEL
from shared.decisions import route as route_rules
from shared.errors import InvalidRequest
from shared.models import Budget, Charge, Cost, GenerationRequest, Job, JobStatus, Route, utcnow
from shared.protection import ProviderGuard, ProviderStatus
from shared.providers.routes import is_routed
from shared.queueing import make_celery, publish_step, write_and_publish
from shared.settings import Settings, get_settings
from shared.storage import Storage
from shared.store import JobStore, idempotency_slot
from shared.webhooks.dead_letters import DeadLetters


class JobNotFound(LookupError):
    """Raised when no job has the given id."""


@dataclass(frozen=True)
class Enqueued:
    """What `Producer.enqueue` did: the job, and whether it was made now (False: given back for its idempotency
    key)."""

    job: Job
    created: bool


class Producer:
    """Submit, read, wait for and cancel jobs. Thread-safe; make one per process and keep it."""

    def __init__(self, settings: Settings | None = None, store: JobStore | None = None, celery: Celery | None = None):
        self.settings = settings or get_settings()
        self.store = store or JobStore.from_settings(self.settings)
        self.celery = celery or make_celery(self.settings, main="genqueue-producer")

    def submit(
        self,
        provider: str,
        model: str,
        prompt: str,
        options: dict[str, Any] | None = None,
        images: list[str] | None = None,
        webhook_url: str | None = None,
        metadata: Mapping[str, str | int | float | bool] | None = None,
        idempotency_key: str | None = None,
        route_policy: str = "cheapest",
    ) -> Job:
        """Validate the request, store the job and enqueue its submit; the job as stored.

        `provider` may be `auto` (any provider of `model`'s route, shared/providers/routes.py) or a
        comma-separated list of them; the submit then chooses by `route_policy` (cheapest, fastest, preferred)
        among those free to take it, and moves on after a refusal that charged nothing (shared/decisions/route.py).

        Metadata values may be strings, numbers or booleans; they are stored as strings (`3` as "3", `True` as
        "true"), at most 32 keys. Raises InvalidRequest (nothing stored, nothing enqueued) for any request the job
        would fail for, or that is larger than genqueue's bounds (shared/limits.py). Local image files and
        data: URIs are uploaded to the bucket under inputs/ first. With `idempotency_key`, the same key and request
        give back the job made the first time (for 24 hours); the same key with another request is refused.
        """
        line = BatchLine.model_construct(
            provider=provider,
            model=model,
            prompt=prompt,
            options=options or {},
            images=images or [],
            webhook=webhook_url,
            metadata=dict(metadata or {}),
            route_policy=route_policy,
        )
        return self.enqueue(line, idempotency_key).job

    def enqueue(
        self,
        line: BatchLine,
        idempotency_key: str | None = None,
        tenant: str | None = None,
        budget: Budget | None = None,
    ) -> Enqueued:
        """`submit` for a request given as a batch-file line (the HTTP API's body), telling also whether the job
        was made now or given back for its idempotency key.

        `tenant`: the API key the job is made for (None: the operator's own tools); `budget`: that key's: a job
        whose estimate would take the key's spend past it is refused (BudgetExceeded, nothing stored), as is one
        with no estimate in the budget's currency.
        """
        provider, model, webhook_url = line.provider, line.model, line.webhook
        request = build_request(model, line.prompt, line.options, line.images)
        if tenant is not None:
            check_remote_inputs(request)
        metadata = normalized_metadata(line.metadata)
        route = None
        if is_routed(provider):  # the job goes where its route chooses: for now, as the policy ranks the catalog
            if budget is not None:  # a switch of provider at submit would move its cost outside the reservation
                raise InvalidRequest("a key with a budget cannot send jobs to auto or a provider list; name one")
            route = route_rules.plan(provider, request, line.route_policy, self.settings)
            chosen = route_rules.chosen_candidate(route)
            provider, request = chosen.provider, request.model_copy(update={"model": chosen.model})
        _, cost = validate(self.settings, provider, request, webhook_url, signed_by_key=tenant is not None)
        if budget is not None and getattr(cost, budget.currency) is None:
            raise InvalidRequest(
                f"no {budget.currency} estimate for {provider} {model}, so the key's budget cannot bound it"
            )
        job_id = f"job_{uuid.uuid4().hex}"
        request_fingerprint = fingerprint(provider, request, webhook_url, metadata)
        # inputs go up before the key is claimed, so a claim is followed by its job within milliseconds
        request = self._upload_inputs(request, job_id)

        def create() -> Job:
            return self.create_job(
                job_id,
                provider,
                request,
                cost,
                webhook_url,
                metadata,
                idempotency_key=idempotency_key,
                tenant=tenant,
                budget=budget,
                route=route,
            )

        if idempotency_key:
            # a claim whose job never appears (its submit died) is taken over after a few seconds (shared/claims.py)
            slot = idempotency_slot(idempotency_key)
            job, created = self.store.claims.claim_and_create(slot, job_id, request_fingerprint, self.store.get, create)
            if not created:
                return Enqueued(job, created=False)
        else:
            job = create()
        assert job.step is not None
        publish_step(self.celery, self.settings, job.id, job.step, job.created_at)
        return Enqueued(job, created=True)

    def create_job(
        self,
        job_id: str,
        provider: str,
        request: GenerationRequest,
        cost: Cost,
        webhook_url: str | None,
        metadata: dict[str, str],
        idempotency_key: str | None = None,
        batch_id: str | None = None,
        submit_by: datetime | None = None,
        held: bool = False,
        claim: Slot | None = None,
        tenant: str | None = None,
        budget: Budget | None = None,
        route: Route | None = None,
    ) -> Job:
        """Store a validated job (uploading its local images first); its submit step is not published here.

        A `held` job has no step: it waits in its batch until the dispatcher releases it. `claim`: the claim it is
        created under (its batch line's; an idempotency key's is found by the store), see JobStore.create.
        """
        request = self._upload_inputs(request, job_id)
        now = utcnow()
        job = Job(
            id=job_id,
            provider=provider,
            request=request,
            cost=cost,
            charge=Charge(estimate=cost),
            metadata=metadata,
            tenant=tenant,
            route=route,
            batch_id=batch_id,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
            deadline_at=now + timedelta(seconds=self.settings.job_timeout_seconds),
            submit_by=submit_by,
            step=None if held else lifecycle.new_step("submit", now),
            trace_context=tracing.job_context(job_id, provider),
        )
        self.store.create(job, claim, budget)
        return job

    def _upload_inputs(self, request: GenerationRequest, job_id: str) -> GenerationRequest:
        """The request with every local image path and every data: URI replaced by the s3:// reference of its copy.

        data: URIs go up like files so that one path serves every vendor: an adapter presigns the copy for a
        URL-only field (VeoGen `image_urls` and `video_urls`, veo3api `source_image_urls`) or inlines it again where
        the vendor takes base64 (VicSee and gateway images), and the job record every step reads holds a reference,
        not megabytes.
        """
        local = local_image_paths(request)
        inline = inline_inputs(request)
        if not local and not inline:
            return request
        storage = Storage(self.settings)
        refs = {path: storage.upload_input(Path(path).expanduser(), job_id) for path in local}
        for index, (uri, kind) in enumerate(inline.items()):
            refs[uri] = storage.upload_data_uri(uri, job_id, index, kind)
        update: dict[str, object] = {}
        for field in INPUT_KINDS:
            value = getattr(request, field)
            if isinstance(value, list):
                update[field] = [refs.get(ref, ref) for ref in value]
            elif value:
                update[field] = refs.get(value, value)
        return request.model_copy(update=update)

    def get(self, job_id: str) -> Job:
        """The job as it is now; JobNotFound if there is none."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job

    def wait(self, job_id: str, timeout: float | None = None, on_change: Callable[[Job], None] | None = None) -> Job:
        """Wait until the job ends, or `timeout` seconds pass; the job as it is then.

        Woken by the job store's notice of each write to the job (its channel), not by polling; the job is read
        again at least every `wait_interval_seconds` all the same, in case a notice is lost with a connection.
        `on_change(job)` is called whenever the status or progress moves, for a caller showing progress.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: tuple[JobStatus, float | None] | None = None
        notices = self.store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        notices.subscribe(JOB_EVENTS_CHANNEL.format(job_id=job_id))
        try:
            while True:
                job = self.get(job_id)
                if on_change is not None and (job.status, job.progress) != seen:
                    seen = (job.status, job.progress)
                    on_change(job)
                if job.status.terminal or (deadline is not None and time.monotonic() >= deadline):
                    return job
                pause = self.settings.wait_interval_seconds
                if deadline is not None:
                    pause = max(0.0, min(pause, deadline - time.monotonic()))
                notices.get_message(timeout=pause)
        finally:
            notices.close()

    def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not ended (its webhook fires with job.canceled, once); the job as it is now.

        The vendor is not asked to stop: none of the documented APIs can cancel a task. A job the vendor accepted
        keeps its in-flight slot, and genqueue keeps polling it quietly until the vendor reports the task ended,
        then frees the slot and records the charge; its error message says so. Any other job frees its slot now.
        """
        now = utcnow()
        written = write_and_publish(
            self.store, self.celery, self.settings, job_id, lambda job: lifecycle.cancel(job, now), now
        )
        if written is None:
            return self.get(job_id)
        if not costs.awaiting_vendor(written):
            ProviderGuard(self.store.redis).free_slot(written.provider, job_id)
        return written

    def redeliver_webhook(self, job_id: str) -> Job:
        """Send an ended job's webhook event again, with the same webhook-id (receivers deduplicate on it).

        Lifts a 410 Gone block on the job's endpoint and takes the job off the dead-letter list. InvalidRequest
        when the job has not ended or has no webhook URL.
        """
        job = self.get(job_id)
        if job.webhook_url is None or job.webhook is None:
            raise InvalidRequest(f"job {job_id} has no webhook event to redeliver (no webhook URL, or not ended)")
        dead_letters = DeadLetters(self.store.redis)
        dead_letters.clear_gone(job.webhook_url)
        now = utcnow()
        dead_letters.remove(job_id)
        written = write_and_publish(
            self.store, self.celery, self.settings, job_id, lambda current: lifecycle.redeliver(current, now), now
        )
        if written is None:
            raise InvalidRequest(f"job {job_id} has no webhook event to redeliver")
        return written

    def dead_letters(self) -> list[Job]:
        """Jobs whose webhook event was given up on after the whole retry schedule, newest first."""
        job_ids = DeadLetters(self.store.redis).job_ids()
        return [job for job in self.store.get_many(job_ids) if job is not None]

    def provider_status(self) -> list[ProviderStatus]:
        """Every provider's limits, credit pause and breaker, as all workers see them."""
        return ProviderGuard(self.store.redis).status(self.settings.usable_providers(), time.time())

    def resume_provider(self, name: str) -> None:
        """Lift provider `name`'s credit pause and close its breaker; InvalidRequest for an unknown provider."""
        config = self.settings.provider(name)
        ProviderGuard(self.store.redis).resume(config.name)
