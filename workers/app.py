"""The Celery app of the workers and beat: the shared configuration (shared/queueing.py) and what only they read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from celery import Task, signals

from shared import logs, tracing
from shared.constants import DISPATCH_TASK, SWEEP_TASK
from shared.queueing import make_celery
from shared.settings import Settings, get_settings
from shared.store import BROKER_SETTING, STORE_SETTING, RedisClusterRefused, redis_client, refuse_cluster
from workers.health import health_step


def worker_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings a worker or beat reads and a producer does not, each with the reason it is set."""
    return {
        # Ack after the task ran, and requeue a task whose worker process died: every task is idempotent
        # (a step runs only for the task id the job store names), so a repeat is harmless and a loss is not.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message at a time per worker thread: steps are I/O-bound and uneven (a poll takes 50 ms, a
        # download minutes), so prefetching would park messages behind a long copy.
        "worker_prefetch_multiplier": 1,
        # Countdown tasks are all fetched into worker memory (~10 KB each); cap them so a burst of polls cannot
        # grow a worker without bound. The rest waits in Redis and runs a little late.
        "worker_eta_task_limit": 1000,
        # Vendor calls are I/O-bound: a thread pool with tens of threads per process (PERFORMANCE.md).
        "worker_pool": "threads",
        "worker_concurrency": 16,
        # Task events only while something asks for them: Flower broadcasts `enable_events` when it starts and every
        # few seconds after, so it still shows every task; without it a worker spends nothing on events (they
        # cost the bare 4-task chain a third of its CPU, PERFORMANCE.md). `celery -A workers control
        # enable_events` turns them on by hand.
        "worker_send_task_events": False,
        # A step never runs longer than this; the lease in the job store is shorter, so a hung step is taken over.
        "task_time_limit": 3600,
        # Finish warm shutdown even when only countdown tasks are reserved, so they are restored to Redis.
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_soft_shutdown_timeout": 10.0,
        "worker_hijack_root_logger": False,
        # A worker must outlive a Redis restart with its unacked messages: Celery's own consumer dies in most
        # restarts (celery 5.7) and leaves them to visibility_timeout. See workers/broker_recovery.py.
        "worker_consumer": "workers.broker_recovery:RecoveringConsumer",
        # `celery -A workers beat` runs the sweeper, which resumes jobs whose next step is overdue.
        "beat_schedule": {
            "sweep-overdue-jobs": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval_seconds,
                "options": {"queue": "poll", "expires": settings.sweep_interval_seconds},
            },
            # and the dispatcher, which releases held batch jobs at the pace of each vendor's limits
            "dispatch-batches": {
                "task": DISPATCH_TASK,
                "schedule": settings.dispatch_task_seconds,
                "options": {"queue": "poll", "expires": settings.dispatch_task_seconds},
            },
        },
    }


app = make_celery(get_settings())
app.conf.update(worker_config(get_settings()))
# heartbeat and ready files for an orchestrator's probes, only when GENQUEUE_HEALTH_DIR is set (workers/health.py)
app.steps["consumer"].add(health_step())


def refuse_redis_cluster(**_: Any) -> None:
    """A worker (or beat) on a Redis Cluster node stops at start-up with the reason (shared/store.refuse_cluster);
    a Redis that does not answer yet is left to the broker's retries."""
    settings = get_settings()
    sentinels, master = settings.redis_sentinels, settings.redis_sentinel_master
    for setting, url in ((BROKER_SETTING, settings.broker_redis_url), (STORE_SETTING, settings.store_redis_url)):
        try:
            refuse_cluster(redis_client(url, settings.redis_ca_file, sentinels, master, failover_seconds=0), setting)
        except RedisClusterRefused as exc:
            raise SystemExit(f"genqueue: error: {exc}") from None
        except redis.RedisError:
            continue


def configure_logging(loglevel: str | int | None = None, **_: Any) -> None:
    """Celery's logging, replaced by genqueue's (shared/logs.py): text or JSON as GENQUEUE_LOG_FORMAT says, at
    the worker's --loglevel, each line with its step's job id, provider, step and task, secrets redacted."""
    settings = get_settings()
    logs.configure(settings.log_format, loglevel or "INFO", settings.secrets())


signals.setup_logging.connect(configure_logging)
signals.worker_init.connect(refuse_redis_cluster)
signals.beat_init.connect(refuse_redis_cluster)


def genqueue_task(name: str) -> Callable[[Callable[..., Any]], Task]:
    """Register a step task: bound (it needs its own task id), routed by name, taking only a job id."""

    def register(function: Callable[..., Any]) -> Task:
        return app.task(name=name, bind=True, typing=True)(function)

    return register


def trace_worker(**_: Any) -> None:
    """Tracing on in a worker when the OTEL_* variables ask for it (shared/tracing.py). `worker_init` fires in the
    worker's main process, which runs the tasks with the threads pool; `worker_process_init` in each prefork
    child, which inherits the parent's set-up."""
    tracing.configure("genqueue-worker")


def trace_beat(**_: Any) -> None:
    """Tracing on in beat when the OTEL_* variables ask for it (shared/tracing.py)."""
    tracing.configure("genqueue-beat")


signals.worker_init.connect(trace_worker)
signals.worker_process_init.connect(trace_worker)
signals.beat_init.connect(trace_beat)
