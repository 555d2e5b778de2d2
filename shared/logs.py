"""Log lines a person can read at a terminal, or one JSON object per line for a log system (GENQUEUE_LOG_FORMAT).

`configure(format, level, secrets)` sets up the root logger once for the process (workers and beat through
Celery's `setup_logging` signal, the API and the other server commands at start): every record, genqueue's,
Celery's, uvicorn's or httpx's, goes through one structlog formatter that adds what is bound in this context —
`job_id`, `batch_id`, `provider`, `step`, `task_id`, `attempt` (bound by `bind_step` for a step run), and
`trace_id` when tracing is on — and replaces every secret the settings hold by `***`.

JSON fields: `timestamp` (ISO 8601, UTC), `level`, `logger`, `event` (the message), the bound fields, and
`exception` with the traceback when there is one. Nothing here logs a prompt: genqueue's own lines never
include one, and job data reaches logs only as ids.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import structlog
from structlog.types import EventDict, Processor

from shared import tracing

LogFormat = Literal["text", "json"]
#: the fields a step run binds, in the order a text line shows them
STEP_FIELDS = ("job_id", "batch_id", "provider", "step", "attempt", "task_id")
#: where Celery logs a line for every task it receives and every one that succeeds
CELERY_PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def configure(log_format: LogFormat, level: str | int = "INFO", secrets: Sequence[str] = ()) -> None:
    """Route every log record of this process through genqueue's formatter, at `level`, on stderr."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_trace_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # a traceback becomes plain text before the secrets are redacted, in both formats: left to the console
    # renderer it would be drawn after redaction, with rich's locals of every frame (secrets among them), and
    # drawing those takes a busy worker seconds
    shared.append(structlog.processors.format_exc_info)
    renderer: Processor
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _Redactor(secrets), renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # httpx logs every request at INFO with its full URL (query strings, presigned signatures): keep it quiet
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Celery's two lines per task ("received", "succeeded in") say nothing a step's own line does not, and cost a
    # worker more than some steps do: shown at DEBUG only. Its failures are logged at ERROR, so they still show.
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for name in CELERY_PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


@contextlib.contextmanager
def bind_step(**fields: Any) -> Iterator[None]:
    """Bind a step run's fields (job_id, provider, step, attempt, batch_id, task_id) to every line logged in it."""
    known = {name: value for name, value in fields.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**known):
        yield


def _add_trace_id(_: Any, __: str, event: EventDict) -> EventDict:
    trace_id = tracing.current_trace_id()
    if trace_id is not None:
        event.setdefault("trace_id", trace_id)
    return event


class _Redactor:
    """Replaces every secret (settings' API keys, passwords, the webhook secret) in a line's text fields."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self.secrets = sorted({secret for secret in secrets if len(secret) >= 4}, key=len, reverse=True)

    def __call__(self, _: Any, __: str, event: EventDict) -> EventDict:
        if not self.secrets:
            return event
        for name, value in event.items():
            if isinstance(value, str):
                for secret in self.secrets:
                    value = value.replace(secret, "***")
                event[name] = value
        return event
