"""S3-compatible storage: outputs streamed from vendor URLs, uploaded inputs, presigned links.

Storage        the bucket (shared/storage/s3.py)
StorageInputs  an InputResolver over a Storage (shared/storage/inputs.py)
extension_for  the extension an output key gets (shared/storage/media.py)
"""

from __future__ import annotations

from shared.storage.client import make_s3_client
from shared.storage.inputs import StorageInputs
from shared.storage.media import content_type_for, extension_for
from shared.storage.s3 import MAX_INPUT_BYTES, Storage

__all__ = ["MAX_INPUT_BYTES", "Storage", "StorageInputs", "content_type_for", "extension_for", "make_s3_client"]
