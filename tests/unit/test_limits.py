"""Bounded input: every bound of shared/limits.py refused with one line and nothing stored, through the producer,
the command line and batch files."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from typer.testing import CliRunner

from producer.api import Producer
from producer.batch import BatchOptions, BatchProducer
from shared import limits
from shared.errors import InvalidRequest
from shared.models import GenerationRequest, Job, utcnow
from shared.settings import Settings
from shared.store import JobStore
from shared.webhooks.signing import generate_secret


def nested(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    current = root
    for _ in range(depth):
        current["a"] = {}
        current = current["a"]
    return root


class Published:
    def __init__(self) -> None:
        self.tasks: list[str] = []

    def send_task(self, name: str, **kwargs: Any) -> None:
        self.tasks.append(name)


@pytest.fixture
def redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def producer(redis: fakeredis.FakeRedis) -> Producer:
    settings = Settings(webhook_secret=generate_secret())
    return Producer(settings, store=JobStore(redis), celery=Published())  # type: ignore[arg-type]


def test_shape_bounds() -> None:
    limits.check_shape(nested(limits.MAX_DEPTH), "extra")
    with pytest.raises(ValueError, match=f"extra nests deeper than {limits.MAX_DEPTH} levels"):
        limits.check_shape(nested(limits.MAX_DEPTH + 1), "extra")
    with pytest.raises(ValueError, match="nests deeper"):
        limits.check_shape(nested(100_000), "extra")  # no recursion: refused, not a RecursionError
    limits.check_shape({"k": list(range(limits.MAX_NODES - 2))}, "options")
    with pytest.raises(ValueError, match=f"options holds more than {limits.MAX_NODES} values"):
        limits.check_shape({"k": list(range(limits.MAX_NODES))}, "options")
    limits.check_shape({"k": [], "e": {}}, "x", max_depth=1)  # empty containers nest nothing


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ({"line": 3}, {"line": "3"}),
        ({"ok": True, "no": False}, {"ok": "true", "no": "false"}),
        ({"ratio": 1.5, "big": 1e20}, {"ratio": "1.5", "big": "1e+20"}),
        ({" customer ": "acme"}, {"customer": "acme"}),
        (None, {}),
    ],
)
def test_metadata_scalars_are_stored_as_strings(raw: dict[str, Any] | None, stored: dict[str, str]) -> None:
    assert limits.normalize_metadata(raw) == stored


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({f"k{i}": "v" for i in range(33)}, "metadata has 33 keys; at most 32"),
        ({"k" * 65: "v"}, "is longer than 64 characters"),
        ({"k": "v" * 1025}, "metadata 'k' is longer than 1024 characters"),
        ({"k": None}, "metadata 'k': values must be strings, numbers or booleans, not null"),
        ({"k": {"nested": 1}}, "not dict"),
        ({"k": [1]}, "not list"),
        ({"k": float("nan")}, "is not a finite number"),
        ({"": "v"}, "metadata keys must not be empty"),
        ({3: "v"}, "metadata keys must be strings, not int"),
    ],
)
def test_metadata_bounds(raw: dict[Any, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        limits.normalize_metadata(raw)


def test_data_uri_sizes() -> None:
    payload = base64.b64encode(b"x" * 1000).decode()
    with pytest.raises(ValueError, match="does not decode"):
        limits.check_inline_inputs(["data:image/png;base64,@@@"], [])
    with pytest.raises(ValueError, match="comma"):
        limits.check_inline_inputs(["data:image/png;base64"], [])
    limits.check_inline_inputs([f"data:image/png;base64,{payload}"], [limits.MAX_INLINE_INPUT_BYTES - 1000])
    limits.check_inline_inputs([], [limits.MAX_INLINE_INPUT_BYTES])
    with pytest.raises(ValueError, match="at most 20 MiB per request"):
        limits.check_inline_inputs([f"data:image/png;base64,{payload}"], [limits.MAX_INLINE_INPUT_BYTES])


@pytest.mark.parametrize(
    ("options", "metadata", "reason"),
    [
        ({"extra": nested(200)}, {}, "options nests deeper than 8 levels"),
        ({"extra": {"k": list(range(5000))}}, {}, "options holds more than 1000 values"),
        ({}, {"blob": "x" * (20 * 1024 * 1024)}, "metadata 'blob' is longer than 1024 characters"),
        ({}, {f"k{i}": "v" for i in range(40)}, "metadata has 40 keys"),
    ],
)
def test_producer_refuses_unbounded_input_and_stores_nothing(
    producer: Producer, redis: fakeredis.FakeRedis, options: dict[str, Any], metadata: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        producer.submit("sandbox", "sandbox-video", "hi", options, metadata=metadata)
    assert redis.keys() == []


def test_producer_refuses_local_files_over_the_inline_budget(
    producer: Producer, redis: fakeredis.FakeRedis, tmp_path: Path
) -> None:
    paths = []
    for index in range(3):
        path = tmp_path / f"in{index}.png"
        with path.open("wb") as handle:
            handle.truncate(8 * 1024 * 1024)  # sparse: 8 MiB each, 24 MiB together
        paths.append(str(path))
    with pytest.raises(InvalidRequest, match=r"add up to 24\.0 MiB; at most 20 MiB per request"):
        producer.submit("sandbox", "sandbox-image", "hi", images=paths)
    assert redis.keys() == []


def test_producer_stores_scalar_metadata_as_strings(producer: Producer) -> None:
    job = producer.submit("sandbox", "sandbox-video", "hi", metadata={"line": 3, "vip": True})
    assert job.metadata == {"line": "3", "vip": "true"}
    stored = producer.store.get(job.id)
    assert stored is not None and stored.metadata == {"line": "3", "vip": "true"}


def test_webhook_refused_without_a_secret(redis: fakeredis.FakeRedis) -> None:
    settings = Settings(webhook_secret=None, allow_private_urls=True)
    unsigned = Producer(settings, store=JobStore(redis), celery=Published())  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="a webhook needs GENQUEUE_WEBHOOK_SECRET"):
        unsigned.submit("sandbox", "sandbox-video", "hi", webhook_url="https://hooks.example.com/h")
    assert redis.keys() == []
    allowed = Settings(webhook_secret=None, allow_unsigned_webhooks=True, allow_private_urls=True)
    job = Producer(allowed, store=JobStore(redis), celery=Published()).submit(  # type: ignore[arg-type]
        "sandbox", "sandbox-video", "hi", webhook_url="https://hooks.example.com/h"
    )
    assert job.webhook_url == "https://hooks.example.com/h"


def test_store_refuses_a_job_it_could_not_read_back(redis: fakeredis.FakeRedis) -> None:
    """A job built past the producer's checks (here, straight from the model) is still never written."""
    store = JobStore(redis)
    request = GenerationRequest(model="sandbox-video", extra=nested(250))
    job = Job(id="deep", provider="sandbox", request=request, deadline_at=utcnow())
    with pytest.raises(InvalidRequest, match="job deep cannot be stored: it would not read back"):
        store.create(job)
    assert redis.keys() == []


def test_batch_file_takes_scalar_metadata_and_refuses_deep_options(redis: fakeredis.FakeRedis, tmp_path: Path) -> None:
    settings = Settings(webhook_secret=generate_secret())
    producer = Producer(settings, store=JobStore(redis), celery=Published())  # type: ignore[arg-type]
    lines = [
        {"provider": "sandbox", "model": "sandbox-video", "prompt": "a", "metadata": {"line": 3, "vip": False}},
        {"provider": "sandbox", "model": "sandbox-video", "prompt": "b", "options": {"extra": nested(50)}},
        {"provider": "sandbox", "model": "sandbox-video", "prompt": "c", "metadata": {"k": None}},
    ]
    path = tmp_path / "night.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    plan = BatchProducer(producer).plan(path, BatchOptions(name="night"))
    assert [job.metadata for job in plan.jobs] == [{"line": "3", "vip": "false"}]
    assert plan.refused == [
        (2, "options nests deeper than 8 levels"),
        (3, "metadata 'k': values must be strings, numbers or booleans, not null"),
    ]


def test_cli_metadata_is_stored_like_the_python_api(monkeypatch: pytest.MonkeyPatch, producer: Producer) -> None:
    from producer import cli, cli_common

    monkeypatch.setattr(cli, "producer", lambda: producer)
    monkeypatch.setattr(cli_common, "producer", lambda: producer)
    result = CliRunner().invoke(
        cli.app,
        ["submit", "--provider", "sandbox", "--model", "sandbox-video", "--prompt", "hi", "--metadata", "line=3"],
    )
    assert result.exit_code == 0, result.output
    job = producer.store.get(result.output.strip())
    assert job is not None and job.metadata == {"line": "3"}
    result = CliRunner().invoke(
        cli.app,
        [
            "submit",
            "--provider",
            "sandbox",
            "--model",
            "sandbox-video",
            "--prompt",
            "hi",
            "--metadata",
            "k=" + "v" * 2000,
        ],
    )
    assert result.exit_code == 2
    assert "metadata 'k' is longer than 1024 characters" in result.output


def test_a_batch_with_webhooks_is_refused_without_a_secret(redis: fakeredis.FakeRedis, tmp_path: Path) -> None:
    settings = Settings(webhook_secret=None, allow_private_urls=True)
    batches = BatchProducer(Producer(settings, store=JobStore(redis), celery=Published()))  # type: ignore[arg-type]
    path = tmp_path / "night.jsonl"
    line = {"provider": "sandbox", "model": "sandbox-video", "prompt": "a", "webhook": "https://hooks.example.com/h"}
    path.write_text(json.dumps(line) + "\n")
    plan = batches.plan(path, BatchOptions(name="night"))
    assert [reason for _, reason in plan.refused] == [
        "a webhook needs GENQUEUE_WEBHOOK_SECRET (events are never sent unsigned; "
        "GENQUEUE_ALLOW_UNSIGNED_WEBHOOKS=true allows it for development)"
    ]
    with pytest.raises(InvalidRequest, match="a webhook needs GENQUEUE_WEBHOOK_SECRET"):
        batches.plan(path, BatchOptions(name="night", webhook_url="https://hooks.example.com/batch"))
    assert redis.keys() == []


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_a_number_that_is_not_finite_is_refused_where_json_has_no_spelling_for_it(number: float) -> None:
    with pytest.raises(ValueError, match="is not a finite number"):
        limits.check_shape({"extra": {"weight": [1, number]}}, "options")
