"""What genqueue's log configuration (shared/logs.py) shows: Celery's per-task lines only at DEBUG, its failures
always, genqueue's own lines with what the step binds, secrets never."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from shared import logs


@pytest.fixture(autouse=True)
def restored_logging() -> Iterator[None]:
    """configure() replaces the root logger's handlers (pytest's too): put them back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in (*logs.CELERY_PER_TASK_LOGGERS, "httpx")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, saved in quiet.items():
        logging.getLogger(name).setLevel(saved)


def celery_lines() -> None:
    logging.getLogger("celery.worker.strategy").info("Task genqueue.submit[t-1] received")
    logging.getLogger("celery.app.trace").info("Task genqueue.submit[t-1] succeeded in 0.01s: None")
    logging.getLogger("celery.app.trace").error("Task genqueue.poll[t-2] raised unexpected: KeyError()")


def test_at_info_celerys_per_task_lines_are_left_out_but_its_failures_and_ours_show(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("text", "INFO", secrets=["sk-secret-value"])
    celery_lines()
    with logs.bind_step(job_id="job_1", step="submit", task_id="t-1"):
        logging.getLogger("genqueue.workers").info("submit answered 200 in 0.01s: submitted (key sk-secret-value)")
    err = capsys.readouterr().err
    assert "received" not in err and "succeeded in" not in err
    assert "raised unexpected: KeyError()" in err
    assert "submit answered 200 in 0.01s: submitted" in err and "job_id=job_1" in err and "task_id=t-1" in err
    assert "sk-secret-value" not in err and "***" in err


def test_at_debug_celerys_per_task_lines_show(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("text", "DEBUG")
    celery_lines()
    err = capsys.readouterr().err
    assert "Task genqueue.submit[t-1] received" in err and "succeeded in 0.01s" in err


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_traceback_is_plain_text_with_the_secrets_redacted(
    log_format: logs.LogFormat, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(log_format, "INFO", secrets=["sk-secret-value"])
    api_key = "sk-secret-value"
    try:
        raise RuntimeError(f"vendor refused key {api_key}")
    except RuntimeError:
        logging.getLogger("genqueue.workers").exception("submit failed")
    err = capsys.readouterr().err
    assert "submit failed" in err and "Traceback (most recent call last)" in err
    assert "RuntimeError: vendor refused key ***" in err.replace("\\n", "\n")
    assert "sk-secret-value" not in err
    assert "locals" not in err.lower()  # no frame's local variables drawn
