"""infra/monitoring/ holds what Prometheus and Grafana load, and each piece is checked with promtool itself:
`promtool check rules` and `promtool test rules` (every alert made to fire, and kept quiet where it must be),
`promtool check config` on the example configuration, and every dashboard query parsed by promtool (as a
throwaway recording rule). Alongside, structural checks: every alert has a severity, a summary and a
description; every panel a datasource and a query; every metric and label used is one the exporter exposes
(tests/support/promtool.py's catalog), counters only under rate()/increase(), gauges never.

Needs promtool: `infra/local/ensure-system-deps.sh --test` installs it. Without it these tests fail, saying so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import promtool

MONITORING = Path(__file__).resolve().parents[2] / "infra" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERTS_TEST = MONITORING / "alerts_test.yml"
RECORDING = MONITORING / "recording.yml"
CONFIG = MONITORING / "prometheus.yml"
DASHBOARD = MONITORING / "grafana" / "genqueue.json"

#: what the dashboard's variables stand for when its queries are parsed
VARIABLES = {"provider": ".*", "__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
EXPECTED_ALERTS = {
    "GenqueueExporterDown",
    "GenqueueSweeperStalled",
    "GenqueueDispatcherStalled",
    "GenqueueStepsOverdue",
    "GenqueueProviderFailureRate",
    "GenqueueVendorErrors",
    "GenqueueWebhookDeadLettersGrowing",
    "GenqueueQuarantinedRecords",
    "GenqueueRedisMemoryNearMax",
    "GenqueueBreakerOpenLong",
    "GenqueueCreditPaused",
}
EXPECTED_ROWS = ["Jobs", "Providers", "Batches", "Webhooks", "Money", "Health"]
SEVERITIES = {"critical", "warning", "info"}
RATE_FUNCTIONS = ("rate", "irate", "increase")
#: a metric name in PromQL: not a label, function or keyword, since only metrics start with genqueue_ (or are up)
METRIC = re.compile(r"\b(genqueue_[a-z0-9_]+|up)\b(?!\s*\()")
SELECTOR = re.compile(r"\b(genqueue_[a-z0-9_]+|up)\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"(?:^|,)\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


@pytest.fixture(scope="module", autouse=True)
def _promtool_installed() -> None:
    try:
        promtool.promtool_binary()
    except promtool.PromtoolMissing as missing:
        pytest.fail(str(missing), pytrace=False)


def rule_files() -> list[Path]:
    return [path for path in (ALERTS, RECORDING) if path.exists()]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> Iterator[dict[str, Any]]:
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            yield from group["rules"]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    """The dashboard's panels, rows left out (and the panels of collapsed rows taken in)."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def substitute(expr: str) -> str:
    """`expr` with the dashboard's variables replaced by what they stand for (an unknown one fails the test)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in VARIABLES, f"unknown dashboard variable ${name} in {expr}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def dashboard_queries() -> dict[str, str]:
    """Every target's expression with its variables substituted, by `panel "title" target X`."""
    return {
        f'panel {panel["id"]} "{panel["title"]}" target {target["refId"]}': substitute(target["expr"])
        for panel in panels()
        for target in panel["targets"]
    }


def all_expressions() -> dict[str, str]:
    found = {f"rule {rule.get('alert') or rule.get('record')}": str(rule["expr"]) for rule in rules()}
    return found | dashboard_queries()


def promtool_ok(*args: str) -> str:
    result = promtool.run(*args, cwd=MONITORING)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


# --- promtool ------------------------------------------------------------------------------------------------------


def test_rule_files_pass_promtool_check_rules() -> None:
    output = promtool_ok("check", "rules", *(path.name for path in rule_files()))
    assert "SUCCESS" in output


def test_alert_unit_tests_pass() -> None:
    output = promtool_ok("test", "rules", ALERTS_TEST.name)
    assert "SUCCESS" in output


def test_unit_tests_load_every_rule_file() -> None:
    assert sorted(load_yaml(ALERTS_TEST)["rule_files"]) == sorted(path.name for path in rule_files())


def test_example_config_passes_promtool_check_config() -> None:
    promtool_ok("check", "config", CONFIG.name)
    config = load_yaml(CONFIG)
    assert sorted(config["rule_files"]) == sorted(path.name for path in rule_files())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "genqueue"]
    assert job["static_configs"] == [{"targets": ["metrics:9808"]}]


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert queries
    names = {f"dashboard:query_{index}": where for index, where in enumerate(queries)}
    records = [{"record": name, "expr": expr} for name, expr in zip(names, queries.values(), strict=True)]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}, sort_keys=False))
    result = promtool.run("check", "rules", str(path))
    assert result.returncode == 0, "\n".join(
        [result.stdout + result.stderr, "where:", *(f"{name}: {where}" for name, where in names.items())]
    )


def test_a_broken_dashboard_query_would_be_caught(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    records = [{"record": "dashboard:query_0", "expr": "sum by (provider (rate(genqueue_polls_total[5m]))"}]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    assert promtool.run("check", "rules", str(path)).returncode != 0


def test_check_metrics_is_empty_for_a_clean_exposition() -> None:
    text = (
        "# HELP genqueue_polls_total Vendor polls\n# TYPE genqueue_polls_total counter\n"
        'genqueue_polls_total{provider="sandbox"} 3\n'
    )
    assert promtool.check_metrics(text) == ""


def test_check_metrics_names_what_is_wrong() -> None:
    complaints = promtool.check_metrics("# TYPE genqueue_polls counter\ngenqueue_polls 3\n")
    assert "genqueue_polls" in complaints
    assert "_total" in complaints
    assert "no help text" in complaints
    assert promtool.check_metrics("genqueue_polls{{ 3\n") != ""


def test_a_missing_promtool_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PROMTOOL", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(promtool.PromtoolMissing, match=r"infra/local/ensure-system-deps\.sh --test"):
        promtool.promtool_binary()


# --- alerts --------------------------------------------------------------------------------------------------------


def test_the_alerts_are_the_agreed_ones() -> None:
    assert set(alerts()) == EXPECTED_ALERTS


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_has_severity_for_summary_and_description(name: str) -> None:
    rule = alerts()[name]
    assert rule["labels"]["severity"] in SEVERITIES
    assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name} has no `for:` duration"
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert len(annotations["description"]) > len(annotations["summary"])


@pytest.mark.parametrize("name", sorted(EXPECTED_ALERTS))
def test_alert_is_unit_tested_firing_and_quiet(name: str) -> None:
    cases = [
        case
        for test in load_yaml(ALERTS_TEST)["tests"]
        for case in test.get("alert_rule_test", [])
        if case["alertname"] == name
    ]
    assert any(case.get("exp_alerts") for case in cases), f"no test makes {name} fire"
    assert any(not case.get("exp_alerts") for case in cases), f"no test shows {name} quiet"


# --- dashboard -----------------------------------------------------------------------------------------------------


def test_dashboard_has_its_variables_and_rows() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert board["uid"] and board["title"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    provider = variables["provider"]
    assert provider["type"] == "query"
    assert provider["datasource"]["uid"] == "${datasource}"
    assert re.fullmatch(r"label_values\(genqueue_\w+, provider\)", provider["definition"])
    assert provider["includeAll"] and provider["allValue"] == ".*"
    rows = [panel["title"] for panel in board["panels"] if panel["type"] == "row"]
    assert rows == EXPECTED_ROWS


def test_every_panel_has_a_datasource_and_a_query() -> None:
    found = panels()
    ids = [panel["id"] for panel in dashboard()["panels"]] + [
        inner["id"] for panel in dashboard()["panels"] for inner in panel.get("panels", [])
    ]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in found:
        where = f'panel {panel["id"]} "{panel["title"]}"'
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert panel["targets"], f"{where} has no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), where
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], where
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, where


def test_dashboard_queries_filter_by_provider_where_they_can() -> None:
    # a family with a provider label is always narrowed to the chosen providers
    for panel in panels():
        for target in panel["targets"]:
            for name, matchers in re.findall(r"\b(genqueue_[a-z0-9_]+)\s*(\{[^}]*\})?", target["expr"]):
                family = promtool.series_names().get(name)
                if family and "provider" in family[1].labels:
                    assert 'provider=~"$provider"' in matchers, f"{panel['title']}: {name} not filtered"


# --- metric names and their use ------------------------------------------------------------------------------------


def test_every_metric_used_is_in_the_catalog() -> None:
    known = set(promtool.series_names()) | {"up"}
    for where, expr in all_expressions().items():
        unknown = set(METRIC.findall(expr)) - known
        assert not unknown, f"{where} uses {sorted(unknown)}, which the exporter does not expose: {expr}"


def allowed_labels(name: str) -> set[str]:
    if name == "up":
        return set(promtool.TARGET_LABELS)
    if name not in promtool.series_names():
        return set()  # test_every_metric_used_is_in_the_catalog names it
    family_name, family = promtool.series_names()[name]
    extra = {"le"} if name == family_name + "_bucket" else set()
    return set(family.labels) | set(promtool.TARGET_LABELS) | extra


def test_every_label_used_is_one_the_metrics_have() -> None:
    for where, expr in all_expressions().items():
        used_metrics = set(METRIC.findall(expr))
        for name, matchers in SELECTOR.findall(expr):
            labels = set(MATCHER_LABEL.findall(matchers))
            assert labels <= allowed_labels(name), (
                f"{where}: {name} has no label {sorted(labels - allowed_labels(name))}"
            )
        anywhere = set().union(*(allowed_labels(name) for name in used_metrics)) if used_metrics else set()
        for grouping in GROUPING.findall(expr):
            labels = {label.strip() for label in grouping.split(",") if label.strip()}
            assert labels <= anywhere, (
                f"{where}: groups by {sorted(labels - anywhere)}, a label none of its metrics has"
            )


def test_counters_are_read_through_rate_or_increase_and_gauges_never() -> None:
    for where, expr in all_expressions().items():
        for match in METRIC.finditer(expr):
            name = match.group(1)
            if name not in promtool.series_names():
                continue  # up, or a name test_every_metric_used_is_in_the_catalog reports
            family_name, family = promtool.series_names()[name]
            before = expr[: match.start()].rstrip()
            under_rate = any(before.endswith(f"{function}(") for function in RATE_FUNCTIONS)
            cumulative = family.kind == "counter" or (family.kind == "histogram" and name != family_name)
            if cumulative:
                assert under_rate, f"{where}: counter {name} used without rate()/increase(): {expr}"
            else:
                assert not under_rate, f"{where}: gauge {name} under rate()/increase(): {expr}"
