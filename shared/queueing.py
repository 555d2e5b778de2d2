"""The Celery configuration every process shares, and how a job's next step is published.

The producer and the workers both build their Celery app here, so they agree on the broker, the queues, the
routes and the visibility timeout (the shortest timeout among processes sharing a broker wins: celery/celery#7651).
What only a worker or beat reads (pool, prefetch, acks, the beat schedule) is in workers/app.py. The producer
publishes by task name only and never imports workers/.

`write_and_publish` is how every writer of a job hands on its next step: the transition is written first, then
its step published, so a crash in between leaves a recorded, overdue step for the sweeper, never a task for a
state that was not saved.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from celery import Celery
from kombu.entity import Queue

from shared import broker_transport
from shared.constants import BATCH_WEBHOOK_TASK, DISPATCH_TASK, QUEUES, STEP_TASKS, SWEEP_TASK
from shared.models import Job, Step, utcnow
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.store import JobStore

#: the values of a URL's ssl_cert_reqs (kombu's spellings); a client's CERT_OPTIONAL verifies like CERT_REQUIRED
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_REQUIRED, "required": ssl.CERT_REQUIRED}


def broker_tls(url: str, ca_file: str | None) -> tuple[str, dict[str, Any] | None]:
    """The broker URL and Celery's `broker_use_ssl` for it: the URL as given and None for redis://.

    For rediss:// the server's certificate and host name are verified, against `ca_file` when given (else the
    system's CAs), unless the URL says ssl_cert_reqs=none: kombu alone would not verify (CERT_NONE, with a
    warning). The URL's own ssl_* parameters move into the options, since kombu would otherwise use them in place
    of `broker_use_ssl` and drop the CA file. ValueError for an ssl_cert_reqs it does not know.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return url, None
    query = parse_qsl(parts.query, keep_blank_values=True)
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if ca_file:
        options["ssl_ca_certs"] = ca_file
    for key, value in query:
        if key == "ssl_cert_reqs":
            reqs = _CERT_REQS.get(value.lower().removeprefix("cert_"))
            if reqs is None:
                raise ValueError(f"ssl_cert_reqs={value} in the Redis URL: use none, optional or required")
            options[key] = reqs
        elif key == "ssl_check_hostname":
            options[key] = value.lower() != "false"
        elif key.startswith("ssl_"):
            options[key] = value
    rest = urlencode([(key, value) for key, value in query if not key.startswith("ssl_")])
    return urlunsplit(parts._replace(query=rest)), options


def sentinel_broker_url(url: str, sentinels: list[str]) -> str:
    """Kombu's URL for a broker found through Sentinel: one `sentinel://` URL per sentinel, `;`-separated, each with
    `url`'s user, password and database (which are the master's, as kombu passes them on)."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    prefix = f"{auth}@" if auth else ""
    database = parts.path.strip("/") or "0"
    return ";".join(f"sentinel://{prefix}{address}/{database}" for address in sentinels)


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings every process needs (broker, serialization, queues, routes), each with its reason."""
    broker_url, broker_use_ssl = broker_tls(settings.broker_redis_url, settings.redis_ca_file)
    transport: dict[str, Any] = {"visibility_timeout": settings.visibility_timeout, "socket_timeout": 30}
    if settings.redis_sentinels:
        broker_url = sentinel_broker_url(broker_url, settings.redis_sentinels)
        transport["master_name"] = settings.redis_sentinel_master
    return {
        "broker_url": broker_url,
        # kombu's Redis transport, keeping one client per channel (shared/broker_transport.py)
        "broker_transport": broker_transport.SENTINEL if settings.redis_sentinels else broker_transport.PLAIN,
        # rediss:// verifies the server like the job store does (redis-py's default); no result backend, so no
        # redis_backend_use_ssl
        "broker_use_ssl": broker_use_ssl,
        # Redis redelivers an unacked message after visibility_timeout, counted from delivery; every countdown we
        # schedule stays below half of it (Settings.max_countdown_seconds), or the task would run twice.
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        # Keep retrying the broker forever: a worker must come back after a Redis restart, not exit.
        "broker_connection_max_retries": None,
        # JSON only: pickle from a shared broker is remote code execution, and our arguments are job ids.
        "task_serializer": "json",
        "accept_content": ["json"],
        # No result backend: job state lives in the job store; a backend would cost +20 % worker CPU for nothing.
        "result_backend": None,
        "task_ignore_result": True,
        # No task-sent event: Celery sends it on every publish whether or not anything listens (one more Redis
        # round trip per step). Flower shows a task from when a worker receives it (workers/app.py: task events).
        "task_send_sent_event": False,
        "task_queues": [Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        "task_default_queue": "submit",
        "task_routes": {task: {"queue": queue} for task, queue in STEP_TASKS.values()}
        | {SWEEP_TASK: {"queue": "poll"}, DISPATCH_TASK: {"queue": "poll"}, BATCH_WEBHOOK_TASK: {"queue": "webhooks"}},
        "enable_utc": True,
    }


def make_celery(settings: Settings, main: str = "genqueue") -> Celery:
    """A Celery app configured from `settings` (no tasks registered: the workers add them)."""
    app = Celery(main)
    app.conf.update(celery_config(settings))
    return app


def publish_step(app: Celery, settings: Settings, job_id: str, step: Step, now: datetime | None = None) -> None:
    """Publish the task that runs `step`, with the step's task id and a countdown to its due time.

    A countdown is never longer than Settings.max_countdown_seconds; a step due later is published to wake up
    early, find it is not due, and publish itself again (lifecycle.Decision.WAIT).
    """
    task_name, queue = STEP_TASKS[step.name]
    wait = (step.due_at - (now or utcnow())).total_seconds()
    countdown = min(max(wait, 0.0), settings.max_countdown_seconds)
    app.send_task(task_name, args=[job_id], task_id=step.task_id, queue=queue, countdown=countdown or None)


def write_and_publish(
    store: JobStore,
    app: Celery,
    settings: Settings,
    job_id: str,
    transition: Callable[[Job], Job | None],
    now: datetime | None = None,
    counts: Mapping[str, float] | None = None,
) -> Job | None:
    """Apply `transition` to job `job_id` (one compare-and-set, adding `counts` to the counters if it commits) and
    publish the step it leaves, if any; the job written, or None when the transition declined."""
    now = now or utcnow()
    written = store.update(job_id, transition, counts=counts)
    if written is not None and written.step is not None:
        publish_step(app, settings, job_id, written.step, now)
    return written
