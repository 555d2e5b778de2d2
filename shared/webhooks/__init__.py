"""Webhooks per the Standard Webhooks specification: signing (pure), event bodies, and one delivery attempt.

signing.py   generate_secret, sign, signature_headers, verify
events.py    event_body, event_type_for
delivery.py  deliver -> DeliveryResult, next_delay
attempt.py   attempt_event: one attempt and what follows it
dead_letters.py  DeadLetters: events given up on, endpoints gone (410)
"""

from __future__ import annotations

from shared.webhooks.delivery import DeliveryResult, deliver, next_delay
from shared.webhooks.events import event_body, event_type_for
from shared.webhooks.signing import generate_secret, sign, signature_headers, verify

__all__ = [
    "DeliveryResult",
    "deliver",
    "event_body",
    "event_type_for",
    "generate_secret",
    "next_delay",
    "sign",
    "signature_headers",
    "verify",
]
