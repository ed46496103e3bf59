"""Draw the dashboard's main panels from a real Prometheus, as a PNG.

No Grafana server can run where this project is built, so this renders what
the Grafana dashboard (dashboards/contactsync.json) would show, from the same
queries, with matplotlib:

    python scripts/render_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --namespace sales --name crm --minutes 10 --out docs/dashboard.png

The end-to-end test tests/e2e/test_observability.py runs it against the test
bed after real syncs, and CONTACTSYNC_DASHBOARD_PNG=docs/dashboard.png makes
that run refresh the picture the README shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates
import matplotlib.pyplot as plt

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "dashboards" / "contactsync.json"
# The panels drawn, in reading order: the overview first, then one sync.
MAIN_PANELS = (
    "Syncs ready",
    "Syncs failing",
    "Prefect reachable",
    "Records per hour",
    "Rejects per hour by reason",
    "Runs per hour by state",
    "Time since last success",
    "Reconciles by result",
    "Last run records",
)

Query = Callable[[str, dict[str, Any]], list[dict[str, Any]]]


def prometheus_query(url: str) -> Query:
    def query(expr: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        path = "/api/v1/query_range" if "step" in params else "/api/v1/query"
        body = httpx.get(f"{url}{path}", params={"query": expr, **params}, timeout=30).json()
        if body.get("status") != "success":
            raise RuntimeError(f"{expr}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    return query


def _expr(target: dict[str, Any], variables: dict[str, str]) -> str:
    expr = str(target["expr"])
    for name, value in variables.items():
        expr = expr.replace(name, value)
    return expr


def _legend(target: dict[str, Any], metric: dict[str, str]) -> str:
    legend = str(target.get("legendFormat") or "")
    for key, value in metric.items():
        legend = legend.replace("{{" + key + "}}", value)
    return legend or ", ".join(f"{k}={v}" for k, v in metric.items() if k != "__name__") or "value"


def render(query: Query, out: Path, namespace: str, name: str, minutes: float) -> list[str]:
    """Draw MAIN_PANELS into `out`; returns the titles of panels that had data."""
    board = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: p for p in board["panels"] if p.get("targets")}
    variables = {"$__rate_interval": "1m", "$namespace": namespace, "$name": name}
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, (end - start) / 200)
    figure, axes = plt.subplots(3, 3, figsize=(15, 9.5), layout="constrained")
    figure.suptitle(
        f"ContactSync — {namespace}/{name} — "
        f"{datetime.fromtimestamp(end, UTC):%Y-%m-%d %H:%M} UTC, last {minutes:.0f} min",
        fontsize=13,
    )
    with_data = []
    for ax, title in zip(axes.flat, MAIN_PANELS, strict=True):
        panel = panels[title]
        ax.set_title(title, fontsize=11, loc="left")
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        drawn = False
        for target in panel["targets"]:
            expr = _expr(target, variables)
            if panel["type"] == "timeseries":
                for series in query(expr, {"start": start, "end": end, "step": step}):
                    stamps = [datetime.fromtimestamp(float(t), UTC) for t, _ in series["values"]]
                    values = [float(v) for _, v in series["values"]]
                    ax.plot(stamps, values, label=_legend(target, series["metric"]))
                    drawn = True
                clock = "%H:%M" if minutes > 30 else "%H:%M:%S"
                ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter(clock))
                ax.tick_params(axis="x", labelsize=8)
            else:
                results = query(expr, {"time": end})
                if panel["type"] == "stat" and results:
                    value = float(results[0]["value"][1])
                    text = {"0": "unreachable", "1": "reachable"} if "Prefect" in title else {}
                    shown = text.get(f"{value:g}", f"{value:g}")
                    ax.text(0.5, 0.45, shown, ha="center", va="center", fontsize=40)
                    ax.set_axis_off()
                    drawn = True
                elif results:
                    labels = [_legend(target, r["metric"]) for r in results]
                    values = [float(r["value"][1]) for r in results]
                    if unit == "s" and max(values) > 7200:  # seconds are unreadable here
                        values, unit = [v / 3600 for v in values], "h"
                    ax.barh(labels, values)
                    ax.invert_yaxis()
                    drawn = True
        if panel["type"] == "timeseries" and drawn:
            ax.legend(fontsize=8, loc="upper left")
            ax.set_ylim(bottom=0)  # counts and rates: a zoomed-in axis would exaggerate noise
        if unit in ("s", "h") and drawn and panel["type"] != "stat":
            ax.set_xlabel({"s": "seconds", "h": "hours"}[unit])
        if drawn:
            with_data.append(title)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", color="grey")
            ax.set_axis_off()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return with_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard.png")
    args = parser.parse_args(argv)
    drawn = render(
        prometheus_query(args.prometheus.rstrip("/")),
        args.out,
        args.namespace,
        args.name,
        args.minutes,
    )
    print(f"{args.out}: {len(drawn)} of {len(MAIN_PANELS)} panels with data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
