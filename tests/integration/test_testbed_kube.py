"""The Kubernetes part of the bed is a real API server: CRDs with schema and
CEL validation, watches with resourceVersions, RBAC, and garbage collection."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.testbed import TestBed, tools

MANIFESTS = Path(__file__).parent / "manifests"
GROUP, VERSION, PLURAL = "testbed.contactsync.dev", "v1", "widgets"


def wait_for(what: str, predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def widget(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"url": url, **spec},
    }


@pytest.fixture(scope="module")
def widget_crd(bed: TestBed) -> str:
    bed.kube.kubectl("apply", "--server-side", "-f", str(MANIFESTS / "widget-crd.yaml"))
    bed.kube.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/widgets.testbed.contactsync.dev",
    )
    return "widgets.testbed.contactsync.dev"


def test_server_reports_the_version_we_built(bed: TestBed) -> None:
    out = bed.kube.kubectl("version", "-o", "json").stdout
    assert f'"gitVersion": "{tools.KUBERNETES_VERSION}"' in out


def test_custom_resource_create_list_and_watch(
    widget_crd: str, kube_admin: client.ApiClient, namespace: str
) -> None:
    api = client.CustomObjectsApi(kube_admin)
    api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("first", "https://a.example")
    )
    listing = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert [item["metadata"]["name"] for item in listing["items"]] == ["first"]

    # A watch from the list's resourceVersion sees only what happens after it.
    seen: list[tuple[str, str]] = []

    def follow() -> None:
        stream = watch.Watch().stream(
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=20,
        )
        for event in stream:
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 2:
                return

    watcher = threading.Thread(target=follow)
    watcher.start()
    api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("second", "https://b.example")
    )
    api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "second")
    watcher.join(timeout=30)
    assert seen == [("ADDED", "second"), ("DELETED", "second")]


@pytest.mark.parametrize(
    ("spec_url", "extra", "field", "reason"),
    [
        ("http://plain.example", {}, "spec.url", "must be an https:// URL"),  # CEL rule
        ("https://ok.example", {"replicas": 11}, "spec.replicas", "less than or equal to 10"),
        ("https://ok.example", {"replicas": "three"}, "spec.replicas", "integer"),
    ],
)
def test_invalid_resource_rejected_with_field_named(
    widget_crd: str,
    kube_admin: client.ApiClient,
    namespace: str,
    spec_url: str,
    extra: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    api = client.CustomObjectsApi(kube_admin)
    with pytest.raises(ApiException) as rejected:
        api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, widget("bad", spec_url, **extra)
        )
    assert rejected.value.status == 422
    assert field in rejected.value.body
    assert reason in rejected.value.body


def test_kubectl_apply_names_the_field_of_a_missing_required_value(
    widget_crd: str, bed: TestBed, namespace: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        f"apiVersion: {GROUP}/{VERSION}\nkind: Widget\n"
        f"metadata: {{name: nourl, namespace: {namespace}}}\nspec: {{replicas: 1}}\n"
    )
    result = bed.kube.kubectl("apply", "-f", str(manifest), check=False)
    assert result.returncode != 0
    assert "spec.url: Required value" in result.stderr


def test_owned_configmap_is_garbage_collected_with_its_owner(
    widget_crd: str, kube_admin: client.ApiClient, namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_admin)
    core = client.CoreV1Api(kube_admin)
    owner = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, widget("owner", "https://o.example")
    )
    reference = client.V1OwnerReference(
        api_version=f"{GROUP}/{VERSION}",
        kind="Widget",
        name="owner",
        uid=owner["metadata"]["uid"],
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="child", owner_references=[reference])
        ),
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "owner")

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for("the garbage collector to delete the owned ConfigMap", child_gone)


def test_namespace_deletion_completes(kube_admin: client.ApiClient) -> None:
    core = client.CoreV1Api(kube_admin)
    name = f"doomed-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(
        name, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content"))
    )
    core.delete_namespace(name)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for("the namespace controller to finish deleting the namespace", namespace_gone)


def test_serviceaccount_controller_creates_default_account(
    kube_admin: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_admin)

    def has_default() -> bool:
        try:
            core.read_namespaced_service_account("default", namespace)
        except ApiException:
            return False
        return True

    wait_for("the default ServiceAccount", has_default)
