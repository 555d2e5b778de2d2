"""StorageInputs: the InputResolver (shared/providers/base.py) for requests whose images may be uploaded files."""

from __future__ import annotations

from shared.storage.s3 import Storage

S3_SCHEME = "s3://"


class StorageInputs:
    """Resolves `s3://` references through a Storage; https URLs and `data:` URIs pass through unchanged."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def as_url(self, ref: str) -> str:
        """A presigned URL for an uploaded input; anything else as given."""
        return self.storage.presign_ref(ref) if ref.startswith(S3_SCHEME) else ref

    def as_data_uri(self, ref: str) -> str:
        """A base64 data URI for an uploaded input; URLs and data URIs as given."""
        return self.storage.data_uri_for_ref(ref) if ref.startswith(S3_SCHEME) else ref
