"""API keys (shared/keys.py) on fakeredis, and `genqueue keys` through typer's runner."""

from __future__ import annotations

import json
from datetime import timedelta

import fakeredis
import pytest
from typer.testing import CliRunner

from producer import cli_keys
from producer.cli import app
from shared.constants import KEY_HASHES_KEY, KEYS_KEY
from shared.errors import InvalidRequest
from shared.keys import KeyStore, key_sha256
from shared.models import Budget, utcnow


@pytest.fixture
def client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def keys(client: fakeredis.FakeRedis) -> KeyStore:
    return KeyStore(client)


def test_a_key_is_stored_only_as_its_hash_and_authenticates(client: fakeredis.FakeRedis, keys: KeyStore) -> None:
    created = keys.create("acme", rate_per_minute=60, budget=Budget(currency="usd", amount=25))
    assert created.key.startswith("gq_") and len(created.key) == 46
    assert created.record.webhook_secret.startswith("whsec_")
    stored = b"".join(v for v in client.hgetall(KEYS_KEY).values()) + b"".join(client.hgetall(KEY_HASHES_KEY))
    assert created.key.encode() not in stored and key_sha256(created.key).encode() in stored
    found = keys.authenticate(created.key)
    assert found is not None and found.name == "acme" and found.rate_per_minute == 60
    assert found.budget == Budget(currency="usd", amount=25)


@pytest.mark.parametrize("wrong", ["", "gq_", "gq_nothing-like-it", "Bearer gq_x", "sk-123"])
def test_a_wrong_key_is_refused(keys: KeyStore, wrong: str) -> None:
    keys.create("acme")
    assert keys.authenticate(wrong) is None


def test_a_revoked_key_is_refused_at_once(keys: KeyStore, client: fakeredis.FakeRedis) -> None:
    created = keys.create("acme")
    other = KeyStore(client)  # another API process: nothing is cached
    assert other.authenticate(created.key) is not None
    revoked = keys.revoke("acme")
    assert revoked.revoked_at is not None
    assert other.authenticate(created.key) is None and keys.authenticate(created.key) is None
    with pytest.raises(InvalidRequest, match="revoked already"):
        keys.revoke("acme")
    with pytest.raises(InvalidRequest, match="no key named 'nobody'"):
        keys.revoke("nobody")


@pytest.mark.parametrize("name", ["", "Acme", "-acme", "a b", "a" * 64, "acme/1"])
def test_a_malformed_name_is_refused(keys: KeyStore, name: str) -> None:
    with pytest.raises(InvalidRequest, match="key name"):
        keys.create(name)


def test_a_name_is_never_reused(keys: KeyStore) -> None:
    keys.create("acme")
    keys.revoke("acme")
    with pytest.raises(InvalidRequest, match="exists already"):
        keys.create("acme")


def test_an_unreadable_record_refuses_its_key_and_is_listed_with_the_reason(
    keys: KeyStore, client: fakeredis.FakeRedis
) -> None:
    broken = keys.create("broken")
    keys.create("fine")
    client.hset(KEYS_KEY, "broken", "{not json")
    assert keys.authenticate(broken.key) is None
    rows = {row.name: row for row in keys.listing()}
    assert rows["fine"].record is not None and rows["fine"].problem is None
    assert rows["broken"].record is None and rows["broken"].problem is not None
    assert rows["broken"].problem.startswith("unreadable")


def test_last_used_is_written_at_most_once_a_minute(keys: KeyStore) -> None:
    created = keys.create("acme")
    start = utcnow()
    keys.authenticate(created.key, start)
    keys.authenticate(created.key, start + timedelta(seconds=30))
    [row] = keys.listing()
    assert row.last_used_at == start
    keys.authenticate(created.key, start + timedelta(seconds=61))
    [row] = keys.listing()
    assert row.last_used_at == start + timedelta(seconds=61)


@pytest.fixture
def runner_keys(monkeypatch: pytest.MonkeyPatch, keys: KeyStore) -> KeyStore:
    monkeypatch.setattr(cli_keys, "_store", lambda: keys)
    return keys


def test_keys_create_prints_the_key_once_and_list_never_does(runner_keys: KeyStore) -> None:
    made = CliRunner().invoke(app, ["keys", "create", "acme", "--budget-usd", "10", "--json"])
    assert made.exit_code == 0, made.output
    shown = json.loads(made.stdout)
    assert shown["name"] == "acme" and shown["key"].startswith("gq_") and shown["webhook_secret"].startswith("whsec_")
    listed = CliRunner().invoke(app, ["keys", "list", "--json"])
    assert listed.exit_code == 0
    assert shown["key"] not in listed.stdout and shown["webhook_secret"] not in listed.stdout
    [row] = json.loads(listed.stdout)
    assert row["name"] == "acme" and row["budget"] == {"currency": "usd", "amount": 10.0} and row["revoked_at"] is None
    text = CliRunner().invoke(app, ["keys", "list"])
    assert text.stdout.splitlines()[1].split()[0] == "acme" and text.stdout.rstrip().endswith("live")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["keys", "create", "acme", "--budget-usd", "1", "--budget-credits", "1"], "give one budget"),
        (["keys", "create", "acme", "--budget-usd", "0"], "--budget-usd must be more than 0"),
        (["keys", "create", "Bad Name"], "key name 'Bad Name'"),
        (["keys", "revoke", "nobody"], "no key named 'nobody'"),
    ],
)
def test_keys_refusals_are_one_line_with_exit_2(runner_keys: KeyStore, args: list[str], reason: str) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"genqueue: error: {reason}") and len(result.stderr.splitlines()) == 1
    assert runner_keys.listing() == []


def test_keys_revoke_through_the_command_line(runner_keys: KeyStore) -> None:
    created = runner_keys.create("acme")
    result = CliRunner().invoke(app, ["keys", "revoke", "acme"])
    assert result.exit_code == 0 and result.stdout.startswith("key acme revoked at ")
    assert runner_keys.authenticate(created.key) is None


def test_a_keys_request_rate_is_a_token_bucket_with_retry_after(keys: KeyStore) -> None:
    record = keys.create("acme", rate_per_minute=3).record
    now = 1_800_000_000.0
    assert [keys.admit_request(record, now) for _ in range(3)] == [0.0, 0.0, 0.0]  # a minute's worth at once
    assert keys.admit_request(record, now) == pytest.approx(20.0)  # one request every 60/3 s after that
    assert keys.admit_request(record, now + 20.0) == 0.0
    assert keys.admit_request(record, now + 20.0) == pytest.approx(20.0)
    other = keys.create("globex", rate_per_minute=3).record
    assert keys.admit_request(other, now + 20.0) == 0.0  # each key has its own bucket
    unlimited = keys.create("ops").record
    assert all(keys.admit_request(unlimited, now) == 0.0 for _ in range(100))
