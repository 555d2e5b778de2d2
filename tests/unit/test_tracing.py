"""Tracing (shared/tracing.py): one trace per job, from its creation through every step run, each run started
from the context stored on the job alone, in an SDK provider with an in-memory exporter."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import fakeredis
import pytest
from celery import Celery
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producer.api import Producer
from shared import lifecycle, tracing
from shared.models import Cost, GenerationRequest, Job, utcnow
from shared.settings import Settings
from shared.store import JobStore

PROMPT = "a lighthouse at dusk, the secret prompt"


#: the provider of the test in progress, for the spans the tests make themselves (the instrumentations' stand-ins)
PROVIDER = TracerProvider()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    global PROVIDER
    exporter = InMemorySpanExporter()
    PROVIDER = TracerProvider()
    PROVIDER.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(PROVIDER)
    yield exporter
    tracing.use_provider(None)


def make_job(trace_context: dict[str, str], batch_id: str | None = None) -> Job:
    now = utcnow()
    return Job(
        id="job_1",
        provider="sandbox",
        request=GenerationRequest(model="sandbox-video", prompt=PROMPT),
        deadline_at=now + timedelta(hours=1),
        step=lifecycle.new_step("submit", now),
        batch_id=batch_id,
        trace_context=trace_context,
    )


def in_another_process(run: Callable[[], None]) -> None:
    """Run `run` as a worker would: on a fresh thread, in an empty context (nothing current but what it sets)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            contextvars.Context().run(run)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def run_step(stored: Job, step: str, attempt: int, fail: bool = False) -> None:
    """One run of `step`, reading the job as stored (a JSON round trip), with a vendor call inside it."""
    job = Job.model_validate_json(stored.model_dump_json())

    def run() -> None:
        assert trace.get_current_span().get_span_context().is_valid is False
        with tracing.step_span(job, step, attempt):
            with PROVIDER.get_tracer("httpx").start_as_current_span("POST"):
                pass
            if fail:
                raise RuntimeError(f"vendor said no about {PROMPT}")

    in_another_process(run)


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in finished if span.name == name]


def test_every_step_run_and_retry_is_in_the_jobs_trace(spans: InMemorySpanExporter) -> None:
    carrier = tracing.job_context("job_1", "sandbox")
    assert set(carrier) == {"traceparent"}
    job = make_job(carrier, batch_id="batch_1")
    run_step(job, "submit", 0)
    for attempt in range(3):  # two polls that found the vendor down, then the one that saw it done
        run_step(job, "poll", attempt)
    run_step(job, "finalize", 0)
    with pytest.raises(RuntimeError):
        run_step(job, "deliver_webhook", 0, fail=True)
    run_step(job, "deliver_webhook", 1)

    finished = spans.get_finished_spans()
    (created,) = by_name(finished, "genqueue.job.create")
    assert created.context is not None and created.parent is None
    trace_id = created.context.trace_id
    assert {span.context.trace_id for span in finished if span.context is not None} == {trace_id}
    assert created.attributes == {"genqueue.job_id": "job_1", "genqueue.provider": "sandbox"}

    polls = by_name(finished, "genqueue.poll")
    assert [span.attributes["genqueue.attempt"] for span in polls if span.attributes] == [0, 1, 2]
    steps = [span for span in finished if span.name.startswith("genqueue.") and span is not created]
    assert len(steps) == 7
    for span in steps:
        assert span.parent is not None and span.parent.span_id == created.context.span_id
        assert span.attributes is not None
        assert span.attributes["genqueue.job_id"] == "job_1"
        assert span.attributes["genqueue.batch_id"] == "batch_1"
        assert span.attributes["genqueue.step"] == span.name.removeprefix("genqueue.")
    step_ids = {span.context.span_id for span in steps if span.context is not None}
    calls = by_name(finished, "POST")
    assert len(calls) == 7 and all(call.parent is not None and call.parent.span_id in step_ids for call in calls)


def test_a_failed_run_is_an_error_recorded_by_its_type_only(spans: InMemorySpanExporter) -> None:
    job = make_job(tracing.job_context("job_1", "sandbox"))
    with pytest.raises(RuntimeError):
        run_step(job, "finalize", 0, fail=True)
    (span,) = by_name(spans.get_finished_spans(), "genqueue.finalize")
    assert span.status.status_code is trace.StatusCode.ERROR
    assert [(event.name, dict(event.attributes or {})) for event in span.events] == [
        ("exception", {"exception.type": "builtins.RuntimeError"})
    ]


def test_no_span_holds_the_prompt(spans: InMemorySpanExporter) -> None:
    job = make_job(tracing.job_context("job_1", "sandbox"))
    with pytest.raises(RuntimeError):
        run_step(job, "submit", 0, fail=True)
    run_step(job, "submit", 1)
    for span in spans.get_finished_spans():
        assert "lighthouse" not in span.to_json()


def test_the_task_span_it_runs_in_is_linked_when_in_another_trace(spans: InMemorySpanExporter) -> None:
    job = make_job(tracing.job_context("job_1", "sandbox"))
    stored = Job.model_validate_json(job.model_dump_json())

    def run() -> None:
        # a task the sweeper published: its Celery span is in the sweeper's trace
        with (
            PROVIDER.get_tracer("celery").start_as_current_span("run/genqueue.poll") as carrier,
            tracing.step_span(stored, "poll", 4),
        ):
            pass
        assert carrier.get_span_context().trace_id != job_trace

    job_trace = int(job.trace_context["traceparent"].split("-")[1], 16)
    in_another_process(run)
    (span,) = by_name(spans.get_finished_spans(), "genqueue.poll")
    (task,) = by_name(spans.get_finished_spans(), "run/genqueue.poll")
    assert span.context is not None and span.context.trace_id == job_trace
    assert [link.context.span_id for link in span.links] == [task.context.span_id if task.context else None]


def test_job_context_is_a_child_of_the_span_in_force(spans: InMemorySpanExporter) -> None:
    with PROVIDER.get_tracer("fastapi").start_as_current_span("POST /v1/jobs") as request:
        carrier = tracing.job_context("job_1", "sandbox")
    (created,) = by_name(spans.get_finished_spans(), "genqueue.job.create")
    assert created.parent is not None and created.parent.span_id == request.get_span_context().span_id
    assert carrier["traceparent"].split("-")[1] == trace.format_trace_id(request.get_span_context().trace_id)


def test_a_job_without_a_stored_context_runs_in_a_new_trace(spans: InMemorySpanExporter) -> None:
    run_step(make_job({}), "poll", 0)
    (span,) = by_name(spans.get_finished_spans(), "genqueue.poll")
    assert span.parent is None


def test_the_producer_stores_the_creation_context_on_the_job(spans: InMemorySpanExporter) -> None:
    store = JobStore(fakeredis.FakeRedis())
    made = Producer(Settings(), store=store, celery=Celery()).create_job(
        "job_1", "sandbox", GenerationRequest(model="sandbox-video", prompt=PROMPT), Cost(), None, {}
    )
    stored = store.get("job_1")
    assert stored is not None and stored.trace_context == made.trace_context != {}
    (created,) = by_name(spans.get_finished_spans(), "genqueue.job.create")
    assert created.context is not None
    assert stored.trace_context["traceparent"].split("-")[1] == trace.format_trace_id(created.context.trace_id)


def test_current_trace_id_is_the_span_in_forces(spans: InMemorySpanExporter) -> None:
    assert tracing.current_trace_id() is None
    job = make_job(tracing.job_context("job_1", "sandbox"))
    with tracing.step_span(job, "poll", 0):
        assert tracing.current_trace_id() == job.trace_context["traceparent"].split("-")[1]


def test_off_it_stores_nothing_and_spans_nothing() -> None:
    tracing.use_provider(None)
    assert tracing.job_context("job_1", "sandbox") == {}
    with tracing.step_span(make_job({}), "poll", 0):
        assert tracing.current_trace_id() is None


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_only_the_otel_variables_turn_it_on(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], wanted: bool) -> None:
    for name in (
        "OTEL_TRACES_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.wanted() is wanted


def test_otlp_means_the_installed_http_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp,console")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", raising=False)
    names = [type(exporter).__name__ for exporter in tracing._exporters()]
    assert names == ["OTLPSpanExporter", "ConsoleSpanExporter"]


def test_an_httpx_span_keeps_no_query_string(spans: InMemorySpanExporter) -> None:
    url = "https://cdn.example.com/out.mp4?X-Amz-Signature=abc&token=xyz"
    with PROVIDER.get_tracer("httpx").start_as_current_span("GET", attributes={"url.full": url}) as span:
        tracing._drop_query(span, None)
    (finished,) = spans.get_finished_spans()
    assert finished.attributes == {"url.full": "https://cdn.example.com/out.mp4"}
