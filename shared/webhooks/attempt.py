"""One attempt at an event (a job's or a batch's): sign, POST, record the attempt on the event's state, and say
when to try again. Job and batch events share it; what to do with a 410 or a spent schedule is the caller's."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from shared.models import WebhookAttempt, WebhookState
from shared.settings import Settings
from shared.webhooks.delivery import DeliveryResult, deliver, next_delay
from shared.webhooks.events import event_body
from shared.webhooks.signing import signature_headers

UNSIGNED_REFUSAL = "not sent: this worker has no GENQUEUE_WEBHOOK_SECRET, and events are never sent unsigned"


@dataclass(frozen=True)
class Attempted:
    """The event's state with this attempt recorded; the delay before the next attempt (None: no more)."""

    state: WebhookState
    retry_in: float | None
    result: DeliveryResult


def attempt_event(
    http: httpx.Client,
    url: str,
    state: WebhookState,
    data: dict[str, Any],
    settings: Settings,
    now: datetime,
    secret: str | None,
    missing_secret: str = UNSIGNED_REFUSAL,
) -> Attempted:
    """POST event `state` with `data` to `url` once, signed with `secret` (the settings' own, or the secret of the
    API key the job was made with).

    Without a secret nothing is sent (unless GENQUEUE_ALLOW_UNSIGNED_WEBHOOKS): the attempt is recorded as failed
    with `missing_secret` as its error, and retried on the schedule, so a worker started without its secret never
    sends an event a receiver cannot verify, and delivers it once the secret is there.

    The attempt as a whole is cut at `webhook_timeout_seconds` (`deliver`'s deadline), however the receiver trickles.

    Delivered, or 410 Gone (`gave_up` set), or a retry after the schedule's next delay (or the receiver's
    Retry-After when longer), or given up when the schedule is spent.
    """
    body = event_body(state.event_type, state.timestamp, data)
    stamp = int(time.time())
    if secret:
        headers = signature_headers(secret, state.event_id, stamp, body)
        result = deliver(http, url, headers, body, settings.webhook_timeout_seconds)
    elif settings.allow_unsigned_webhooks:
        headers = {"webhook-id": state.event_id, "webhook-timestamp": str(stamp), "content-type": "application/json"}
        result = deliver(http, url, headers, body, settings.webhook_timeout_seconds)
    else:
        result = DeliveryResult(delivered=False, error=missing_secret)
    new_state = state.model_copy(deep=True)
    new_state.attempts.append(WebhookAttempt(at=now, status_code=result.status_code, error=result.error))
    retry_in = None
    if result.delivered:
        new_state.delivered = True
    elif result.gone:
        new_state.gave_up = "the endpoint answered 410 Gone"
    else:
        retry_in = next_delay(len(state.attempts), settings.webhook_retry_delays, result.retry_after)
        if retry_in is None:
            new_state.gave_up = f"no delivery after {len(new_state.attempts)} attempts"
    return Attempted(new_state, retry_in, result)
