"""Figures counted when things happen, kept in one Redis hash, never recomputed from the jobs.

Every job-store write adds `of_write(before, after, now)` to COUNTERS_KEY in the same script as the write, so a
write counts once, exactly when it commits (a write that loses its compare-and-set counts nothing, and its retry
counts what it then writes). Counters only grow, so a job that expires after its retention takes nothing back;
the `jobs` gauge holds only the statuses a job leaves again (queued, submitted, running, finalizing).

Fields are `name|label|label…` (labels in the order of `FAMILIES[name]`); a histogram `h` has `h|labels…|bucket`
for each bucket index (non-cumulative), `h:sum|labels…` and `h:count|labels…`. `read(client)` turns the hash
`parse(hgetall_reply)` turns the hash back into `Sample`s for the exporter: one HGETALL, whose size grows with
providers, statuses and codes, not with jobs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

import redis

from shared.constants import KEY_PREFIX
from shared.models import TERMINAL_STATUSES, Job, JobStatus

#: hash: field (see the module docstring) -> a number
COUNTERS_KEY = KEY_PREFIX + "counters"

#: each family's labels, in field order; `kind` is counter, gauge or histogram
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "jobs_created": ("counter", ("provider",)),
    "jobs_ended": ("counter", ("provider", "status", "code")),
    "polls": ("counter", ("provider",)),
    "vendor_requests": ("counter", ("provider", "kind", "status")),
    "output_bytes": ("counter", ("provider",)),
    "webhook_attempts": ("counter", ("outcome",)),
    "cost_usd": ("counter", ("provider",)),
    "cost_credits": ("counter", ("provider",)),
    "jobs": ("gauge", ("provider", "status")),
    "job_status_seconds": ("histogram", ("provider", "status")),
    "ready_to_webhook_seconds": ("histogram", ("provider",)),
    "render_seconds": ("histogram", ("provider", "model")),
    "jobs_routed": ("counter", ("route", "provider")),
}
#: upper bounds of the histograms' buckets, in seconds (+Inf follows): from a quick vendor to a long render
BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


#: hash per minute (unix seconds // 60): each provider's vendor answers in it, `recent|{provider}|ok` (a 2xx) and
#: `recent|{provider}|error` (anything else, or no answer); kept RECENT_KEEP_SECONDS, read over RECENT_MINUTES
RECENT_KEY = KEY_PREFIX + "recent:{minute}"
RECENT_PREFIX = "recent|"
RECENT_KEEP_SECONDS = 3600
RECENT_MINUTES = 15


def recent_answer(provider: str, status: int | str | None) -> str:
    """The field counting one vendor answer of `provider` in its minute's RECENT_KEY hash."""
    ok = isinstance(status, int) and 200 <= status < 300
    return f"{RECENT_PREFIX}{provider.replace('|', '_')}|{'ok' if ok else 'error'}"


def recent_key(now: float) -> str:
    """The RECENT_KEY hash of the minute of unix time `now`."""
    return RECENT_KEY.format(minute=int(now // 60))


def split_recent(counts: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """`counts` as (those for COUNTERS_KEY, those for the minute's RECENT_KEY hash)."""
    lasting = {key: amount for key, amount in counts.items() if not key.startswith(RECENT_PREFIX)}
    recent = {key: amount for key, amount in counts.items() if key.startswith(RECENT_PREFIX)}
    return lasting, recent


@dataclass(frozen=True)
class RecentAnswers:
    """A provider's vendor answers over the last RECENT_MINUTES: 2xx and the rest."""

    ok: int = 0
    errors: int = 0

    @property
    def error_rate(self) -> float | None:
        """The share of answers that were errors; None with none at all."""
        total = self.ok + self.errors
        return None if total == 0 else self.errors / total


def recent_answers(client: redis.Redis, now: float, minutes: int = RECENT_MINUTES) -> dict[str, RecentAnswers]:
    """Each provider's vendor answers over the `minutes` up to unix time `now` (one round trip); a field that is
    not a number is skipped."""
    pipe = client.pipeline(transaction=False)
    for back in range(minutes):
        pipe.hgetall(recent_key(now - 60 * back))
    totals: dict[str, dict[str, float]] = {}
    for raw in pipe.execute():
        for key, value in raw.items():
            parts = (key.decode() if isinstance(key, bytes) else str(key)).split("|")
            try:
                amount = float(value)
            except ValueError:
                continue
            if len(parts) == 3 and parts[2] in ("ok", "error"):
                totals.setdefault(parts[1], {}).setdefault(parts[2], 0.0)
                totals[parts[1]][parts[2]] += amount
    return {
        provider: RecentAnswers(int(found.get("ok", 0)), int(found.get("error", 0)))
        for provider, found in totals.items()
    }


def field(name: str, *labels: str) -> str:
    """The hash field of family `name` with these label values ('|' in a value would split it, so it is '_')."""
    return "|".join((name, *(label.replace("|", "_") for label in labels)))


def observe(counts: dict[str, float], name: str, labels: tuple[str, ...], seconds: float) -> None:
    """Add one observation of `seconds` to histogram `name`."""
    seconds = max(seconds, 0.0)
    bucket = bisect.bisect_left(BUCKETS, seconds)
    add(counts, field(name, *labels, str(bucket)))
    add(counts, field(name + ":sum", *labels), seconds)
    add(counts, field(name + ":count", *labels))


def add(counts: dict[str, float], key: str, amount: float = 1.0) -> None:
    counts[key] = counts.get(key, 0.0) + amount


@dataclass(frozen=True)
class Before:
    """What the counters need of a job as it was read, taken before a change can touch it."""

    status: JobStatus
    entered_at: datetime | None
    poll_count: int
    webhook_attempts: int

    @classmethod
    def of(cls, job: Job) -> Before:
        attempts = len(job.webhook.attempts) if job.webhook is not None else 0
        return cls(job.status, job.entered_at.get(job.status.value), job.poll_count, attempts)


def of_write(before: Before | None, after: Job, now: datetime) -> dict[str, float]:
    """What writing `after` over the job as it was (`before`; None: it is being created) adds to the counters."""
    counts: dict[str, float] = {}
    provider = after.provider
    if before is None:
        add(counts, field("jobs_created", provider))
    if before is None or before.status is not after.status:
        if before is not None and before.status not in TERMINAL_STATUSES:
            add(counts, field("jobs", provider, before.status.value), -1)
            if before.entered_at is not None:
                seconds = (now - before.entered_at).total_seconds()
                observe(counts, "job_status_seconds", (provider, before.status.value), seconds)
        _count_route_and_render(counts, before, after, now)
        if after.status not in TERMINAL_STATUSES:
            add(counts, field("jobs", provider, after.status.value))
        elif before is None or before.status not in TERMINAL_STATUSES:
            _count_end(counts, after)
    polls = after.poll_count - (before.poll_count if before is not None else 0)
    if polls > 0:
        add(counts, field("polls", provider), polls)
    _count_webhook(counts, before, after)
    return counts


def _count_route_and_render(counts: dict[str, float], before: Before | None, after: Job, now: datetime) -> None:
    """A routed job the vendor took counts for its route and provider; a job whose vendor is done rendering
    observes its render time (accepted to ready) for its provider and model: what `fastest` routes by."""
    if after.status is JobStatus.SUBMITTED and after.route is not None:
        add(counts, field("jobs_routed", after.route.model, after.provider))
    accepted = after.entered_at.get(JobStatus.SUBMITTED.value)
    rendering = before is not None and before.status in (JobStatus.SUBMITTED, JobStatus.RUNNING)
    if after.status is JobStatus.FINALIZING and rendering and accepted is not None:
        observe(counts, "render_seconds", (after.provider, after.request.model), (now - accepted).total_seconds())


def render_fields(provider: str, model: str) -> tuple[str, str]:
    """The counter fields holding the sum and count of render times seen at `provider` for `model`."""
    return field("render_seconds:sum", provider, model), field("render_seconds:count", provider, model)


def _count_end(counts: dict[str, float], job: Job) -> None:
    provider = job.provider
    add(counts, field("jobs_ended", provider, job.status.value, job.error.code if job.error else "none"))
    if job.cost.usd:
        add(counts, field("cost_usd", provider), job.cost.usd)
    if job.cost.credits:
        add(counts, field("cost_credits", provider), job.cost.credits)
    size = sum(output.size for output in job.outputs)
    if size:
        add(counts, field("output_bytes", provider), size)


def _count_webhook(counts: dict[str, float], before: Before | None, after: Job) -> None:
    if after.webhook is None:
        return
    earlier = before.webhook_attempts if before is not None else 0
    new = after.webhook.attempts[earlier:]
    for attempt in new:
        delivered = attempt.status_code is not None and 200 <= attempt.status_code < 300
        add(counts, field("webhook_attempts", "delivered" if delivered else "failed"))
    if new and earlier == 0:
        ready = after.entered_at.get(JobStatus.FINALIZING.value) or after.entered_at.get(after.status.value)
        if ready is not None:
            observe(counts, "ready_to_webhook_seconds", (after.provider,), (new[0].at - ready).total_seconds())


def vendor_request(provider: str, kind: str, status: int | str | None) -> str:
    """The field counting a vendor request of `kind` (submit, poll, download) answered `status` (an HTTP status,
    a class such as 3xx, `error` for a download that failed; None: no answer)."""
    return field("vendor_requests", provider, kind, "transport" if status is None else str(status))


def count(client: redis.Redis, counts: Mapping[str, float], now: float) -> None:
    """Add `counts` to the counters (outside a job write: vendor requests), those of recent answers to the minute
    of unix time `now`, in one round trip."""
    if not counts:
        return
    lasting, recent = split_recent(counts)
    pipe = client.pipeline(transaction=False)
    for key, amount in lasting.items():
        pipe.hincrbyfloat(COUNTERS_KEY, key, amount)
    for key, amount in recent.items():
        pipe.hincrbyfloat(recent_key(now), key, amount)
    if recent:
        pipe.expire(recent_key(now), RECENT_KEEP_SECONDS)
    pipe.execute()


@dataclass(frozen=True)
class Sample:
    """One series of a family: its labels and value; for a histogram, cumulative bucket counts, sum and count."""

    family: str
    labels: tuple[str, ...]
    value: float = 0.0
    buckets: tuple[float, ...] = ()
    total: float = 0.0


def parse(raw: Mapping[bytes | str, bytes | str]) -> Iterator[Sample]:
    """Every series in the counters hash as HGETALL gave it (a field it cannot read is skipped), histograms with
    cumulative buckets."""
    histograms: dict[tuple[str, tuple[str, ...]], list[float]] = {}
    sums: dict[tuple[str, tuple[str, ...]], tuple[float, float]] = {}
    for key_raw, value_raw in raw.items():
        key = key_raw.decode() if isinstance(key_raw, bytes) else str(key_raw)
        try:
            value = float(value_raw)
        except ValueError:
            continue
        name, *labels = key.split("|")
        base, _, part = name.partition(":")
        kind, names = FAMILIES.get(base, ("", ()))
        if kind == "histogram":
            if part and len(labels) == len(names):
                total, number = sums.get((base, tuple(labels)), (0.0, 0.0))
                sums[(base, tuple(labels))] = (value, number) if part == "sum" else (total, value)
            elif not part and len(labels) == len(names) + 1 and labels[-1].isdigit():
                buckets = histograms.setdefault((base, tuple(labels[:-1])), [0.0] * (len(BUCKETS) + 1))
                index = int(labels[-1])
                if index < len(buckets):
                    buckets[index] += value
        elif kind and len(labels) == len(names):
            yield Sample(base, tuple(labels), max(value, 0.0) if kind == "gauge" else value)
    for series, buckets in sorted(histograms.items()):
        cumulative: list[float] = []
        running = 0.0
        for bucket in buckets:
            running += bucket
            cumulative.append(running)
        total, number = sums.get(series, (0.0, running))
        yield Sample(series[0], series[1], value=number, buckets=tuple(cumulative), total=total)
