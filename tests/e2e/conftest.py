"""The operator, run for real (`kopf run`) against the test bed's API server
and Prefect server, in a namespace of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.testbed import TestBed
from tests.testbed.net import free_port

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "contactsync.dev_contactsyncs.yaml"
GROUP, VERSION, PLURAL = "contactsync.dev", "v1alpha1", "contactsyncs"
# Generated from the chart (make manifests; tests/install/test_manifests.py keeps it so).
WORKER_CLUSTER_ROLE = REPO / "deploy" / "rbac" / "worker.yaml"


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Operator:
    """A running operator process and handy accessors for one namespace."""

    def __init__(self, bed: TestBed, namespace: str, api: client.ApiClient) -> None:
        self.bed = bed
        self.namespace = namespace
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.log = Path(bed.root) / f"operator-{namespace}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.liveness_port = free_port()

    def start(
        self,
        kubeconfig: Path | None = None,
        *,
        all_namespaces: bool = False,
        kopf_args: list[str] | None = None,
        **env: str,
    ) -> None:
        """Run as admin, or as the identity of `kubeconfig` (e.g. the operator's ServiceAccount);
        `kopf_args` (what follows `kopf run`) replaces the default arguments."""
        environment = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig or self.bed.kube.kubeconfig),
            "CONTACTSYNC_PREFECT_API_URL": self.bed.prefect.api_url,
            "CONTACTSYNC_RESYNC_SECONDS": "5",
            "CONTACTSYNC_RETRY_SECONDS": "2",
            # Several operators run at once here: each serves /metrics on a port of its own.
            "CONTACTSYNC_METRICS_PORT": str(self.metrics_port),
            "CONTACTSYNC_METRICS_ADDRESS": "127.0.0.1",
            **env,
        }
        args = kopf_args or [
            "--standalone",
            "-m",
            "contactsync.controller.handlers",
            "--all-namespaces" if all_namespaces else f"--namespace={self.namespace}",
            # Kopf reads port 0 as 80: operators running at once would collide.
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", *args],
            env=environment,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def apply(self, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ContactSync",
            "metadata": {"name": name, **metadata},
            "spec": spec,
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return created

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return found

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body
        )

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        for condition in (self.get(name).get("status") or {}).get("conditions") or []:
            if condition["type"] == type_:
                return dict(condition)
        return None

    def wait_condition(
        self, name: str, type_: str, status: str, reason: str | None = None, timeout: float = 60.0
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any] | None:
            c = self.condition(name, type_)
            if c and c["status"] == status and (reason is None or c["reason"] == reason):
                return c
            return None

        try:
            found: dict[str, Any] = wait_for(f"{name} {type_}={status}", matches, timeout)
        except AssertionError:
            raise AssertionError(self.log.read_text()[-4000:]) from None
        return found

    def secret(self, name: str, data: dict[str, str]) -> None:
        self.core.create_namespaced_secret(
            self.namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data),
        )


@pytest.fixture(scope="module")
def crd(bed: TestBed) -> None:
    bed.kube.kubectl("apply", "-f", str(CRD))
    bed.kube.kubectl("apply", "-f", str(WORKER_CLUSTER_ROLE))
    bed.kube.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}"
    )


@pytest.fixture
def operator(bed: TestBed, crd: None) -> Iterator[Operator]:
    namespace = f"op-{uuid.uuid4().hex[:8]}"
    with bed.kube.api_client() as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        running = Operator(bed, namespace, api)
        running.start()
        try:
            yield running
        finally:
            running.stop()
