"""The production path: a real Prefect kubernetes worker (prefect-kubernetes)
turns a flow run of the operator's deployment into a Job on the API server.
No kubelet runs the Job; what matters is the Job the worker submits."""

from __future__ import annotations

import os
import signal
from typing import Any

from kubernetes import client

from tests.testbed import TestBed

from .conftest import Operator, wait_for
from .test_operator import SPEC


def test_flow_run_becomes_a_restricted_job(bed: TestBed, operator: Operator) -> None:
    ns = operator.namespace
    operator.secret("warehouse", {"dsn": "postgresql://warehouse.example/db?password=s3cret"})
    operator.apply("crm", SPEC)
    operator.wait_condition("crm", "Ready", "True")
    pool = operator.get("crm")["status"]["prefect"]["workPoolName"]
    worker = bed.prefect.start_worker(pool, "kubernetes", KUBECONFIG=str(bed.kube.kubeconfig))
    try:
        operator.patch("crm", {"metadata": {"annotations": {"contactsync.dev/sync-now": "1"}}})
        batch = client.BatchV1Api(operator.api)
        jobs: list[Any] = wait_for(
            "the worker to submit a Job", lambda: batch.list_namespaced_job(ns).items, timeout=120
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)

    job = jobs[0]
    pod = job.spec.template.spec
    assert pod.service_account_name == "crm-sync"
    assert pod.automount_service_account_token is False
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    container = pod.containers[0]
    sc = container.security_context
    assert sc.read_only_root_filesystem is True
    assert sc.allow_privilege_escalation is False
    assert sc.capabilities.drop == ["ALL"]
    assert sc.seccomp_profile.type == "RuntimeDefault"
    # Credentials only as Secret references: volumes of the named Secrets, no values.
    secrets = sorted(v.secret.secret_name for v in pod.volumes if v.secret)
    assert secrets == ["crm-keys", "warehouse"]
    assert all(m.read_only for m in container.volume_mounts)
    rendered = str(client.ApiClient().sanitize_for_serialization(job))
    assert "s3cret" not in rendered
    assert "warehouse.example" not in rendered
    for variable in container.env or []:
        assert variable.value is None or "s3cret" not in variable.value
