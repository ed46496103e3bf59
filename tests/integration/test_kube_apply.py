"""The operator's create-or-patch against the real API server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
    keys = pools.keys()  # urllib3's container refuses plain iteration
    return sum(pools[key].num_connections for key in keys)


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


class ReadThenMeddle(KubeApplier):
    """Another writer changes the object right after this applier's first read."""

    def __init__(self, api: client.ApiClient, meddle: Callable[[], object]) -> None:
        super().__init__(api)
        self._meddle: Callable[[], object] | None = meddle

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        live = super().read(kind, namespace, name)
        if self._meddle is not None:
            meddle, self._meddle = self._meddle, None
            meddle()
        return live


def test_a_shared_object_keeps_every_owner_when_two_reconciles_race(
    bed: TestBed, namespace: str
) -> None:
    with bed.kube.api_client() as api, bed.kube.api_client() as other_api:
        core = client.CoreV1Api(api)
        owners = []
        for name in ("a", "b", "c"):  # real objects: GC removes dependents of absent owners
            made = core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name))
            )
            owners.append(
                {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": made.metadata.uid}
            )

        def shared(owner: dict[str, str]) -> dict[str, Any]:
            account = service_account(namespace, "workers")
            account["metadata"]["ownerReferences"] = [owner]
            return account

        a, b, c = owners
        assert KubeApplier(api).ensure(shared(a), shared=True) == "created"
        # B reads [a]; C adds itself before B's patch. B's patch, computed from
        # the stale read, must not drop C: it is refused (409) and recomputed.
        other = KubeApplier(other_api)
        racing = ReadThenMeddle(api, lambda: other.ensure(shared(c), shared=True))
        assert racing.ensure(shared(b), shared=True) == "patched"
        live = KubeApplier(api).read("ServiceAccount", namespace, "sync")
        assert live is not None
        assert [o["uid"] for o in live["metadata"]["ownerReferences"]] == [
            a["uid"],
            c["uid"],
            b["uid"],
        ]


def test_a_burst_of_reconciles_on_one_shared_object_all_succeed(
    bed: TestBed, namespace: str
) -> None:
    # As in the operator: one applier, many handler threads, each adding its
    # own owner to the same shared object at the same moment.
    threads = 16
    with bed.kube.api_client() as api:
        core = client.CoreV1Api(api)
        owners = []
        for n in range(threads):
            made = core.create_namespaced_config_map(
                namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"o{n}"))
            )
            owners.append(
                {"apiVersion": "v1", "kind": "ConfigMap", "name": f"o{n}", "uid": made.metadata.uid}
            )
        kube = KubeApplier(api)
        start = threading.Barrier(threads)

        def reconcile(owner: dict[str, str]) -> str:
            account = service_account(namespace, "workers")
            account["metadata"]["ownerReferences"] = [owner]
            start.wait()
            return kube.ensure(account, shared=True)

        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(reconcile, owners))  # raises if any failed
        assert sorted(results) == ["created"] + ["patched"] * (threads - 1)
        live = kube.read("ServiceAccount", namespace, "sync")
        assert live is not None
        kept = {o["uid"] for o in live["metadata"]["ownerReferences"]}
        assert kept == {o["uid"] for o in owners}
