"""Tracing through a real worker: a job whose polls meet two 503s and whose first webhook delivery is refused has
every step run, every retry and the vendor, Redis and S3 calls inside them in the one trace stored on the job.

The worker (its own, on its own Redis and sandbox, so the session's untraced worker takes none of its tasks)
prints its spans with the console exporter; the job is created here, its creation span kept in memory."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra.local.stack import FAST_SETTINGS, LocalStack, stack_env
from infra.local.webhook_receiver import WebhookReceiver
from producer.api import Producer
from shared import tracing
from shared.models import JobStatus
from shared.storage import Storage
from tests.integration.conftest import settings_for

pytestmark = pytest.mark.integration

PROMPT = "trace me through two 503s"


@pytest.fixture
def created_spans() -> Iterator[InMemorySpanExporter]:
    """This process's genqueue spans (the job's creation) in memory; the instrumentations stay off here."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    yield exporter
    tracing.use_provider(None)


def console_spans(log: Path) -> list[dict[str, Any]]:
    """Every span the console exporter printed into `log` (one indented JSON object each, among log lines)."""
    text = log.read_text(errors="replace")
    decoder = json.JSONDecoder()
    spans, start = [], text.find('{\n    "name": ')
    while start != -1:
        try:
            span, end = decoder.raw_decode(text, start)
        except ValueError:
            end = start + 1
        else:
            spans.append(span)
        start = text.find('{\n    "name": ', end)
    return spans


def trace_of(span: dict[str, Any]) -> str:
    return str(span["context"]["trace_id"]).removeprefix("0x")


def test_every_attempt_of_a_job_is_in_its_trace(
    tmp_path: Path, moto_endpoint: str, webhook_secret: str, receiver: WebhookReceiver, created_spans: Any
) -> None:
    stack = LocalStack(tmp_path)
    try:
        redis_url = stack.start_redis()
        sandbox_url = stack.start_sandbox(delay=0.3, output_bytes=4096)
        env = stack_env(redis_url, moto_endpoint, sandbox_url, webhook_secret, bucket=f"trace-{uuid.uuid4().hex[:8]}")
        env.update(FAST_SETTINGS)
        settings = settings_for(env)
        Storage(settings).ensure_bucket()
        stack.env = {
            **env,
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_SERVICE_NAME": "genqueue-worker-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "PYTHONUNBUFFERED": "1",  # one write per span, never split by a log line
        }
        worker = stack.start_workers(concurrency=4)

        httpx.post(
            f"{sandbox_url}/_control/faults", json={"target": "poll", "dialect": "veogen", "status": 503, "count": 2}
        )
        receiver.answer_next(500)
        producer = Producer(settings)
        job = producer.submit("veogen", "gpt-4o-image", PROMPT, webhook_url=receiver.url)
        assert producer.wait(job.id, timeout=30).status is JobStatus.SUCCEEDED
        receiver.wait_for(job.id, timeout=15)

        (created,) = created_spans.get_finished_spans()
        assert created.name == "genqueue.job.create" and created.context is not None
        trace_id = job.trace_context["traceparent"].split("-")[1]
        assert f"{created.context.trace_id:032x}" == trace_id

        def webhooks_done() -> bool:
            runs = [span for span in console_spans(worker.log_path) if span["name"] == "genqueue.deliver_webhook"]
            return len(runs) >= 2

        worker.wait_until(webhooks_done, timeout=15, what="the worker's spans")
        stack.stop()  # warm shutdown: the batch processor exports what is left
        spans = console_spans(worker.log_path)
    finally:
        stack.stop()

    steps = [span for span in spans if span["name"].startswith("genqueue.")]
    assert {trace_of(span) for span in steps} == {trace_id}
    names = [span["name"] for span in steps]
    assert names.count("genqueue.submit") == 1
    assert names.count("genqueue.poll") >= 3  # two 503s and the answer that it is done
    assert names.count("genqueue.finalize") == 1
    assert names.count("genqueue.deliver_webhook") == 2  # refused once, then delivered
    polls = [span["attributes"] for span in steps if span["name"] == "genqueue.poll"]
    assert {attributes["genqueue.job_id"] for attributes in polls} == {job.id}
    assert max(attributes["genqueue.attempt"] for attributes in polls) >= 2
    for span in steps:
        assert span["parent_id"] == f"0x{created.context.span_id:016x}"
        assert span["resource"]["attributes"]["service.name"] == "genqueue-worker-under-test"

    in_trace = [span for span in spans if trace_of(span) == trace_id]
    step_ids = {span["context"]["span_id"] for span in steps}
    calls = [span for span in in_trace if span["kind"] == "SpanKind.CLIENT" and span["parent_id"] in step_ids]
    sandbox_calls = [span for span in calls if sandbox_url.removeprefix("http://") in json.dumps(span["attributes"])]
    assert len(sandbox_calls) >= 5  # submit, three polls, the download at least
    assert any(span["attributes"].get("rpc.system") == "aws-api" for span in calls)  # the upload to S3
    assert any(span["attributes"].get("db.system") == "redis" for span in calls)
    assert all(
        "?" not in str(span["attributes"].get("url.full", span["attributes"].get("http.url", ""))) for span in calls
    )
    assert not [span for span in spans if PROMPT in json.dumps(span)]
