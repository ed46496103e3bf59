"""The install paths applied to the real API server with `kubectl apply --server-side`:
the plain manifests (`-k deploy/`), and the chart rendered with every optional
part on and in cluster-wide mode. (What the installed RBAC allows is proven in
test_rbac.py.) Also, the Argo CD health check's test objects and the Argo CD
ContactSyncs are valid ContactSyncs for the real CRD."""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.install.chart import CLUSTER_WIDE, FULL, REPO, render
from tests.testbed import TestBed, tools

from .conftest import GROUP, PLURAL, VERSION

DEPLOY = REPO / "deploy"
ARGOCD = REPO / "argocd"
# Objects other e2e modules share: left in place. Everything else is deleted, so
# that no field stays owned by this test's field manager (a later server-side
# apply of the same object with other values would conflict).
SHARED = {"CustomResourceDefinition", "Namespace"}


def owned(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] not in SHARED
        and (d["kind"], d["metadata"]["name"]) != ("ClusterRole", "contactsync-prefect-worker")
    ]


@pytest.fixture
def namespace(bed: TestBed, crd: None) -> Iterator[str]:
    name = f"chart-{uuid.uuid4().hex[:8]}"
    bed.kube.kubectl("create", "namespace", name)
    yield name
    bed.kube.kubectl("delete", "namespace", name, "--wait=false")


def apply(bed: TestBed, docs: list[dict[str, Any]], path: Path) -> None:
    path.write_text(yaml.safe_dump_all(docs))
    result = bed.kube.kubectl(
        "apply", "--server-side", "--field-manager=chart-test", "-f", str(path), check=False
    )
    assert result.returncode == 0, result.stderr


def stored(bed: TestBed, docs: list[dict[str, Any]], path: Path) -> list[str]:
    """Every object read back from the API server (not only accepted by it)."""
    path.write_text(yaml.safe_dump_all(docs))
    result = bed.kube.kubectl("get", "-o", "name", "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_plain_manifests_apply_server_side(bed: TestBed, crd: None) -> None:
    result = bed.kube.kubectl(
        "apply", "--server-side", "--field-manager=chart-test", "-k", str(DEPLOY), check=False
    )
    assert result.returncode == 0, result.stderr
    built = subprocess.run(
        [str(tools.kubectl()), "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(built) if d]
    assert len(result.stdout.strip().splitlines()) == len(docs)  # one "serverside-applied" each
    try:
        assert len(stored(bed, docs, Path(bed.root) / "deploy-all.yaml")) == len(docs)
    finally:
        path = Path(bed.root) / "deploy-owned.yaml"
        path.write_text(yaml.safe_dump_all(owned(docs)))
        bed.kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(path))
        bed.kube.kubectl("delete", "namespace", "contactsync-apps", "--wait=false")


@pytest.fixture(scope="module")
def monitoring_crds(bed: TestBed) -> None:
    """The Prometheus operator's ServiceMonitor and PrometheusRule CRDs, so the
    chart's monitoring objects meet their real schemas."""
    for crd in tools.prometheus_operator_crds():
        bed.kube.kubectl("apply", "--server-side", "-f", str(crd))
    for plural in ("servicemonitors", "prometheusrules"):
        bed.kube.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            f"crd/{plural}.monitoring.coreos.com",
        )


@pytest.mark.parametrize("variant", ["full", "cluster-wide"])
def test_chart_applies_server_side(
    bed: TestBed, namespace: str, monitoring_crds: None, variant: str
) -> None:
    """A release of its own (names, worker role) so it cannot disturb the other tests;
    in `full`, its ServiceMonitor and PrometheusRule too."""
    values = copy.deepcopy(FULL if variant == "full" else CLUSTER_WIDE)
    values.setdefault("watch", {})
    if variant == "full":
        values["watch"]["namespaces"] = [namespace]
    values["workloads"] = {"workerClusterRole": f"{namespace}-worker"}
    docs = render(values, "--include-crds", release=namespace, namespace=namespace)
    monitoring = [d["kind"] for d in docs if d["apiVersion"] == "monitoring.coreos.com/v1"]
    assert sorted(monitoring) == (["PrometheusRule", "ServiceMonitor"] if variant == "full" else [])
    ours = docs
    path = Path(bed.root) / f"chart-{namespace}.yaml"
    apply(bed, ours, path)
    try:
        assert len(stored(bed, ours, Path(bed.root) / f"read-{namespace}.yaml")) == len(ours)
    finally:
        path.write_text(yaml.safe_dump_all(owned(ours)))
        bed.kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(path))


def contactsyncs() -> list[tuple[str, dict[str, Any]]]:
    check = ARGOCD / "resource_customizations" / "contactsync.dev" / "ContactSync" / "testdata"
    found = [(p.name, yaml.safe_load(p.read_text())) for p in sorted(check.glob("*.yaml"))]
    found += [(p.name, yaml.safe_load(p.read_text())) for p in (ARGOCD / "contactsyncs").glob("c*")]
    return found


@pytest.mark.parametrize(("name", "body"), contactsyncs(), ids=[n for n, _ in contactsyncs()])
def test_argocd_objects_are_valid_contactsyncs(
    bed: TestBed, namespace: str, name: str, body: dict[str, Any]
) -> None:
    body = {**body, "metadata": {"name": body["metadata"]["name"]}}  # spec only, as a user's
    body.pop("status", None)
    with bed.kube.api_client() as api:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, dry_run="All"
        )
