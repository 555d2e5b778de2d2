"""Celery's own ceiling for a genqueue job: a 4-task no-op chain on the workers' very app and settings.

`celery -A _noop_chain worker` (with this folder on PYTHONPATH) runs genqueue's Celery app (workers/app.py:
the same broker options, worker_config, logging set-up and signals) with four extra tasks, one per genqueue
queue, each doing nothing but publishing the next, as a genqueue step does: submit → poll → finalize →
webhooks. The last one reports the chain done with one UDP datagram (the chain id) to BENCH_DONE_ADDR
(HOST:PORT), so the bench learns of it without a Redis command of its own. Each task's only argument is the
chain id, as a step's is the job id.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from workers import app
from workers.app import genqueue_task

#: (task name, queue), in chain order
CHAIN: list[tuple[str, str]] = [
    ("bench.noop_submit", "submit"),
    ("bench.noop_poll", "poll"),
    ("bench.noop_finalize", "finalize"),
    ("bench.noop_webhook", "webhooks"),
]

_done = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def _publish_next(index: int, chain_id: str) -> None:
    name, queue = CHAIN[index + 1]
    app.send_task(name, args=[chain_id], queue=queue)


@genqueue_task(CHAIN[0][0])
def noop_submit(self: Any, chain_id: str) -> None:
    """Step 1: publish step 2."""
    _publish_next(0, chain_id)


@genqueue_task(CHAIN[1][0])
def noop_poll(self: Any, chain_id: str) -> None:
    """Step 2: publish step 3."""
    _publish_next(1, chain_id)


@genqueue_task(CHAIN[2][0])
def noop_finalize(self: Any, chain_id: str) -> None:
    """Step 3: publish step 4."""
    _publish_next(2, chain_id)


@genqueue_task(CHAIN[3][0])
def noop_webhook(self: Any, chain_id: str) -> None:
    """Step 4: tell the bench this chain is done."""
    host, _, port = os.environ["BENCH_DONE_ADDR"].rpartition(":")
    _done.sendto(chain_id.encode(), (host, int(port)))


__all__ = ["CHAIN", "app"]
