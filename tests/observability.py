"""The alert rules and dashboard queries, as the tests read them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
FILES = REPO / "charts" / "contactsync-operator" / "files"
RULES = FILES / "prometheus" / "contactsync.rules.yaml"
RULE_TESTS = REPO / "tests" / "prometheus" / "contactsync.rules.test.yaml"
DASHBOARD = FILES / "dashboards" / "contactsync.json"
RUNBOOKS = REPO / "docs" / "runbooks"
METRIC = re.compile(r"\b(contactsync_[a-z_]+)\b")


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return found


def panel_queries(
    board: dict[str, Any], namespace: str = "default", name: str = "example"
) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with Grafana's variables filled in
    the way Grafana fills them."""
    values = {
        "$__rate_interval": "1m",
        "${datasource}": "prometheus",
        "$namespace": namespace,
        "$name": name,
    }
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in values.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def metric_names(text: str) -> set[str]:
    """The ContactSync metric names a query uses (histogram and counter suffixes kept)."""
    return set(METRIC.findall(text))
