"""The operator end to end on the real API server and the real Prefect server."""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from contactsync.engine.keyring import Keyring
from tests.testbed import TestBed
from tests.testbed.prefect import PrefectServer

from .conftest import Operator, wait_for

SPEC: dict[str, Any] = {
    "source": {"type": "csv", "path": "/data/contacts.csv"},
    "destination": {
        "type": "postgres",
        "table": "contacts",
        "dsnSecretRef": {"name": "warehouse", "key": "dsn"},
    },
    "schedule": {"cron": "*/15 * * * *", "timezone": "UTC"},
}


def deployment(bed: TestBed, namespace: str, name: str) -> dict[str, Any] | None:
    with bed.prefect.client() as api:
        response = api.get(f"/deployments/name/contact-sync/{namespace}.{name}")
    return None if response.status_code == 404 else dict(response.json())


def work_pool(bed: TestBed, name: str) -> dict[str, Any] | None:
    with bed.prefect.client() as api:
        response = api.get(f"/work_pools/{name}")
    return None if response.status_code == 404 else dict(response.json())


def gone(read: Any) -> bool:
    try:
        read()
    except ApiException as exc:
        return exc.status == 404
    return False


def test_apply_reconciles_children_and_prefect_then_delete_cleans_up(
    bed: TestBed, operator: Operator
) -> None:
    ns = operator.namespace
    operator.secret("warehouse", {"dsn": "postgresql://warehouse.example/contacts"})
    operator.apply(
        "crm", {**SPEC, "serviceAccount": {"annotations": {"iam.example/role": "crm-sync"}}}
    )
    ready = operator.wait_condition("crm", "Ready", "True")
    assert ready["reason"] == "Reconciled"
    status = operator.get("crm")["status"]
    assert status["observedGeneration"] == operator.get("crm")["metadata"]["generation"]

    core, rbac, apps = (
        client.CoreV1Api(operator.api),
        client.RbacAuthorizationV1Api(operator.api),
        client.AppsV1Api(operator.api),
    )
    sync_sa = core.read_namespaced_service_account("crm-sync", ns)
    assert sync_sa.automount_service_account_token is False
    assert (sync_sa.metadata.annotations or {}) == {"iam.example/role": "crm-sync"}
    assert sync_sa.metadata.owner_references[0].kind == "ContactSync"
    binding = rbac.read_namespaced_role_binding("contactsync-worker", ns)
    assert binding.role_ref.kind == "ClusterRole"
    assert binding.role_ref.name == "contactsync-prefect-worker"
    worker = apps.read_namespaced_deployment(f"prefect-worker-contactsync-{ns}", ns)
    pod = worker.spec.template.spec
    assert pod.security_context.run_as_non_root is True
    container = pod.containers[0].security_context
    assert container.read_only_root_filesystem is True
    assert container.allow_privilege_escalation is False
    assert container.capabilities.drop == ["ALL"]
    keys = core.read_namespaced_secret("crm-keys", ns)
    assert "keyring.json" in keys.data
    assert not keys.metadata.owner_references  # keys outlive the sync on purpose
    assert status["keys"]["secretName"] == "crm-keys"

    pool = work_pool(bed, f"contactsync-{ns}")
    assert pool is not None
    job = pool["base_job_template"]["job_configuration"]["job_manifest"]["spec"]["template"]
    assert job["spec"]["automountServiceAccountToken"] is False
    assert job["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    live = deployment(bed, ns, "crm")
    assert live is not None
    assert status["prefect"]["deploymentId"] == live["id"]
    assert live["job_variables"]["service_account_name"] == "crm-sync"
    assert {m["mountPath"] for m in live["job_variables"]["secret_mounts"]} == {
        "/var/run/secrets/contactsync/crm-keys",
        "/var/run/secrets/contactsync/warehouse",
    }
    assert live["parameters"]["spec"]["destination"]["dsnSecretRef"] == {
        "name": "warehouse",
        "key": "dsn",
    }
    assert "warehouse.example" not in str(live)
    assert f"contactsync.dev/namespace={ns}" in live["tags"]
    assert [s["schedule"]["cron"] for s in live["schedules"]] == ["*/15 * * * *"]
    next_run = wait_for(
        "status.nextRunAt from Prefect's scheduled runs",
        lambda: operator.get("crm")["status"].get("nextRunAt"),
        timeout=40,
    )
    assert next_run.endswith(("00Z", "15Z", "30Z", "45Z", "+00:00"))
    events = core.list_namespaced_event(ns).items
    assert any(e.reason == "Reconciled" and e.involved_object.name == "crm" for e in events)

    operator.custom.delete_namespaced_custom_object(
        "contactsync.dev", "v1alpha1", ns, "contactsyncs", "crm"
    )
    wait_for("the Prefect deployment to be deleted", lambda: deployment(bed, ns, "crm") is None)
    wait_for("the work pool to be deleted", lambda: work_pool(bed, f"contactsync-{ns}") is None)
    wait_for(
        "the sync ServiceAccount to be garbage-collected",
        lambda: gone(lambda: core.read_namespaced_service_account("crm-sync", ns)),
    )
    wait_for(
        "the worker to be garbage-collected",
        lambda: gone(
            lambda: apps.read_namespaced_deployment(f"prefect-worker-contactsync-{ns}", ns)
        ),
    )
    assert core.read_namespaced_secret("crm-keys", ns).data  # still there


def test_no_op_resync_writes_nothing_and_a_schedule_change_writes_once(
    bed: TestBed, operator: Operator
) -> None:
    ns = operator.namespace
    operator.secret("warehouse", {"dsn": "x"})
    operator.apply("crm", SPEC)
    operator.wait_condition("crm", "Ready", "True")
    before = deployment(bed, ns, "crm")
    pool_before = work_pool(bed, f"contactsync-{ns}")
    assert before is not None
    assert pool_before is not None
    # Three resync periods (5 s each in tests) pass without a single write.
    time.sleep(16)
    after = deployment(bed, ns, "crm")
    assert after is not None
    assert after["updated"] == before["updated"]
    assert work_pool(bed, f"contactsync-{ns}")["updated"] == pool_before["updated"]  # type: ignore[index]

    operator.patch("crm", {"spec": {"schedule": {"cron": "0 * * * *", "timezone": "UTC"}}})
    changed = wait_for(
        "the new schedule in Prefect",
        lambda: (
            (d := deployment(bed, ns, "crm"))
            and [s["schedule"]["cron"] for s in d["schedules"]] == ["0 * * * *"]
            and d
        ),
    )
    time.sleep(11)
    final = deployment(bed, ns, "crm")
    assert final is not None
    assert final["updated"] == changed["updated"]  # exactly one update, not one per resync
    assert len(final["schedules"]) == 1


def test_suspend_pauses_the_deployment(bed: TestBed, operator: Operator) -> None:
    operator.secret("warehouse", {"dsn": "x"})
    operator.apply("crm", SPEC)
    operator.wait_condition("crm", "Ready", "True")
    operator.patch("crm", {"spec": {"suspend": True}})
    operator.wait_condition("crm", "Ready", "True", reason="Suspended")
    live = deployment(bed, operator.namespace, "crm")
    assert live is not None
    assert live["paused"] is True


def test_missing_secret_reported_then_recovered(bed: TestBed, operator: Operator) -> None:
    operator.apply("crm", SPEC)
    missing = operator.wait_condition("crm", "Ready", "False", reason="SecretNotFound")
    assert "warehouse" in missing["message"]
    operator.secret("warehouse", {"dsn": "x"})
    operator.wait_condition("crm", "Ready", "True", timeout=30)


@pytest.mark.parametrize("what", ["child", "prefect-deployment", "prefect-flow", "work-pool"])
def test_drift_is_repaired(bed: TestBed, operator: Operator, what: str) -> None:
    ns = operator.namespace
    operator.secret("warehouse", {"dsn": "x"})
    operator.apply("crm", SPEC)
    operator.wait_condition("crm", "Ready", "True")
    core = client.CoreV1Api(operator.api)
    if what == "child":
        core.delete_namespaced_service_account("crm-sync", ns)
        wait_for(
            "the sync ServiceAccount to come back",
            lambda: not gone(lambda: core.read_namespaced_service_account("crm-sync", ns)),
            timeout=30,
        )
    elif what in ("prefect-deployment", "prefect-flow"):
        # Deleting the flow takes its deployments with it, and the operator,
        # which remembers the flow's id, must notice and create both again.
        old = deployment(bed, ns, "crm")
        assert old is not None
        with bed.prefect.client() as api:
            if what == "prefect-flow":
                api.delete(f"/flows/{old['flow_id']}").raise_for_status()
            else:
                api.delete(f"/deployments/{old['id']}").raise_for_status()
        again = wait_for(
            "the deployment to come back", lambda: deployment(bed, ns, "crm"), timeout=30
        )
        assert again["id"] != old["id"]
        if what == "prefect-flow":
            assert again["flow_id"] != old["flow_id"]
        wait_for(
            "status to follow the new id",
            lambda: operator.get("crm")["status"]["prefect"]["deploymentId"] == again["id"],
            timeout=30,
        )
    else:
        with bed.prefect.client() as api:
            api.patch(f"/work_pools/contactsync-{ns}", json={"concurrency_limit": 99})
        wait_for(
            "the concurrency limit to be restored",
            lambda: (p := work_pool(bed, f"contactsync-{ns}")) and p["concurrency_limit"] == 1,
            timeout=30,
        )


def test_pause_annotation_stops_reconciliation_visibly(bed: TestBed, operator: Operator) -> None:
    ns = operator.namespace
    operator.secret("warehouse", {"dsn": "x"})
    operator.apply("crm", SPEC)
    operator.wait_condition("crm", "Ready", "True")
    operator.patch("crm", {"metadata": {"annotations": {"contactsync.dev/reconcile": "paused"}}})
    operator.wait_condition("crm", "ReconciliationPaused", "True")
    old = deployment(bed, ns, "crm")
    assert old is not None
    with bed.prefect.client() as api:
        api.delete(f"/deployments/{old['id']}")
    time.sleep(12)  # more than two resync periods: nothing is repaired while paused
    assert deployment(bed, ns, "crm") is None
    operator.patch("crm", {"metadata": {"annotations": {"contactsync.dev/reconcile": None}}})
    operator.wait_condition("crm", "ReconciliationPaused", "False")
    wait_for("the deployment to be restored", lambda: deployment(bed, ns, "crm"), timeout=30)


def test_rotate_keys_annotation_adds_a_primary_and_keeps_the_old_key(
    bed: TestBed, operator: Operator
) -> None:
    operator.secret("warehouse", {"dsn": "x"})
    operator.apply("crm", SPEC)
    operator.wait_condition("crm", "Ready", "True")
    first = operator.get("crm")["status"]["keys"]["primaryKeyId"]
    operator.patch("crm", {"metadata": {"annotations": {"contactsync.dev/rotate-keys": "r1"}}})
    second = wait_for(
        "a new primary key",
        lambda: (
            (k := operator.get("crm")["status"]["keys"])["primaryKeyId"] != first
            and k["primaryKeyId"]
        ),
    )
    secret = client.CoreV1Api(operator.api).read_namespaced_secret("crm-keys", operator.namespace)
    keyring = Keyring.from_json(base64.b64decode(secret.data["keyring.json"]))
    assert keyring.primary_id == second
    assert set(keyring.key_ids) == {first, second}
    time.sleep(6)  # the same annotation value is acted on once, not on every resync
    assert operator.get("crm")["status"]["keys"]["primaryKeyId"] == second


def test_deletion_waits_for_prefect_and_says_so(bed: TestBed, crd: None, tmp_path: Any) -> None:
    prefect = PrefectServer(tmp_path)
    prefect.start()
    prefect.wait()
    namespace = f"op-{uuid.uuid4().hex[:8]}"
    with bed.kube.api_client() as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        running = Operator(bed, namespace, api)
        running.start(CONTACTSYNC_PREFECT_API_URL=prefect.api_url)
        try:
            running.secret("warehouse", {"dsn": "x"})
            running.apply("crm", SPEC)
            running.wait_condition("crm", "Ready", "True")
            prefect.stop()
            running.custom.delete_namespaced_custom_object(
                "contactsync.dev", "v1alpha1", namespace, "contactsyncs", "crm"
            )
            running.wait_condition("crm", "Reconciling", "True", reason="PrefectUnavailable")
            events = client.CoreV1Api(api).list_namespaced_event(namespace).items
            assert any(e.reason == "PrefectUnavailable" and e.type == "Warning" for e in events)
            assert running.get("crm")["metadata"]["deletionTimestamp"]  # held by the finalizer
            prefect.start()
            prefect.wait()
            wait_for(
                "the deletion to complete", lambda: gone(lambda: running.get("crm")), timeout=60
            )
            with prefect.client() as http:
                found = http.get(f"/deployments/name/contact-sync/{namespace}.crm")
            assert found.status_code == 404
        finally:
            running.stop()
            prefect.stop()


def test_all_namespaces_mode(bed: TestBed, crd: None) -> None:
    namespaces = [f"all-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with bed.kube.api_client() as api:
        watcher = Operator(bed, namespaces[0], api)
        watcher.start(all_namespaces=True)
        try:
            syncs = []
            for namespace in namespaces:
                client.CoreV1Api(api).create_namespace(
                    client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
                )
                each = Operator(bed, namespace, api)
                each.log = watcher.log  # failures show the one operator's log
                each.secret("warehouse", {"dsn": "x"})
                each.apply("crm", SPEC)
                syncs.append(each)
            for each in syncs:
                each.wait_condition("crm", "Ready", "True", timeout=90)
                assert work_pool(bed, f"contactsync-{each.namespace}") is not None
        finally:
            watcher.stop()


def test_a_stale_field_on_a_child_is_removed_and_then_left_alone(
    bed: TestBed, operator: Operator
) -> None:
    """An env variable an older operator set (or someone added) is removed, and the
    object converges: no patch on every resync afterwards."""
    ns = operator.namespace
    operator.secret("warehouse", {"dsn": "x"})
    operator.apply("crm", SPEC)
    operator.wait_condition("crm", "Ready", "True")
    apps = client.AppsV1Api(operator.api)
    name = f"prefect-worker-contactsync-{ns}"
    live = apps.read_namespaced_deployment(name, ns)
    env = [*live.spec.template.spec.containers[0].env, client.V1EnvVar(name="STALE", value="1")]
    live.spec.template.spec.containers[0].env = env
    apps.replace_namespaced_deployment(name, ns, live)

    def env_names() -> list[str]:
        container = apps.read_namespaced_deployment(name, ns).spec.template.spec.containers[0]
        return [variable.name for variable in container.env]

    wait_for("the stale variable to be removed", lambda: "STALE" not in env_names(), timeout=30)
    generation = apps.read_namespaced_deployment(name, ns).metadata.generation
    time.sleep(11)  # two resync periods
    assert apps.read_namespaced_deployment(name, ns).metadata.generation == generation


def test_orphan_deletion_policy_keeps_the_prefect_objects(bed: TestBed, operator: Operator) -> None:
    ns = operator.namespace
    operator.secret("warehouse", {"dsn": "x"})
    operator.apply("crm", SPEC, annotations={"contactsync.dev/deletion-policy": "orphan"})
    operator.wait_condition("crm", "Ready", "True")
    operator.custom.delete_namespaced_custom_object(
        "contactsync.dev", "v1alpha1", ns, "contactsyncs", "crm"
    )
    wait_for("the ContactSync to be gone", lambda: gone(lambda: operator.get("crm")), timeout=60)
    assert deployment(bed, ns, "crm") is not None
    assert work_pool(bed, f"contactsync-{ns}") is not None
