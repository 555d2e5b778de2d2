"""The claim primitive (shared/claims.py) under idempotency keys and batch lines: claim, take over, abandon, and
the atomic check that stops a claimant that was taken over from storing a second record."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import fakeredis
import pytest

import shared.claims
from shared.batch import BatchStore
from shared.claims import Claims, ClaimTakenOver, Slot
from shared.errors import InvalidRequest
from shared.models import GenerationRequest, Job, utcnow
from shared.store import JobStore, idempotency_slot


@pytest.fixture(autouse=True)
def short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared.claims, "TAKE_OVER_AFTER_SECONDS", 0.2)


@pytest.fixture
def store() -> JobStore:
    return JobStore(fakeredis.FakeRedis())


def slots(store: JobStore) -> list[Slot]:
    """A claim in a key of its own (an idempotency key) and one in a hash field (a batch line)."""
    return [idempotency_slot("k"), BatchStore(store.redis).line_slot("b", 7)]


def job(job_id: str, **fields: object) -> Job:
    return Job(
        id=job_id,
        provider="sandbox",
        request=GenerationRequest(model="sandbox-image"),
        deadline_at=utcnow() + timedelta(hours=1),
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("kind", [0, 1], ids=["key", "hash-field"])
def test_a_claim_is_held_once_refused_for_another_request_and_abandoned_by_its_owner_only(
    store: JobStore, kind: int
) -> None:
    slot, claims = slots(store)[kind], store.claims
    assert claims.claim(slot, "job_a", "fp1") is None
    assert claims.claim(slot, "job_b", "fp1") == "job_a"
    with pytest.raises(InvalidRequest, match="different request"):
        claims.claim(slot, "job_c", "fp2")
    assert not claims.abandon(slot, "job_b")  # not its claim: kept
    assert not claims.abandon(slot, "job")  # a prefix of the owner is not the owner
    assert claims.claim(slot, "job_b", "fp1") == "job_a"
    assert claims.abandon(slot, "job_a")
    assert claims.claim(slot, "job_d", "fp2") is None


def test_the_stored_values_are_those_earlier_versions_wrote_and_read(store: JobStore) -> None:
    key_slot, field_slot = slots(store)
    store.claims.claim(key_slot, "job_a", "fp")
    store.claims.claim(field_slot, "job_b", "fp")
    assert store.redis.get(key_slot.key) == b"job_a fp"
    assert 0 < store.redis.ttl(key_slot.key) <= 86400
    assert store.redis.hget("genqueue:batch:b:lines", "7") == b"job_b fp"
    store.redis.set(key_slot.key, "job_old fp", ex=100)  # a claim an earlier version made
    assert store.claims.claim(key_slot, "job_new", "fp") == "job_old"


@pytest.mark.parametrize("kind", [0, 1], ids=["key", "hash-field"])
def test_only_one_of_two_racing_takers_takes_a_stalled_claim_over(store: JobStore, kind: int) -> None:
    slot, claims = slots(store)[kind], store.claims
    claims.claim(slot, "job_stalled", "fp")
    assert claims.take_over(slot, "job_stalled", "job_first", "fp")
    assert not claims.take_over(slot, "job_stalled", "job_second", "fp")  # it names job_first by now
    assert claims.claim(slot, "job_third", "fp") == "job_first"


def test_a_take_over_keeps_the_keys_expiry(store: JobStore) -> None:
    slot = idempotency_slot("k")
    store.claims.claim(slot, "job_stalled", "fp")
    store.redis.expire(slot.key, 50)
    assert store.claims.take_over(slot, "job_stalled", "job_new", "fp")
    assert 0 < store.redis.ttl(slot.key) <= 50


def test_claim_or_find_waits_for_the_record_then_takes_a_dead_claim_over(store: JobStore) -> None:
    slot = idempotency_slot("k")
    store.claims.claim(slot, "job_slow", "fp")
    threading.Timer(0.05, lambda: store.create(job("job_slow"))).start()
    found = store.claims.claim_or_find(slot, "job_late", "fp", store.get)
    assert found is not None and found.id == "job_slow"  # it appeared while we waited

    other = BatchStore(store.redis).line_slot("b", 1)
    store.claims.claim(other, "job_dead", "fp")
    started = time.monotonic()
    assert store.claims.claim_or_find(other, "job_new", "fp", store.get) is None  # taken over
    assert time.monotonic() - started >= 0.2
    assert store.claims.claim(other, "job_x", "fp") == "job_new"


@pytest.mark.parametrize("kind", [0, 1], ids=["key", "hash-field"])
def test_a_claimant_taken_over_while_it_stalled_gets_the_takers_record_and_stores_none(
    store: JobStore, kind: int
) -> None:
    slot, claims = slots(store)[kind], store.claims

    def create_later(job_id: str) -> Job:
        made = job(job_id, idempotency_key="k" if kind == 0 else None)
        store.create(made, slot)
        return made

    def stalled_create() -> Job:
        # while this claimant stalls, another waits out the claim, takes it over and stores its job
        taker, created = claims.claim_and_create(slot, "job_taker", "fp", store.get, lambda: create_later("job_taker"))
        assert created and taker.id == "job_taker"
        return create_later("job_stalled")  # then this one wakes up: refused

    record, created = claims.claim_and_create(slot, "job_stalled", "fp", store.get, stalled_create)
    assert not created and record.id == "job_taker"
    assert store.get("job_stalled") is None
    with pytest.raises(ClaimTakenOver):
        create_later("job_stalled")


def test_a_failed_create_abandons_the_claim(store: JobStore) -> None:
    slot = idempotency_slot("k")

    def broken() -> Job:
        raise RuntimeError("redis went away")

    with pytest.raises(RuntimeError):
        store.claims.claim_and_create(slot, "job_a", "fp", store.get, broken)
    assert store.redis.get(slot.key) is None


def test_a_job_with_an_idempotency_key_is_checked_against_its_claim_by_default(store: JobStore) -> None:
    store.claims.claim(idempotency_slot("k"), "job_other", "fp")
    with pytest.raises(ClaimTakenOver):
        store.create(job("job_mine", idempotency_key="k"))
    store.create(job("job_other", idempotency_key="k"))
    assert store.get("job_other") is not None


def test_claims_of_a_hash_are_listed_by_owner() -> None:
    claims = Claims(fakeredis.FakeRedis())
    for line in (2, 10):
        claims.claim(Slot("lines", field=str(line)), f"job_{line}", "fp with spaces")
    assert claims.owners("lines") == {"2": "job_2", "10": "job_10"}
