"""The error hierarchy of genqueue; each concrete class maps onto one error code of INTERFACE.md.

GenqueueError
├── InvalidRequest               invalid_request   (refused by us before sending, or by the provider)
├── ProviderError                                   (an answer, or no answer, from a vendor)
│   ├── PermanentProviderError                      (fail the job now)
│   │   ├── AuthFailed           auth_failed
│   │   ├── InsufficientCredits  insufficient_credits
│   │   ├── ProviderRejected     invalid_request
│   │   ├── GenerationFailed     generation_failed
│   │   └── ProviderRedirected   provider_error    (a vendor API call answered 3xx; never followed)
│   └── TransientProviderError                      (retry with backoff; the code applies once retries are spent)
│       ├── RateLimited          rate_limited
│       └── ProviderUnavailable  provider_error
├── SubmitOutcomeUnknown         submit_outcome_unknown
├── JobTimeout                   timeout
├── DownloadFailed               download_failed
├── StorageError                 storage_error
└── JobCanceled                  canceled
"""

from __future__ import annotations

from typing import ClassVar, Self


class GenqueueError(Exception):
    """Root of every error genqueue raises on purpose; `code` is the INTERFACE.md error code."""

    code: ClassVar[str] = "provider_error"

    def __init__(self, message: str) -> None:
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


class InvalidRequest(GenqueueError):
    """Raised when a request is refused before anything is sent (bad field, unknown model, option out of range)."""

    code = "invalid_request"


class ProviderError(GenqueueError):
    """Raised when a vendor answers with an error, or does not answer usably."""

    retryable: ClassVar[bool] = False


class PermanentProviderError(ProviderError):
    """Raised for a vendor answer that retrying cannot change."""


class AuthFailed(PermanentProviderError):
    """Raised when the vendor refuses our key."""

    code = "auth_failed"


class InsufficientCredits(PermanentProviderError):
    """Raised when the vendor's balance does not cover the job."""

    code = "insufficient_credits"


class ProviderRejected(PermanentProviderError):
    """Raised when the vendor refuses the request itself (validation, unknown model)."""

    code = "invalid_request"


class GenerationFailed(PermanentProviderError):
    """Raised when the vendor reports that the generation failed; the message carries its reason."""

    code = "generation_failed"


class ProviderRedirected(PermanentProviderError):
    """Raised when a vendor API call (submit, poll) answers with a redirect, which is never followed."""

    code = "provider_error"


class TransientProviderError(ProviderError):
    """Raised for a vendor failure that may pass: retry after `retry_after` seconds, or with backoff when None."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientProviderError):
    """Raised when the vendor asks us to slow down (429)."""

    code = "rate_limited"


class ProviderUnavailable(TransientProviderError):
    """Raised for a 5xx, a transport failure or a malformed answer."""

    code = "provider_error"


class SubmitOutcomeUnknown(GenqueueError):
    """Raised when a submit may have been accepted but its answer was lost; resubmitting could pay twice."""

    code = "submit_outcome_unknown"


class JobTimeout(GenqueueError):
    """Raised when a job passes its deadline without a terminal status from the vendor."""

    code = "timeout"


class DownloadFailed(GenqueueError):
    """Raised when an output cannot be fetched from the vendor (expired link, repeated transport errors)."""

    code = "download_failed"


class StorageError(GenqueueError):
    """Raised when the bucket refuses or fails a write after retries."""

    code = "storage_error"


class JobCanceled(GenqueueError):
    """Raised when the caller canceled the job."""

    code = "canceled"


class TransientDownloadError(GenqueueError):
    """Raised for a download failure worth retrying (5xx, transport); becomes DownloadFailed when retries are spent."""

    code = "download_failed"


class TransientStorageError(GenqueueError):
    """Raised for a storage failure worth retrying; becomes StorageError when retries are spent."""

    code = "storage_error"
