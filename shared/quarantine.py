"""Records that cannot be read, set aside so that no loop stops at them.

A job or batch whose stored JSON no longer parses (written by an older version, corrupted by hand, too deep for
the parser) would otherwise raise in every loop that meets it first: the sweeper, the dispatcher, reports,
metrics. The store that fails to read one calls `Quarantine.add`: the record is listed here with the reason, taken
out of the due indexes so the sweeper stops meeting it, and logged with its id; the record itself is left as it is,
for an operator to inspect (`genqueue quarantine list`). Adding is idempotent: the first reason is kept.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

import redis
from pydantic import BaseModel, ValidationError

from shared.constants import BATCH_DUE_KEY, DUE_KEY, QUARANTINE_KEY, QUEUE_DUE_KEYS
from shared.models import utcnow

log = logging.getLogger("genqueue.quarantine")

RecordKind = Literal["job", "batch"]
#: the due indexes a record of each kind is scheduled in
_DUE_INDEXES: dict[RecordKind, tuple[str, ...]] = {"job": (DUE_KEY, *QUEUE_DUE_KEYS), "batch": (BATCH_DUE_KEY,)}
#: a reason is cut to this length: it names the problem, the record itself holds the rest
MAX_REASON_CHARS = 300


class QuarantinedRecord(BaseModel):
    """One record set aside: what it is, why it could not be read, and since when."""

    kind: RecordKind
    id: str
    reason: str
    at: datetime


class UnreadableRecord(RuntimeError):
    """Raised by a store for a record it cannot read; the record has been quarantined already."""

    def __init__(self, kind: RecordKind, record_id: str, reason: str) -> None:
        super().__init__(f"{kind} {record_id} is unreadable and was set aside: {reason}")
        self.kind = kind
        self.record_id = record_id
        self.reason = reason


class Quarantine:
    """The set of quarantined records, in one Redis hash."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def add(self, kind: RecordKind, record_id: str, reason: str) -> UnreadableRecord:
        """Set record `record_id` aside (once) and take it off the due indexes; the error for the caller to raise."""
        reason = " ".join(reason.split())[:MAX_REASON_CHARS]
        entry = QuarantinedRecord(kind=kind, id=record_id, reason=reason, at=utcnow())
        pipe = self.redis.pipeline()
        pipe.hsetnx(QUARANTINE_KEY, f"{kind}:{record_id}", entry.model_dump_json())
        for index in _DUE_INDEXES[kind]:
            pipe.zrem(index, record_id)
        first, *_ = pipe.execute()
        if first:
            log.error("quarantined %s %s: %s", kind, record_id, reason)
        return UnreadableRecord(kind, record_id, reason)

    def contains(self, kind: RecordKind, record_id: str) -> bool:
        return bool(self.redis.hexists(QUARANTINE_KEY, f"{kind}:{record_id}"))

    def records(self) -> list[QuarantinedRecord]:
        """Every quarantined record, oldest first; an entry that is itself unreadable is shown as such."""
        entries = []
        for field, raw in self.redis.hgetall(QUARANTINE_KEY).items():
            try:
                entries.append(QuarantinedRecord.model_validate_json(raw))
            except ValueError:
                kind, _, record_id = _text(field).partition(":")
                entries.append(
                    QuarantinedRecord(
                        kind="batch" if kind == "batch" else "job",
                        id=record_id,
                        reason=f"(unreadable quarantine entry: {_text(raw)[:80]!r})",
                        at=datetime.fromtimestamp(0, tz=UTC),
                    )
                )
        return sorted(entries, key=lambda entry: entry.at)

    def count(self) -> int:
        return int(self.redis.hlen(QUARANTINE_KEY))

    def remove(self, kind: RecordKind, record_id: str) -> bool:
        """Forget a quarantined record (an operator repaired or deleted it); False when it was not listed."""
        return bool(self.redis.hdel(QUARANTINE_KEY, f"{kind}:{record_id}"))


def describe(exc: Exception) -> str:
    """A reading error as one line: the first problem pydantic found, with where; else the exception's text."""
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}" if where else error["msg"]
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
