"""Alert rules, their unit tests, runbooks and the dashboard, checked with the
real Prometheus parser (`promtool`) and against the metrics the operator serves."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from contactsync.controller import metrics
from contactsync.controller.tracking import FinishedRun
from tests.observability import (
    DASHBOARD,
    REPO,
    RULE_TESTS,
    RULES,
    RUNBOOKS,
    alert_rules,
    dashboard,
    metric_names,
    panel_queries,
)
from tests.testbed.prometheus import promtool


def run_promtool(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(promtool()), *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_parse() -> None:
    out = run_promtool("check", "rules", str(RULES))
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


def test_rules_unit_tests_pass() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for rule in alert_rules():
        outcomes = {bool(c["exp_alerts"]) for c in cases if c["alertname"] == rule["alert"]}
        assert outcomes == {True, False}, f"{rule['alert']}: needs a firing and a quiet case"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_has_a_runbook(rule: dict[str, str]) -> None:
    url = rule["annotations"]["runbook_url"]
    assert url == f"docs/runbooks/{rule['alert']}.md"
    page = (REPO / url).read_text()
    for section in ("## What it means", "## How to confirm", "## How to fix"):
        assert section in page, f"{url}: missing {section!r}"
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["alert"] in (RUNBOOKS / "README.md").read_text()


def test_plain_files_are_the_charts_files() -> None:
    assert (REPO / "deploy" / "prometheus" / "contactsync.rules.yaml").read_bytes() == (
        RULES.read_bytes()
    )
    assert (REPO / "dashboards" / "contactsync.json").read_bytes() == DASHBOARD.read_bytes()


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every panel's PromQL through Prometheus' own parser (as recording rules)."""
    queries = panel_queries(dashboard())
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard_panel_{n}", "expr": expr}
                    for n, (_, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "panels.yaml"
    path.write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(queries)} rules found" in run_promtool("check", "rules", str(path))


def test_dashboard_has_overview_and_per_sync_views() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "namespace", "name"} <= set(variables)
    titles = {p["title"] for p in board["panels"]}
    for overview in (
        "Syncs ready",
        "Syncs failing",
        "Records per hour",
        "Rejects per hour by reason",
        "Time since last success",
    ):
        assert overview in titles
    per_sync = [p for p in board["panels"] if "$namespace" in str(p.get("targets"))]
    assert len(per_sync) >= 6
    for panel in per_sync:
        for target in panel["targets"]:
            assert 'namespace="$namespace", name="$name"' in target["expr"], panel["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def served_metric_names() -> set[str]:
    """Every sample name the operator can serve, from a registry fed a ContactSync."""
    collector = metrics.ContactSyncMetrics()
    collector.observe(
        {
            "metadata": {
                "namespace": "n",
                "name": "x",
                "generation": 1,
                "creationTimestamp": "2026-11-27T09:00:00Z",
            },
            "spec": {
                "source": {"type": "csv", "path": "/in.csv"},
                "destination": {
                    "type": "postgres",
                    "dsnSecretRef": {"name": "d", "key": "dsn"},
                    "table": "t",
                },
                "schedule": {"intervalSeconds": 3600},
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "lastSync": {
                    "startedAt": "2026-11-27T10:00:00Z",
                    "finishedAt": "2026-11-27T10:01:00Z",
                    "failure": "X",
                },
                "lastSuccessAt": "2026-11-27T10:00:00Z",
                "nextRunAt": "2026-11-27T11:00:00Z",
            },
        }
    )
    collector.count_runs(
        "n",
        "x",
        [FinishedRun("r", "COMPLETED", None, "2026-11-27T10:00:00Z", {"reasons": {"a": 1}})],
    )
    metrics.RECONCILE_DURATION.labels("reconcile")
    metrics.KUBERNETES_ERRORS.labels("Secret", "read", "403")
    metrics.PREFECT_REQUESTS.labels("read_work_pool", "success")
    metrics.RECONCILES.labels("reconcile", "success")
    text = generate_latest(metrics.REGISTRY).decode() + generate_latest(collector).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def test_rules_and_dashboard_use_only_metrics_the_operator_serves() -> None:
    served = served_metric_names()
    used = metric_names(RULES.read_text()) | metric_names(DASHBOARD.read_text())
    unknown = {name for name in used if name not in served}
    assert not unknown, f"queried but never served: {sorted(unknown)}"
    assert len(used) >= 12
