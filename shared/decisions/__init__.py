"""The rules of each stage, as pure functions: one module per stage (`submit`, `poll`, `webhook`, and the
batch `dispatch`er's); the transitions they write are shared/lifecycle.py's.

Each takes what a step knows (the job, the batch or the provider's status, the vendor's answer or error, the
settings, the time) and returns the transition to write (a new Job, or None when it does not apply to the job as
it is now) and the `Effects` to carry out besides. Nothing here touches Redis, Celery or the network: the tasks
claim, do the I/O, apply the decision, write once and publish; these functions are tested without either.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Effects:
    """What a step carries out on the provider's shared limits (shared/protection/) besides writing the job."""

    #: free the job's in-flight slot: the vendor refused it or is done with it
    free_slot: bool = False
    #: count a failure towards the provider's circuit breaker (a 5xx or transport failure)
    breaker_failure: bool = False
    #: the vendor accepted the submit: reset the breaker's failures (and lift a credit pause it probed)
    breaker_success: bool = False
    #: pause the provider's submits for credits, with this reason (an insufficient-credits answer)
    credit_pause: str | None = None
