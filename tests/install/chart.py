"""The chart, rendered by the real `helm template`, for the tests that check it."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.testbed import tools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "contactsync-operator"
RELEASE, NAMESPACE = "contactsync-operator", "contactsync-system"

# Every optional part switched on: Prefect key, metrics over TLS with client
# certificates, ServiceMonitor, PrometheusRule, dashboard, egress for syncs.
FULL: dict[str, Any] = {
    "watch": {"namespaces": ["sales", "marketing"]},
    "prefect": {"apiKeySecret": {"name": "prefect-operator-key", "key": "key"}},
    "metrics": {
        "tls": {"secretName": "contactsync-metrics-tls", "clientCASecret": {"name": "scraper-ca"}},
        "serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": False}},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    },
    "networkPolicy": {
        "syncEgress": [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 5432}]}],
    },
}
CLUSTER_WIDE: dict[str, Any] = {"watch": {"allNamespaces": True, "namespaces": []}}
VARIANTS = {"default": {}, "full": FULL, "cluster-wide": CLUSTER_WIDE}


def helm(*args: str, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm with `values` as a values file; the result, whatever its exit code."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values or {}, file)
        file.flush()
        return subprocess.run(
            [str(tools.helm()), *args, "--values", file.name],
            capture_output=True,
            text=True,
            timeout=120,
        )


def template(
    values: dict[str, Any] | None = None,
    *args: str,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> str:
    result = helm("template", release, str(CHART), f"--namespace={namespace}", *args, values=values)
    assert result.returncode == 0, result.stderr
    return result.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(values: dict[str, Any] | None = None, *args: str, **kwargs: str) -> list[dict[str, Any]]:
    return documents(template(values, *args, **kwargs))


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found
