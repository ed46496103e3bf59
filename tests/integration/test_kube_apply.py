"""The operator's create-or-patch against the real API server."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from contactsync.controller.kube_apply import KubeApplier
from tests.testbed import TestBed


def service_account(namespace: str, team: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "sync", "namespace": namespace, "annotations": {"team": team}},
        "automountServiceAccountToken": False,
    }


def connections(api: client.ApiClient) -> int:
    pools = api.rest_client.pool_manager.pools
    return sum(pools[key].num_connections for key in pools)


def test_writes_only_what_differs_over_one_reused_connection(bed: TestBed, namespace: str) -> None:
    with bed.kube.api_client() as api:
        kube = KubeApplier(api)
        assert kube.ensure(service_account(namespace, "crm")) == "created"
        assert kube.ensure(service_account(namespace, "crm")) == "unchanged"
        assert kube.ensure(service_account(namespace, "erp")) == "patched"
        assert kube.read("ServiceAccount", namespace, "sync")["metadata"]["annotations"] == {
            "team": "erp"
        }
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "keys", "namespace": namespace},
            "stringData": {"k": "v"},
        }
        assert kube.create_only(secret) is True
        assert kube.create_only({**secret, "stringData": {"k": "other"}}) is False
        assert not kube.secret_exists(namespace, "absent")
        assert kube.writes == 3
        # Every answer (a create's and a patch's too) is read to the end, so one
        # TLS connection served all nine calls; an unread answer kept its
        # connection and the next call paid a new handshake.
        assert connections(api) == 1
