"""Names that must agree across processes: Redis keys, task names, queues."""

from __future__ import annotations

KEY_PREFIX = "genqueue:"
#: hash per job: `data` (the Job as JSON), `version` (bumped by every write), `status`
JOB_KEY = KEY_PREFIX + "job:{job_id}"
#: sorted set: job id -> unix time its next step is due (jobs whose chain is still running)
DUE_KEY = KEY_PREFIX + "due"
#: idempotency key -> `{job_id} {request hash}`, kept 24 hours
IDEMPOTENCY_KEY = KEY_PREFIX + "idem:{key}"
IDEMPOTENCY_TTL_SECONDS = 24 * 3600

#: list of job ids whose webhook event could not be delivered before the retry schedule was spent
WEBHOOK_DEAD_LETTERS_KEY = KEY_PREFIX + "webhooks:dead"
#: set of sha256(webhook URL) of endpoints that answered 410 Gone: nothing more is sent to them
WEBHOOK_GONE_KEY = KEY_PREFIX + "webhooks:gone"

#: per provider (shared/protection/): token bucket hash `tokens`, `at` (unix time of its last update)
PROVIDER_BUCKET_KEY = KEY_PREFIX + "provider:{name}:bucket"
#: sorted set: job id -> unix time its in-flight slot expires if never released
PROVIDER_IN_FLIGHT_KEY = KEY_PREFIX + "provider:{name}:inflight"
#: circuit breaker hash: `failures` (consecutive), `open_until`, `probe_job` and `probe_until` (half-open probe)
PROVIDER_BREAKER_KEY = KEY_PREFIX + "provider:{name}:breaker"
#: insufficient-credits hold hash: `since`, `message`, `refused_at`, `last_probe_at`, `probe_job`
PROVIDER_CREDIT_HOLD_KEY = KEY_PREFIX + "provider:{name}:credit_hold"

SUBMIT_TASK = "genqueue.submit"
POLL_TASK = "genqueue.poll"
FINALIZE_TASK = "genqueue.finalize"
WEBHOOK_TASK = "genqueue.deliver_webhook"
SWEEP_TASK = "genqueue.sweep"

#: step name (as in `Step.name`) -> (task name, queue)
STEP_TASKS: dict[str, tuple[str, str]] = {
    "submit": (SUBMIT_TASK, "submit"),
    "poll": (POLL_TASK, "poll"),
    "finalize": (FINALIZE_TASK, "finalize"),
    "deliver_webhook": (WEBHOOK_TASK, "webhooks"),
}
QUEUES = ("submit", "poll", "finalize", "webhooks")
