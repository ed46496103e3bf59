"""Create-or-patch for the few kinds the operator owns, writing only what differs.

Live objects carry server defaults the desired state never names, so
comparison is by subset: an object is in sync when every field the desired
state names has the desired value. Owner references of shared objects
(the worker's identity and Deployment serve every ContactSync of a pool)
are merged, never replaced: garbage collection removes them with their last owner.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from . import metrics

CONFLICT_ATTEMPTS = 5


@dataclass(frozen=True)
class _Kind:
    read: Callable[..., Any]
    create: Callable[..., Any]
    patch: Callable[..., Any]


def is_subset(desired: Any, live: Any) -> bool:
    if isinstance(desired, Mapping):
        if not desired and live is None:
            return True  # the server drops empty maps: `{}` and absent are the same
        return isinstance(live, Mapping) and all(
            is_subset(value, live.get(key)) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(is_subset(d, item) for d, item in zip(desired, live, strict=True))
        )
    return bool(desired == live)


def merge_owners(desired: list[dict[str, Any]], live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Live owners in their order, then any desired owner not yet among them: a
    shared object that already lists every owner is left exactly as it is."""
    uids = {owner.get("uid") for owner in live}
    return live + [owner for owner in desired if owner["uid"] not in uids]


class KubeApplier:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        core = client.CoreV1Api(api)
        rbac = client.RbacAuthorizationV1Api(api)
        apps = client.AppsV1Api(api)
        self._kinds = {
            "ServiceAccount": _Kind(
                core.read_namespaced_service_account,
                core.create_namespaced_service_account,
                core.patch_namespaced_service_account,
            ),
            "RoleBinding": _Kind(
                rbac.read_namespaced_role_binding,
                rbac.create_namespaced_role_binding,
                rbac.patch_namespaced_role_binding,
            ),
            "Deployment": _Kind(
                apps.read_namespaced_deployment,
                apps.create_namespaced_deployment,
                apps.patch_namespaced_deployment,
            ),
            "Secret": _Kind(
                core.read_namespaced_secret,
                core.create_namespaced_secret,
                core.patch_namespaced_secret,
            ),
        }
        self.writes = 0
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _call(self, kind: str, verb: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """One API call, counted in the metrics when it fails (a read's 404 is an answer).

        The answer is parsed straight from JSON: turning it into the client's
        model objects (and, for reads, back into dicts) was most of the
        operator's CPU time. It is always read to the end, which hands the
        connection back to the pool; an unread answer kept its connection, and
        every next call paid a new TLS handshake.
        """
        try:
            response = getattr(self._kinds[kind], verb)(*args, _preload_content=False, **kwargs)
            try:
                answer: dict[str, Any] = json.loads(response.data)
            finally:
                response.release_conn()
            return answer
        except ApiException as exc:
            if not (verb == "read" and exc.status == 404):
                metrics.KUBERNETES_ERRORS.labels(kind, verb, str(exc.status)).inc()
            raise
        except Exception:
            metrics.KUBERNETES_ERRORS.labels(kind, verb, "transport").inc()
            raise

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call(kind, "read", name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def ensure(self, desired: dict[str, Any], *, shared: bool = False) -> str:
        """Create or patch; returns "created", "patched" or "unchanged".

        Optimistic concurrency: a patch carries the resourceVersion it was
        computed from, and a create or patch that lost a race (409: created or
        changed meanwhile) starts again from a fresh read. Shared objects need
        it: two reconciles adding their owner at once would each write a list
        without the other's, and GC could later remove an object still in use.
        """
        # The operator's own handler threads take turns on a shared object, so
        # a burst of creates queues here instead of exhausting the attempts
        # on conflicts with each other; a 409 then means another writer.
        with self._lock_for(desired) if shared else contextlib.nullcontext():
            for attempt in range(CONFLICT_ATTEMPTS):
                try:
                    return self._ensure_once(desired, shared)
                except ApiException as exc:
                    if exc.status != 409 or attempt == CONFLICT_ATTEMPTS - 1:
                        raise
        raise AssertionError("unreachable")

    def _lock_for(self, desired: dict[str, Any]) -> threading.Lock:
        meta = desired["metadata"]
        key = (desired["kind"], meta["namespace"], meta["name"])
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def _ensure_once(self, desired: dict[str, Any], shared: bool) -> str:
        kind, meta = desired["kind"], desired["metadata"]
        live = self.read(kind, meta["namespace"], meta["name"])
        if live is None:
            self._call(kind, "create", meta["namespace"], desired)
            self.writes += 1
            return "created"
        wanted = desired
        if shared:
            owners = merge_owners(
                meta.get("ownerReferences", []), live["metadata"].get("ownerReferences", [])
            )
            wanted = {**desired, "metadata": {**meta, "ownerReferences": owners}}
        if is_subset(wanted, live):
            return "unchanged"
        # A JSON merge patch replaces lists whole, so an entry the desired state
        # dropped (an env variable after an upgrade) goes too; a strategic merge
        # would keep it and the object would never converge.
        version = {"resourceVersion": live["metadata"]["resourceVersion"]}
        self._call(
            kind,
            "patch",
            meta["name"],
            meta["namespace"],
            {**wanted, "metadata": {**wanted["metadata"], **version}},
            _content_type="application/merge-patch+json",
        )
        self.writes += 1
        return "patched"

    def create_only(self, desired: dict[str, Any]) -> bool:
        """Create if absent; never touch an existing object (key Secrets). True if created."""
        meta = desired["metadata"]
        if self.read(desired["kind"], meta["namespace"], meta["name"]) is not None:
            return False
        self._call(desired["kind"], "create", meta["namespace"], desired)
        self.writes += 1
        return True

    def secret_exists(self, namespace: str, name: str) -> bool:
        # Only metadata is needed, but the API has no cheaper read for one Secret.
        return self.read("Secret", namespace, name) is not None
