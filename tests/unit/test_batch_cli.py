"""`genqueue batch` refuses bad usage with exit 2 and one line on stderr, before touching Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from producer.cli import app


@pytest.fixture
def batch_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"provider": "sandbox", "model": "sandbox-image", "prompt": "a"}\n')
    return path


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--budget-credits", "10", "--budget-usd", "1"], "give --budget-credits or --budget-usd, not both"),
        (["--budget-usd", "0"], "a budget must be more than 0"),
        (["--not-before", "+2h", "--deadline", "+1h"], "--deadline must come after --not-before"),
        (["--deadline", "next tuesday"], "--deadline 'next tuesday': give an ISO 8601 time"),
    ],
)
def test_batch_submit_refuses_bad_options(batch_file: Path, extra: list[str], reason: str) -> None:
    result = CliRunner().invoke(app, ["batch", "submit", str(batch_file), *extra])
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"genqueue: error: {reason}")


def test_batch_report_refuses_an_unknown_format() -> None:
    result = CliRunner().invoke(app, ["batch", "report", "night", "--format", "xml"])
    assert (
        result.exit_code == 2 and result.stderr.strip() == "genqueue: error: --format must be csv or jsonl, not 'xml'"
    )


def test_batch_retry_needs_to_be_told_what_to_retry() -> None:
    result = CliRunner().invoke(app, ["batch", "retry", "night"])
    assert result.exit_code == 2 and result.stderr.strip() == "genqueue: error: say what to retry: --failed"


def test_batch_submit_refuses_a_file_it_cannot_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["batch", "submit", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.startswith("genqueue: error: cannot read") and len(result.stderr.splitlines()) == 1
