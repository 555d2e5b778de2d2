"""Names that must agree across processes: Redis keys, task names, queues."""

from __future__ import annotations

KEY_PREFIX = "genqueue:"
#: hash per job: `data` (the Job as JSON), `version` (bumped by every write), `status`
JOB_KEY = KEY_PREFIX + "job:{job_id}"
#: pub/sub channel per job: "{version} {status}" after every committed write of the job (the events stream)
JOB_EVENTS_CHANNEL = KEY_PREFIX + "job-events:{job_id}"
#: pub/sub channel per batch: "{job id} {status}" when one of its jobs changes status, "batch" when the batch's
#: own record is written (held counts, completion): what `/ui`'s batch page follows
BATCH_EVENTS_CHANNEL = KEY_PREFIX + "batch-events:{batch_id}"
#: sorted set per API key: id of each job made with it -> its creation time in ms (listing, newest first)
TENANT_JOBS_KEY = KEY_PREFIX + "tenant:{tenant}:jobs"
#: list per minute of creation (unix ms // 60000): the ids of every job created in it, in creation order; with a
#: sorted set of those minutes, the operator's listing of all jobs, newest first (a list entry costs ~40 bytes)
CREATED_JOBS_KEY = KEY_PREFIX + "jobs:created:{minute}"
CREATED_MINUTES_KEY = KEY_PREFIX + "jobs:created-minutes"
#: hash per API key: `credits`, `usd`: what its jobs count as costing together (each job's cost as it is now)
TENANT_SPEND_KEY = KEY_PREFIX + "tenant:{tenant}:spend"
#: sorted set: job id -> unix time its next step is due (jobs whose chain is still running)
DUE_KEY = KEY_PREFIX + "due"
#: sorted set per queue: the same jobs, by the queue of their next step (the steps-due gauge autoscaling reads)
QUEUE_DUE_KEY = KEY_PREFIX + "due:{queue}"
#: idempotency key -> `{job_id} {request hash}`, kept 24 hours
IDEMPOTENCY_KEY = KEY_PREFIX + "idem:{key}"
IDEMPOTENCY_TTL_SECONDS = 24 * 3600

#: list of job ids whose webhook event could not be delivered before the retry schedule was spent
WEBHOOK_DEAD_LETTERS_KEY = KEY_PREFIX + "webhooks:dead"
#: set of sha256(webhook URL) of endpoints that answered 410 Gone: nothing more is sent to them
WEBHOOK_GONE_KEY = KEY_PREFIX + "webhooks:gone"
#: hash: `{kind}:{id}` -> JSON {kind, id, reason, at}: records that could not be read, set aside (shared/quarantine.py)
QUARANTINE_KEY = KEY_PREFIX + "quarantine"

#: hash: API key name -> its record (JSON, shared/keys.py); SHA-256 of each live key -> its name; name -> last used
KEYS_KEY = KEY_PREFIX + "apikeys"
KEY_HASHES_KEY = KEY_PREFIX + "apikeys:sha256"
KEYS_LAST_USED_KEY = KEY_PREFIX + "apikeys:last-used"
#: hash per API key: its request rate's token bucket (`tokens`, `at`)
KEY_RATE_KEY = KEY_PREFIX + "apikey:{name}:rate"
#: string per `/ui` login, under the SHA-256 of its cookie's token: JSON {operator, tenant, csrf, operator_key},
#: expiring with the session (producer/http_api/ui_session.py)
UI_SESSION_KEY = KEY_PREFIX + "ui:session:{token_sha256}"
#: counter per client address: its failed `/ui` logins in the current window (expires with the window)
UI_LOGIN_FAILURES_KEY = KEY_PREFIX + "ui:login-failures:{address}"

#: batch hash: `data` (the Batch as JSON); name -> batch id
BATCH_KEY = KEY_PREFIX + "batch:{batch_id}"
BATCH_NAME_KEY = KEY_PREFIX + "batch-name:{name}"
#: the same for an API key's batches: each key has its names to itself
TENANT_BATCH_NAME_KEY = KEY_PREFIX + "tenant:{tenant}:batch-name:{name}"
#: set of ids of batches with work left for the dispatcher (pending lines, or jobs not yet ended)
ACTIVE_BATCHES_KEY = KEY_PREFIX + "batches:active"
#: sorted set: batch id -> its creation time in ms (listing, newest first; an expired batch is dropped when met)
BATCHES_CREATED_KEY = KEY_PREFIX + "batches:created"
#: hash: line number -> `{job_id} {request hash}`: what each line of the batch file became (resume, report order)
BATCH_LINES_KEY = KEY_PREFIX + "batch:{batch_id}:lines"
#: sorted set per provider: job ids held back until the dispatcher releases them, by line number
BATCH_PENDING_KEY = KEY_PREFIX + "batch:{batch_id}:pending:{provider}"
#: hash: job status -> number of the batch's jobs in it; kept by the job store's write script
BATCH_COUNTS_KEY = KEY_PREFIX + "batch:{batch_id}:counts"
#: list: ids of the batch's jobs that ended, not yet accounted for by the dispatcher; pushed by the write script
BATCH_ENDED_KEY = KEY_PREFIX + "batch:{batch_id}:ended"
#: hash: `committed` (reserved or spent, in the budget's currency), `spent_credits`, `spent_usd` (charged by vendors)
BATCH_LEDGER_KEY = KEY_PREFIX + "batch:{batch_id}:ledger"
#: hash: job id -> the amount reserved for it at release, until it ends
BATCH_RESERVED_KEY = KEY_PREFIX + "batch:{batch_id}:reserved"
#: set of the batch's jobs that ended canceled while their vendor still renders them: settled once it is done
BATCH_UNSETTLED_KEY = KEY_PREFIX + "batch:{batch_id}:unsettled"
#: sorted set per provider: batch jobs released to the submit queue and not yet started, by release time
RELEASED_KEY = KEY_PREFIX + "provider:{name}:released"
#: sorted set: batch id -> unix time its next step (the `batch.completed` delivery) is due; kept by the batch
#: store's write script, as DUE_KEY is by the job store's, and read by the sweeper
BATCH_DUE_KEY = KEY_PREFIX + "batches:due"
#: lock held by the one dispatcher pass running
DISPATCH_LOCK_KEY = KEY_PREFIX + "dispatch:lock"
#: unix time of the last dispatcher pass, noted once it finished (how `batch status` tells held jobs wait for no one)
DISPATCH_LAST_RUN_KEY = KEY_PREFIX + "dispatch:last-run"
#: unix time the sweeper's last pass finished (its age is a metric: a sweeper that stopped is alerted on)
SWEEP_LAST_RUN_KEY = KEY_PREFIX + "sweep:last-run"

#: per provider (shared/protection/): token bucket hash `tokens`, `at` (unix time of its last update)
PROVIDER_BUCKET_KEY = KEY_PREFIX + "provider:{name}:bucket"
#: string per provider, expiring: the id of an interactive job its limits just refused; while it is set, batch jobs
#: are refused too, so the next token and slot go to the interactive job (shared/protection/scripts.py ADMIT)
PROVIDER_INTERACTIVE_WAITING_KEY = KEY_PREFIX + "provider:{name}:interactive-waiting"
#: sorted set: job id -> unix time its in-flight slot expires if never released
PROVIDER_IN_FLIGHT_KEY = KEY_PREFIX + "provider:{name}:inflight"
#: circuit breaker hash: `failures` (consecutive), `open_until`, `probe_job` and `probe_until` (half-open probe)
PROVIDER_BREAKER_KEY = KEY_PREFIX + "provider:{name}:breaker"
#: insufficient-credits hold hash: `since`, `message`, `refused_at`, `last_probe_at`, `probe_job`
#: the key keeps the name it had when this was called a credit hold, so a pause survives an upgrade
PROVIDER_CREDIT_PAUSE_KEY = KEY_PREFIX + "provider:{name}:credit_hold"

SUBMIT_TASK = "genqueue.submit"
POLL_TASK = "genqueue.poll"
FINALIZE_TASK = "genqueue.finalize"
WEBHOOK_TASK = "genqueue.deliver_webhook"
SWEEP_TASK = "genqueue.sweep"
DISPATCH_TASK = "genqueue.dispatch"
BATCH_WEBHOOK_TASK = "genqueue.deliver_batch_webhook"

#: step name (as in `Step.name`) -> (task name, queue)
STEP_TASKS: dict[str, tuple[str, str]] = {
    "submit": (SUBMIT_TASK, "submit"),
    "poll": (POLL_TASK, "poll"),
    "finalize": (FINALIZE_TASK, "finalize"),
    "deliver_webhook": (WEBHOOK_TASK, "webhooks"),
}
QUEUES = ("submit", "poll", "finalize", "webhooks")
QUEUE_DUE_KEYS = tuple(QUEUE_DUE_KEY.format(queue=queue) for queue in QUEUES)
