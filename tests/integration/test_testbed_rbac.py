"""RBAC is really enforced: a ServiceAccount acting with its own token gets
exactly what a Role grants it, and kubectl's `auth can-i` agrees."""

from __future__ import annotations

import subprocess

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.testbed import TestBed, tools


def can_i(bed: TestBed, namespace: str, account: str, *query: str) -> bool:
    result = subprocess.run(
        [
            str(tools.kubectl()),
            f"--kubeconfig={bed.kube.kubeconfig}",
            "auth",
            "can-i",
            *query,
            "-n",
            namespace,
            f"--as=system:serviceaccount:{namespace}:{account}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() in {"yes", "no"}, result.stderr
    return result.stdout.strip() == "yes"


def status_of(call: object) -> int:
    try:
        call()  # type: ignore[operator]
    except ApiException as exc:
        return exc.status
    return 200


def test_serviceaccount_gets_exactly_the_secret_its_role_names(
    bed: TestBed, kube_admin: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_admin)
    rbac = client.RbacAuthorizationV1Api(kube_admin)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    for name in ("allowed", "forbidden"):
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"k": "v"}),
        )

    token = bed.kube.token_for(namespace, "reader")
    with bed.kube.api_client(token) as as_reader:
        reader = client.CoreV1Api(as_reader)
        assert status_of(lambda: reader.list_namespaced_secret(namespace)) == 403
        assert status_of(lambda: reader.read_namespaced_secret("allowed", namespace)) == 403
        assert not can_i(bed, namespace, "reader", "get", "secret/allowed")

        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-one"),
                rules=[
                    client.V1PolicyRule(
                        api_groups=[""],
                        resources=["secrets"],
                        resource_names=["allowed"],
                        verbs=["get"],
                    )
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="read-one"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read-one"
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
                ],
            ),
        )

        assert reader.read_namespaced_secret("allowed", namespace).data["k"] == "dg=="
        assert status_of(lambda: reader.read_namespaced_secret("forbidden", namespace)) == 403
        assert status_of(lambda: reader.list_namespaced_secret(namespace)) == 403
        assert status_of(lambda: reader.list_namespaced_secret("default")) == 403

    assert can_i(bed, namespace, "reader", "get", "secret/allowed")
    assert not can_i(bed, namespace, "reader", "get", "secret/forbidden")
    assert not can_i(bed, namespace, "reader", "list", "secrets")
    assert not can_i(bed, namespace, "reader", "create", "rolebindings")


def test_unknown_token_is_unauthenticated(bed: TestBed, namespace: str) -> None:
    with bed.kube.api_client("not-a-real-token") as forged, pytest.raises(ApiException) as denied:
        client.CoreV1Api(forged).list_namespaced_secret(namespace)
    assert denied.value.status == 401
