"""Batches: many jobs from one file, held in Redis and released by the dispatcher at the vendors' pace."""

from shared.batch.models import Batch, BatchLine
from shared.batch.store import BatchStore

__all__ = ["Batch", "BatchLine", "BatchStore"]
