"""Tracing with OpenTelemetry: one trace per job, from its creation through every step run, joined by the trace
context stored on the job. Optional: without the `tracing` extra installed, or with no OTEL_* exporter configured,
every function here does nothing and costs nothing.

- `configure(service_name)`: called once per process (worker, beat, API, CLI); turns tracing on when the standard
  OTEL_* variables ask for an exporter and the SDK is installed, with the installed instrumentations (httpx, redis,
  botocore, celery); `instrument_app(app)` adds FastAPI's to the API app.
- `job_context(job_id, provider)`: called where a job is created; the carrier (W3C `traceparent`) to store on the
  job as `Job.trace_context`, the creation recorded as the span `genqueue.job.create`, a child of the span in force
  (an API request's) or the trace's root; `{}` when tracing is off.
- `step_span(job, step, attempt)`: a context manager around one run of a step, a span `genqueue.<step>` whose
  parent is the job's stored context, so a poll an hour later, or a task the sweeper published again, joins the
  same trace; the vendor, Redis and S3 calls made inside it are its children (the instrumentations). The Celery
  task span it runs in belongs to the trace of whoever published the task; when that is another trace (the
  sweeper's, a CLI's publish), the step span links to it.
- `current_trace_id()`: the trace id of the span in force (hex), for log lines; None when there is none.

Span names and attributes hold ids, names and counts only: never a prompt, a key or a secret (an exception is
recorded by its type, not its message; the query string is dropped from every httpx span's URL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.models import Job

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("genqueue.tracing")

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER_NAME = "genqueue"


class _State:
    """This process's tracing: the tracer of genqueue's own spans (None: off) and what `configure` decided."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tracer: trace.Tracer | None = None
        self.configured: bool | None = None


_STATE = _State()


def wanted() -> bool:
    """Whether the environment asks for traces: OTEL_TRACES_EXPORTER set to something other than `none`, or an
    OTLP endpoint set (OTEL_SDK_DISABLED=true overrides both)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure(service_name: str) -> bool:
    """Turn tracing on for this process if `wanted()` and the `tracing` extra is installed: a TracerProvider
    (service.name from OTEL_SERVICE_NAME, else `service_name`; OTEL_RESOURCE_ATTRIBUTES and OTEL_TRACES_SAMPLER as
    the SDK reads them), a BatchSpanProcessor per exporter named in OTEL_TRACES_EXPORTER (default `otlp`, over
    HTTP unless OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL says grpc; `console` prints JSON to stdout), and the
    httpx, redis, botocore and celery instrumentations that are installed. Whether tracing is on.

    Idempotent: only the first call in a process decides. An outbound call made outside any trace (the broker's
    own Redis traffic, say) starts no trace of its own."""
    with _STATE.lock:
        if _STATE.configured is None:
            _STATE.configured = _configure(service_name)
        return _STATE.configured


def use_provider(provider: TracerProvider | None) -> None:
    """Make genqueue's spans go to `provider` (None: tracing off), without touching the global provider or the
    instrumentations: the seam for tests (an SDK provider with an in-memory exporter)."""
    _STATE.tracer = None if provider is None else provider.get_tracer(_TRACER_NAME)


def instrument_app(app: FastAPI) -> None:
    """Trace the API's requests (a server span each, the parent of the job it creates) when tracing is on and
    FastAPI's instrumentation is installed; the probes (/livez, /readyz) are not traced unless
    OTEL_PYTHON_FASTAPI_EXCLUDED_URLS says otherwise."""
    if not _STATE.configured:
        return
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:
        return
    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "/livez,/readyz")
    FastAPIInstrumentor.instrument_app(app, excluded_urls=excluded)


def job_context(job_id: str, provider: str) -> dict[str, str]:
    """The trace context to store on a job being created (see the module docstring)."""
    tracer = _STATE.tracer
    if tracer is None:
        return {}
    attributes = {"genqueue.job_id": job_id, "genqueue.provider": provider}
    carrier: dict[str, str] = {}
    with tracer.start_as_current_span("genqueue.job.create", kind=trace.SpanKind.PRODUCER, attributes=attributes):
        _PROPAGATOR.inject(carrier)
    return carrier


@contextlib.contextmanager
def step_span(job: Job, step: str, attempt: int) -> Iterator[None]:
    """A span around one run of `step` of `job`, in the job's trace (a new trace if the job has no stored
    context), current while it runs; an exception passing through is recorded by its type and sets the status to
    error."""
    tracer = _STATE.tracer
    if tracer is None:
        yield
        return
    parent = _PROPAGATOR.extract(job.trace_context) if job.trace_context else otel_context.Context()
    job_trace = trace.get_current_span(parent).get_span_context().trace_id
    carried_by = trace.get_current_span().get_span_context()
    links = [trace.Link(carried_by)] if carried_by.is_valid and carried_by.trace_id != job_trace else None
    attributes: dict[str, str | int] = {
        "genqueue.job_id": job.id,
        "genqueue.provider": job.provider,
        "genqueue.step": step,
        "genqueue.attempt": attempt,
    }
    if job.batch_id is not None:
        attributes["genqueue.batch_id"] = job.batch_id
    with tracer.start_as_current_span(
        f"genqueue.{step}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except BaseException as exc:
            name = f"{type(exc).__module__}.{type(exc).__qualname__}"
            span.add_event("exception", {"exception.type": name})
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            raise


def current_trace_id() -> str | None:
    """The hex trace id of the span in force, if any."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return trace.format_trace_id(span_context.trace_id)


def _configure(service_name: str) -> bool:
    if not wanted():
        return False
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* variables ask for traces but the `tracing` extra is not installed: tracing stays off")
        return False
    exporters = _exporters()
    if not exporters:
        return False
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    provider.sampler = _in_trace_only(provider.sampler)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    use_provider(provider)
    _instrument()
    return True


def _exporter_names() -> list[str]:
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    ).strip()
    resolved = []
    for name in (part.strip() for part in names.split(",")):
        if name == "otlp":
            # the SDK's own default for bare `otlp` is grpc; the `tracing` extra installs the HTTP exporter
            name = "otlp_proto_grpc" if protocol == "grpc" else "otlp_proto_http"
        if name and name != "none":
            resolved.append(name)
    return resolved


def _exporters() -> list[SpanExporter]:
    """One exporter per name, found as the SDK finds them (the `opentelemetry_traces_exporter` entry points)."""
    exporters: list[SpanExporter] = []
    for name in _exporter_names():
        found = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not found:
            log.warning("OTEL_TRACES_EXPORTER names %r, which is not installed: ignored", name)
            continue
        exporters.append(next(iter(found)).load()())
    return exporters


def _in_trace_only(delegate: Any) -> Any:
    """A sampler that drops a client span with no parent (an outbound call outside any trace) and otherwise
    decides as `delegate` (the one OTEL_TRACES_SAMPLER names)."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class InTraceOnly(Sampler):
        def should_sample(
            self,
            parent_context: otel_context.Context | None,
            trace_id: int,
            name: str,
            kind: trace.SpanKind | None = None,
            attributes: Any = None,
            links: Sequence[trace.Link] | None = None,
            trace_state: trace.TraceState | None = None,
        ) -> SamplingResult:
            in_trace = trace.get_current_span(parent_context).get_span_context().is_valid
            if kind is trace.SpanKind.CLIENT and not in_trace:
                return SamplingResult(Decision.DROP)
            return delegate.should_sample(  # type: ignore[no-any-return]
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"InTraceOnly{{{delegate.get_description()}}}"

    return InTraceOnly()


def _instrument() -> None:
    """Turn on each instrumentation that is installed; the httpx spans' URLs lose their query strings (presigned
    signatures, tokens)."""
    with contextlib.suppress(ImportError):
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument(request_hook=_drop_query, async_request_hook=_drop_query_async)
    with contextlib.suppress(ImportError):
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor().instrument()
    with contextlib.suppress(ImportError):
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

        BotocoreInstrumentor().instrument()  # type: ignore[no-untyped-call]
    with contextlib.suppress(ImportError):
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]


def _drop_query(span: trace.Span, request: Any) -> None:
    attributes = getattr(span, "attributes", None) or {}
    for key in ("url.full", "http.url"):
        url = attributes.get(key)
        if isinstance(url, str) and "?" in url:
            span.set_attribute(key, url.split("?", 1)[0])


async def _drop_query_async(span: trace.Span, request: Any) -> None:
    _drop_query(span, request)
