"""`genqueue batch` refuses bad usage with exit 2 and one line on stderr, before touching Redis; so does every
command given settings that do not validate, and `genqueue status` an unknown job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from typer.testing import CliRunner

from producer import cli
from producer.api import Producer
from producer.cli import app
from shared.settings import Settings, get_settings
from shared.store import JobStore


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


def test_a_budgeted_batch_refuses_lines_it_cannot_estimate_naming_each(tmp_path: Path) -> None:
    path = tmp_path / "night.jsonl"
    path.write_text(
        '{"provider": "sandbox", "model": "sandbox-image", "prompt": "a"}\n'
        '{"provider": "vicsee", "model": "sora-2-pro", "prompt": "a model the catalog does not list"}\n'
        '{"provider": "vicsee", "model": "flux-2", "prompt": "a listed model with no documented price"}\n'
    )
    result = CliRunner().invoke(app, ["batch", "submit", str(path), "--budget-credits", "100", "--dry-run"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert f"{path}:2: no credits estimate for vicsee sora-2-pro, so a --budget-credits cannot bound it" in lines
    assert f"{path}:3: no credits estimate for vicsee flux-2, so a --budget-credits cannot bound it" in lines
    assert lines[-1] == "genqueue: error: 2 of 3 lines refused; nothing enqueued"
    # without a budget the same lines are accepted: an unknown VicSee model is sent, its cost unknown
    assert CliRunner().invoke(app, ["batch", "submit", str(path), "--dry-run"]).exit_code == 0


def test_a_batch_line_sent_to_a_route_is_refused_naming_its_line_when_it_cannot_be_bounded_or_sent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "routed.jsonl"
    path.write_text(
        '{"provider": "sandbox", "model": "sandbox-image", "prompt": "a"}\n'
        '{"provider": "auto", "model": "sora-2", "prompt": "b", "options": {"duration": 10}}\n'
        '{"provider": "auto", "model": "sandbox-image", "prompt": "c"}\n'
    )
    result = CliRunner().invoke(app, ["batch", "submit", str(path), "--dry-run", "--budget-credits", "100"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    needs_usd = "needs --budget-usd (credits of different vendors do not compare)"
    assert f"{path}:2: provider 'auto': a line sent to a route {needs_usd}" in lines
    assert lines[-1] == "genqueue: error: 2 of 3 lines refused; nothing enqueued"
    result = CliRunner().invoke(app, ["batch", "submit", str(path), "--dry-run"])
    lines = result.stderr.splitlines()
    assert result.exit_code == 2 and lines[-1] == "genqueue: error: 2 of 3 lines refused; nothing enqueued", lines
    # no API key for VicSee or VeoGen here
    assert any(line.startswith(f"{path}:2: no provider of route sora-2 can take the job: vicsee:") for line in lines)
    assert any(line.startswith(f"{path}:3: ") and "sandbox-image" in line for line in lines), lines


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """The process's settings are read again from the environment, and forgotten after the test."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


VEO3_KEYS = {
    f"GENQUEUE_PROVIDERS__{name}__{setting}": value
    for name in ("VEO3API", "GATEWAY")
    for setting, value in (("API_KEY", "sk-test"), ("BASE_URL", "http://vendor.test"))
}
#: veo3api's credits at a price, and a contract price for the gateway's veo3 (its catalog gives none)
VEO3_PRICES = {
    "GENQUEUE_PROVIDERS__VEO3API__USD_PER_CREDIT": "0.01",
    "GENQUEUE_PROVIDERS__GATEWAY__PRICES": '{"veo3": {"usd_per_job": 2}}',
}


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        (VEO3_KEYS, "no usd estimate for veo3api veo3 (route veo3), so a --budget-usd cannot bound it"),
        (VEO3_KEYS | {"GENQUEUE_PROVIDERS__VEO3API__USD_PER_CREDIT": "0.01"}, "no usd estimate for gateway veo3"),
        (VEO3_KEYS | VEO3_PRICES, None),
    ],
)
@pytest.mark.usefixtures("fresh_settings")
def test_a_usd_budget_bounds_a_routed_line_only_when_every_candidate_has_a_usd_price(
    tmp_path: Path, env: dict[str, str], refusal: str | None
) -> None:
    path = tmp_path / "veo3.jsonl"
    path.write_text('{"provider": "auto", "model": "veo3", "prompt": "a"}\n')
    result = CliRunner().invoke(app, ["batch", "submit", str(path), "--dry-run", "--budget-usd", "10"], env=env)
    if refusal is None:
        assert result.exit_code == 0, result.stderr
        assert "budget: 10 usd" in result.stdout
    else:
        assert result.exit_code == 2
        assert result.stderr.splitlines()[0].startswith(f"{path}:1: {refusal}"), result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("GENQUEUE_LOG_FORMAT", "xml", "Input should be 'text' or 'json'"),
        ("GENQUEUE_REDIS_FAILOVER_SECONDS", "-1", "Input should be greater than or equal to 0"),
    ],
)
@pytest.mark.usefixtures("fresh_settings")
def test_a_bad_setting_is_refused_in_one_line_naming_it(variable: str, value: str, problem: str) -> None:
    result = CliRunner().invoke(app, ["status", "job_x"], env={variable: value})
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line == f"genqueue: error: bad settings: {variable}: {problem}"


@pytest.mark.parametrize("extra", [[], ["--history"], ["--history", "--json"]])
def test_status_of_an_unknown_job_exits_2_in_one_line(monkeypatch: pytest.MonkeyPatch, extra: list[str]) -> None:
    producer = Producer(Settings(), store=JobStore(fakeredis.FakeRedis()), celery=object())  # type: ignore[arg-type]
    monkeypatch.setattr(cli, "producer", lambda: producer)
    result = CliRunner().invoke(app, ["status", "job_nosuch", *extra])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["genqueue: error: no job 'job_nosuch'"]
