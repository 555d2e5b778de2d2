"""The Grafana dashboard over a chaos run, rendered headless: a real Prometheus scrapes a real exporter while
bench/chaos.py runs, then every panel of infra/monitoring/grafana/genqueue.json is queried from that Prometheus
(its own PromQL, the dashboard's variables filled in) and drawn, in the dashboard's layout, into one PNG.

    .venv/bin/python bench/dashboard.py [--jobs 60] [--out test-artifacts/dashboard.png]

Prints, per panel, the series it drew (a panel with none says `no data`, so a query that matches nothing shows),
and the alerts Prometheus had firing or pending at the end (infra/monitoring/alerts.yml is loaded).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from infra.local.processes import ServerProcess, free_port, port_open
from infra.local.stack import BIN, LocalStack
from tests.support.bench import load_bench

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "infra" / "monitoring" / "grafana" / "genqueue.json"
ALERTS = ROOT / "infra" / "monitoring" / "alerts.yml"
#: the scrape interval of the run, and the window Grafana's $__rate_interval stands for at it
SCRAPE_SECONDS = 1
RATE_WINDOW = "15s"


@dataclass
class Panel:
    title: str
    kind: str
    grid: dict[str, int]
    queries: list[tuple[str, str]]
    series: list[tuple[str, list[float], list[float]]] = field(default_factory=list)


def panels(dashboard: dict[str, Any], range_seconds: int) -> list[Panel]:
    """The dashboard's panels with their queries, variables filled in: every provider, Grafana's intervals."""
    found = []
    for panel in dashboard["panels"]:
        if panel.get("type") == "row":
            continue
        queries = []
        for target in panel.get("targets", []):
            expr = str(target.get("expr", ""))
            expr = expr.replace("$__rate_interval", RATE_WINDOW).replace("$__interval", f"{SCRAPE_SECONDS}s")
            expr = expr.replace("$__range", f"{range_seconds}s").replace("$provider", ".*")
            queries.append((expr, str(target.get("legendFormat", ""))))
        found.append(Panel(str(panel.get("title", "")), str(panel.get("type", "")), panel["gridPos"], queries))
    return found


def legend(template: str, metric: dict[str, str]) -> str:
    text = template
    for name, value in metric.items():
        text = text.replace("{{" + name + "}}", value)
    return text if template and "{{" not in text else (", ".join(metric.values()) or "value")


def query_panels(prometheus: str, found: list[Panel], start: float, end: float) -> None:
    for panel in found:
        for expr, template in panel.queries:
            answer = httpx.get(
                f"{prometheus}/api/v1/query_range",
                params={"query": expr, "start": start, "end": end, "step": 2},
                timeout=30,
            ).json()
            if answer.get("status") != "success":
                raise RuntimeError(f"{panel.title}: {expr}: {answer.get('error')}")
            for result in answer["data"]["result"]:
                times = [float(at) - start for at, _ in result["values"]]
                values = [float(value) for _, value in result["values"]]
                panel.series.append((legend(template, result["metric"]), times, values))


def draw(found: list[Panel], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(panel.grid["y"] + panel.grid["h"] for panel in found)
    figure = plt.figure(figsize=(24, rows * 0.42), dpi=70)
    figure.suptitle(title, fontsize=16, y=0.995)
    grid = figure.add_gridspec(rows, 24, hspace=1.4, wspace=0.9, top=0.97, bottom=0.02, left=0.03, right=0.99)
    for panel in found:
        g = panel.grid
        axes = figure.add_subplot(grid[g["y"] : g["y"] + g["h"] - 1, g["x"] : g["x"] + g["w"]])
        axes.set_title(panel.title, fontsize=10, loc="left")
        if not panel.series:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="grey")
        elif panel.kind == "stat":
            last = sum(values[-1] for _, _, values in panel.series if values)
            axes.text(0.5, 0.5, f"{last:.4g}", ha="center", va="center", transform=axes.transAxes, fontsize=28)
            axes.set_xticks([])
        else:
            for name, times, values in panel.series[:12]:
                axes.plot(times, values, label=name[:40], linewidth=1.2)
            axes.legend(fontsize=7, loc="upper left")
            axes.set_xlabel("seconds into the run", fontsize=7)
        axes.tick_params(labelsize=7)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "test-artifacts" / "dashboard.png")
    args = parser.parse_args()
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is needed: infra/local/ensure-system-deps.sh --test installs it")
    chaos = load_bench("chaos")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        exporter_port, prometheus_port = free_port(), free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            f"global: {{scrape_interval: {SCRAPE_SECONDS}s, evaluation_interval: {SCRAPE_SECONDS}s}}\n"
            f"rule_files: [{ALERTS}]\n"
            f"scrape_configs: [{{job_name: genqueue, static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]}}]\n"
        )
        argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}"]
        argv += [f"--web.listen-address=127.0.0.1:{prometheus_port}"]
        prometheus = ServerProcess(argv, workdir / "prometheus.log")
        try:
            prometheus.wait_until(lambda: port_open(prometheus_port), what="prometheus")

            def start_exporter(stack: LocalStack) -> None:
                argv = [str(BIN / "genqueue"), "metrics", "serve", "--port", str(exporter_port)]
                stack._start("metrics", argv, port=exporter_port)

            (workdir / "chaos").mkdir()
            started = time.time()
            report = chaos.run_chaos(args.jobs, True, workdir / "chaos", timeout=240.0, on_stack=start_exporter)
            # the run's stack (the exporter with it) is stopped by now: the picture ends at its last scrape
            ended = time.time() - 2 * SCRAPE_SECONDS
            url = f"http://127.0.0.1:{prometheus_port}"
            found = panels(json.loads(DASHBOARD.read_text()), int(ended - started))
            query_panels(url, found, started, ended)
            alerts = httpx.get(f"{url}/api/v1/query", params={"query": "ALERTS", "time": ended}, timeout=10).json()
        finally:
            prometheus.stop()
    print(report.table())
    draw(found, args.out, f"genqueue over a chaos run: {report.enqueued} jobs, {int(ended - started)} s")
    print(f"{'panel':60} series")
    for panel in found:
        print(f"{panel.title[:60]:60} {len(panel.series) or 'no data'}")
    states = sorted({f"{a['metric']['alertname']} ({a['metric']['alertstate']})" for a in alerts["data"]["result"]})
    print("alerts at the end of the run: " + (", ".join(states) or "none"))
    print(f"dashboard written to {args.out}; {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
