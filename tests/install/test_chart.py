"""The Helm chart, rendered by the real helm: lint, Kubernetes schemas, the values
schema, and the contract with the operator (arguments, environment, RBAC).

Pod security and best practice are also scanned by trivy and checkov
(test_scanners.py); applying to a real API server is tests/e2e/test_chart_apply.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from contactsync.controller import desired
from contactsync.controller.settings import Settings
from tests.testbed import tools
from tests.testbed.prometheus import promtool

from .chart import CHART, CLUSTER_WIDE, FULL, NAMESPACE, REPO, VARIANTS, helm, only, render

KUBERNETES = tools.KUBERNETES_VERSION.lstrip("v")
# Kinds of CRDs the API server's own schemas do not cover (Prometheus operator).
FOREIGN_GROUPS = {"monitoring.coreos.com/v1"}
HANDLERS = "contactsync.controller.handlers"


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict(variant: str) -> None:
    result = helm("lint", "--strict", str(CHART), values=VARIANTS[variant])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_manifests_match_the_kubernetes_schemas(variant: str) -> None:
    docs = render(VARIANTS[variant], "--include-crds")
    checked = set()
    for doc in docs:
        if doc["apiVersion"] in FOREIGN_GROUPS:
            continue
        # Strict: an unknown or misplaced field is an error, not a silent drop.
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        checked.add(doc["kind"])
    assert checked >= {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "Deployment",
        "Service",
        "NetworkPolicy",
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2}, "/replicas"),
        ({"watch": {"namespaces": []}}, "/watch/namespaces"),
        ({"watch": {"namespaces": ["Not_A_Namespace"]}}, "/watch/namespaces/0"),
        ({"prefect": {"apiUrl": "prefect.example:4200"}}, "/prefect/apiUrl"),
        ({"prefect": {"apiKeySecret": {"name": "k", "key": "a b"}}}, "/prefect/apiKeySecret/key"),
        ({"metrics": {"port": 8081}}, "/metrics/port"),
        ({"metrics": {"tls": {"clientCASecret": {"name": "ca"}}}}, "/metrics/tls/secretName"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"networkPolicy": {"apiServer": {"cidrs": ["api"]}}}, "/networkPolicy/apiServer/cidrs/0"),
        ({"resyncSeconds": 1}, "/resyncSeconds"),
        ({"replicaCount": 1}, "replicaCount"),  # a typo is an error, not ignored
    ],
)
def test_bad_values_fail_with_the_value_named(values: dict[str, Any], message: str) -> None:
    result = helm("template", "x", str(CHART), values=values)
    assert result.returncode != 0, result.stdout
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_chart_crd_is_the_generated_one() -> None:
    """`make crd` writes both; the chart carries no hand-edited copy."""
    (chart_crd,) = (CHART / "crds").iterdir()
    assert chart_crd.read_bytes() == (REPO / "crds" / chart_crd.name).read_bytes()


@pytest.mark.parametrize("variant", VARIANTS)
def test_operator_pod_is_restricted(variant: str) -> None:
    deployment = only(render(VARIANTS[variant]), "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = operator_container([deployment])
    assert (spec["replicas"], spec["strategy"]) == (1, {"type": "Recreate"})
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsUser"] >= 10000
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert all(
        mount.get("readOnly") for mount in container["volumeMounts"] if mount["name"] != "tmp"
    )
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)


def test_image_by_tag_or_by_digest() -> None:
    assert operator_container(render())["image"] == "contactsync/operator:0.1.0"
    pinned = "contactsync/operator@sha256:" + "0" * 64
    assert operator_container(render({"image": {"repository": pinned}}))["image"] == pinned


def test_no_pod_disruption_budget_for_the_single_replica() -> None:
    """replicas is fixed at 1 (no peering): a PDB would only block node drains."""
    assert [d for d in render(FULL) if d["kind"] == "PodDisruptionBudget"] == []


def test_operator_command_in_both_modes() -> None:
    namespaced = operator_container(render(FULL))["command"]
    assert namespaced[:5] == ["kopf", "run", "--standalone", "-m", HANDLERS]
    assert [a for a in namespaced if a.startswith("--namespace")] == [
        "--namespace=sales",
        "--namespace=marketing",
    ]
    assert namespaced[-1] == "--liveness=http://0.0.0.0:8081/healthz"
    cluster_wide = operator_container(render(CLUSTER_WIDE))["command"]
    assert "--all-namespaces" in cluster_wide
    assert not [a for a in cluster_wide if a.startswith("--namespace")]


def test_rbac_bindings_in_both_modes() -> None:
    docs = render(FULL)
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["marketing", "sales"]
    assert not [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    for binding in bindings:
        assert binding["roleRef"]["name"] == "contactsync-operator"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "contactsync-operator", "namespace": NAMESPACE}
        ]
    docs = render(CLUSTER_WIDE)
    assert not [d for d in docs if d["kind"] == "RoleBinding"]
    assert only(docs, "ClusterRoleBinding")["roleRef"]["name"] == "contactsync-operator"


def test_no_wildcards_and_bind_only_the_worker_role() -> None:
    roles = {d["metadata"]["name"]: d for d in render(FULL) if d["kind"] == "ClusterRole"}
    assert set(roles) == {"contactsync-operator", "contactsync-prefect-worker"}
    for role in roles.values():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (role["metadata"]["name"], rule)
    operator_rules = roles["contactsync-operator"]["rules"]
    assert not [r for r in operator_rules if "delete" in r["verbs"]]
    (bind,) = [r for r in operator_rules if "bind" in r["verbs"]]
    assert bind == {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": ["contactsync-prefect-worker"],
    }


def test_nothing_secret_is_rendered(tmp_path: Path) -> None:
    """Credentials are referenced by Secret name; the operator reads its key from a file."""
    docs = render(FULL)
    assert not [d for d in docs if d["kind"] == "Secret"]
    container = operator_container(docs)
    assert all("valueFrom" not in variable for variable in container["env"])
    volumes = only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    secrets = {v["secret"]["secretName"] for v in volumes if "secret" in v}
    assert secrets == {"prefect-operator-key", "contactsync-metrics-tls", "scraper-ca"}


def test_operator_settings_read_the_rendered_environment(tmp_path: Path) -> None:
    """The chart's variables are the ones the operator's Settings read."""
    container = operator_container(render(FULL))
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    key_file = tmp_path / "key"
    key_file.write_text("pnu_from-the-mounted-secret\n")
    assert env["CONTACTSYNC_PREFECT_API_KEY_FILE"] == "/etc/contactsync/prefect/key"
    settings = Settings.from_env({**env, "CONTACTSYNC_PREFECT_API_KEY_FILE": str(key_file)})
    assert settings == Settings(
        prefect_api_url="http://prefect-server.prefect.svc.cluster.local:4200/api",
        prefect_api_key="pnu_from-the-mounted-secret",
        sync_image="contactsync/sync:0.1.0",
        worker_image="contactsync/worker:0.1.0",
        worker_cluster_role="contactsync-prefect-worker",
        worker_api_secret="contactsync-prefect-api",
        prefect_write_concurrency=2,
        resync_seconds=300.0,
        retry_seconds=15.0,
        metrics_cert_file="/etc/contactsync/metrics-tls/tls.crt",
        metrics_key_file="/etc/contactsync/metrics-tls/tls.key",
        metrics_client_ca_file=env["CONTACTSYNC_METRICS_TLS_CLIENT_CA_FILE"],
    )
    # The metrics contract (issue 5): port, and TLS files from the mounted Secrets.
    assert env["CONTACTSYNC_METRICS_PORT"] == "8080"
    assert env["CONTACTSYNC_METRICS_TLS_CERT_FILE"] == "/etc/contactsync/metrics-tls/tls.crt"
    assert env["CONTACTSYNC_METRICS_TLS_KEY_FILE"] == "/etc/contactsync/metrics-tls/tls.key"
    assert env["CONTACTSYNC_METRICS_TLS_CLIENT_CA_FILE"] == (
        "/etc/contactsync/metrics-client-ca/ca.crt"
    )
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


def test_metrics_can_be_switched_off() -> None:
    docs = render({"metrics": {"port": 0, "serviceMonitor": {"enabled": True}}})
    container = operator_container(docs)
    assert [p["name"] for p in container["ports"]] == ["health"]
    assert not [d for d in docs if d["kind"] in ("Service", "ServiceMonitor")]
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    assert policy["spec"]["ingress"] == []


def test_service_monitor_scrapes_https_with_tls() -> None:
    monitor = only(render(FULL), "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["scheme"]) == ("metrics", "https")
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": False}
    plain = only(render({"metrics": {"serviceMonitor": {"enabled": True}}}), "ServiceMonitor")
    assert plain["spec"]["endpoints"][0]["scheme"] == "http"


def test_prometheus_rule_and_dashboard_carry_the_files(tmp_path: Path) -> None:
    docs = render(FULL)
    rules = only(docs, "PrometheusRule")["spec"]
    files = CHART / "files"
    assert rules == yaml.safe_load((files / "prometheus" / "contactsync.rules.yaml").read_text())
    # The rendered rules are valid Prometheus rules (the real promtool).
    rendered = tmp_path / "rules.yaml"
    rendered.write_text(yaml.safe_dump(rules))
    check = subprocess.run(
        [str(promtool()), "check", "rules", str(rendered)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    dashboard = only(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["contactsync.json"]) == json.loads(
        (files / "dashboards" / "contactsync.json").read_text()
    )


def test_network_policies() -> None:
    docs = render(FULL)
    policies = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["spec"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
    }
    assert set(policies) == {
        (NAMESPACE, "contactsync-operator"),
        *[
            (ns, name)
            for ns in ("sales", "marketing")
            for name in ("contactsync-prefect-worker", "contactsync-sync-jobs")
        ],
    }
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"]
    operator = policies[(NAMESPACE, "contactsync-operator")]
    ports = sorted(p["port"] for rule in operator["egress"] for p in rule["ports"])
    assert ports == [53, 53, 443, 4200, 6443]  # DNS (UDP, TCP), API server, Prefect
    sync = policies[("sales", "contactsync-sync-jobs")]
    assert sync.get("ingress") is None  # no one connects to a sync pod
    assert sync["egress"][-1] == FULL["networkPolicy"]["syncEgress"][0]
    assert not any("ipBlock" in peer for rule in sync["egress"][:-1] for peer in rule["to"])
    # The worker policy selects the pods of the Deployment the operator really builds.
    worker = desired.worker_deployment("sales", "pool", Settings("http://prefect"), [])
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    selector = policies[("sales", "contactsync-prefect-worker")]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    # Cluster-wide: the workloads' namespaces are unknown, only the operator's policy.
    cluster_wide = [d for d in render(CLUSTER_WIDE) if d["kind"] == "NetworkPolicy"]
    assert [d["metadata"]["name"] for d in cluster_wide] == ["contactsync-operator"]
    switched_off = render({"networkPolicy": {"enabled": False}})
    assert not [d for d in switched_off if d["kind"] == "NetworkPolicy"]
