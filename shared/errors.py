"""The error hierarchy of genqueue; each concrete class maps onto one error code of INTERFACE.md.

GenqueueError                                       (a family: no code of its own)
├── InvalidRequest               invalid_request   (refused by us before sending)
├── ProviderError                                   (a family: an answer, or no answer, from a vendor)
│   ├── AuthFailed               auth_failed
│   ├── InsufficientCredits      insufficient_credits
│   ├── ProviderRejected         invalid_request   (refused by the vendor)
│   ├── GenerationFailed         generation_failed
│   ├── ProviderRedirected       provider_error    (a vendor API call answered 3xx; never followed)
│   ├── RateLimited              rate_limited      [Transient]
│   └── ProviderUnavailable      provider_error    [Transient]
├── SubmitOutcomeUnknown         submit_outcome_unknown
├── JobTimeout                   timeout
├── DownloadFailed               download_failed
│   └── DownloadUnavailable      download_failed   [Transient]
└── StorageError                 storage_error
    └── StorageUnavailable       storage_error     [Transient]

Transient marks, in every family, a failure that may pass: the step is retried (after `retry_after` seconds, or
with backoff) within its code's retry budget, and the code applies once the budget is spent. Everything else ends
the job at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Self

REDACTED = "[redacted]"


class GenqueueError(Exception):
    """Root of every error genqueue raises on purpose; `code` is the INTERFACE.md error code.

    Only a class that names a code can be raised: a family (this root, ProviderError) cannot.
    """

    code: ClassVar[str]

    def __init__(self, message: str) -> None:
        if not hasattr(type(self), "code"):
            raise TypeError(f"{type(self).__name__} is a family of errors; raise one of its kinds")
        super().__init__(message)
        self.message = message

    def reworded(self, message: str) -> Self:
        """The same error (class, code, fields) with another message.

        Made without calling `__init__` (copy.copy would call it with the message alone, which a subclass taking
        more arguments refuses), so every subclass can be reworded.
        """
        copied = type(self).__new__(type(self))
        copied.__dict__.update(self.__dict__)
        copied.message = message
        copied.args = (message,)
        return copied


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every occurrence of each secret replaced, so keys never reach a job's error or a log line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class Transient(GenqueueError):
    """The marker of a failure that may pass; `retry_after` is how long the other side asked us to wait, if it did.

    Not raised on its own: a kind of each family inherits it alongside the family.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidRequest(GenqueueError):
    """Raised when a request is refused before anything is sent (bad field, unknown model, option out of range)."""

    code = "invalid_request"


class ProviderError(GenqueueError):
    """Raised when a vendor answers with an error, or does not answer usably (a family: raise one of its kinds)."""


class AuthFailed(ProviderError):
    """Raised when the vendor refuses our key."""

    code = "auth_failed"


class InsufficientCredits(ProviderError):
    """Raised when the vendor's balance does not cover the job."""

    code = "insufficient_credits"


class ProviderRejected(ProviderError):
    """Raised when the vendor refuses the request itself (validation, unknown model)."""

    code = "invalid_request"


class GenerationFailed(ProviderError):
    """Raised when the vendor reports that the generation failed; the message carries its reason."""

    code = "generation_failed"


class ProviderRedirected(ProviderError):
    """Raised when a vendor API call (submit, poll) answers with a redirect, which is never followed."""

    code = "provider_error"


class RateLimited(ProviderError, Transient):
    """Raised when the vendor asks us to slow down (429)."""

    code = "rate_limited"


class ProviderUnavailable(ProviderError, Transient):
    """Raised for a 5xx, a transport failure or a malformed answer."""

    code = "provider_error"


class SubmitOutcomeUnknown(GenqueueError):
    """Raised when a submit may have been accepted but its answer was lost; resubmitting could pay twice."""

    code = "submit_outcome_unknown"


class JobTimeout(GenqueueError):
    """Raised when a job passes its deadline without a terminal status from the vendor."""

    code = "timeout"


class DownloadFailed(GenqueueError):
    """Raised when an output cannot be fetched from the vendor (expired link, a bound crossed, a refused address)."""

    code = "download_failed"


class DownloadUnavailable(DownloadFailed, Transient):
    """Raised for a download failure worth retrying (5xx, transport); `download_failed` once retries are spent."""


class StorageError(GenqueueError):
    """Raised when the bucket refuses a write or a read."""

    code = "storage_error"


class StorageUnavailable(StorageError, Transient):
    """Raised for a storage failure worth retrying; `storage_error` once retries are spent."""
