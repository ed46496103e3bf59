"""One idempotent reconcile of a ContactSync: Kubernetes children, Prefect
objects, status. Safe to run any number of times; an unchanged object costs
reads only, never a write."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from contactsync.api.spec import ContactSyncSpec
from contactsync.engine.keyring import KEYRING_KEY, Keyring

from . import desired
from .conditions import Status, set_condition
from .kube_apply import KubeApplier
from .prefect_api import PrefectApi, PrefectUnavailableError
from .settings import Settings

POOL_RECHECK = 10.0  # seconds
PAUSE = "contactsync.dev/reconcile"
SYNC_NOW = "contactsync.dev/sync-now"
ROTATE_KEYS = "contactsync.dev/rotate-keys"
DELETION_POLICY = "contactsync.dev/deletion-policy"


@dataclass
class Outcome:
    """The status to write and the Events to post; `retry` asks for another pass soon."""

    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    retry: bool = False
    result: str = "success"  # for the metrics: success, requeue, invalid or paused

    def __post_init__(self) -> None:
        if self.retry:
            self.result = "requeue"


def _generation(meta: Mapping[str, Any]) -> int:
    return int(meta.get("generation") or 0)


class Reconciler:
    def __init__(self, kube: KubeApplier, prefect: PrefectApi, settings: Settings) -> None:
        self.kube = kube
        self.prefect = prefect
        self.settings = settings
        # A work pool serves every ContactSync of its namespace: a burst of
        # creates or resyncs reads it once per POOL_RECHECK, not once per
        # object. Keyed by the whole desired pool, so a changed spec is
        # applied at once; drift made in Prefect is repaired within that time.
        self._pools_checked: dict[str, float] = {}

    def reconcile(self, body: Mapping[str, Any]) -> Outcome:
        meta, status = body["metadata"], dict(body.get("status") or {})
        generation = _generation(meta)
        conditions: list[dict[str, Any]] = list(status.get("conditions") or [])
        annotations = meta.get("annotations") or {}

        def condition(type_: str, ok: Status, reason: str, message: str) -> None:
            nonlocal conditions
            conditions = set_condition(conditions, type_, ok, reason, message, generation)

        if annotations.get(PAUSE) == "paused":
            condition(
                "ReconciliationPaused",
                "True",
                "Paused",
                f"annotation {PAUSE}=paused: nothing is reconciled",
            )
            return Outcome({**status, "conditions": conditions}, result="paused")
        condition("ReconciliationPaused", "False", "Active", "reconciling")
        try:
            spec = ContactSyncSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            condition("Ready", "False", "InvalidSpec", f"spec.{where}: {first['msg']}")
            condition("Stalled", "True", "InvalidSpec", "fix the spec; nothing was changed")
            return Outcome({**status, "conditions": conditions}, result="invalid")

        namespace = meta["namespace"]
        missing = [
            s for s in desired.referenced_secrets(spec) if not self.kube.secret_exists(namespace, s)
        ]
        if missing:
            message = f"Secret {', '.join(missing)} not found in namespace {namespace}"
            condition("Ready", "False", "SecretNotFound", message)
            condition("Reconciling", "True", "SecretNotFound", "waiting for the Secret")
            return Outcome(
                {**status, "conditions": conditions},
                [("Warning", "SecretNotFound", message)],
                retry=True,
            )

        status["keys"] = self._keys(meta, spec, status.get("keys") or {}, annotations)
        self._children(meta, spec, annotations)
        try:
            pool, deployment = self._prefect(meta, spec)
        except PrefectUnavailableError as exc:
            condition("Ready", "False", "PrefectUnavailable", str(exc))
            condition("Reconciling", "True", "PrefectUnavailable", "retrying")
            return Outcome(
                {**status, "conditions": conditions},
                [("Warning", "PrefectUnavailable", str(exc))],
                retry=True,
            )
        condition("WorkPoolReady", "True", "Reconciled", f"work pool {pool}")
        condition(
            "DeploymentReady",
            "True",
            "Paused" if spec.suspend else "Reconciled",
            f"deployment {deployment['name']}" + (" (suspended)" if spec.suspend else ""),
        )
        status["prefect"] = {
            "workPoolName": pool,
            "deploymentId": str(deployment["id"]),
            "deploymentName": deployment["name"],
        }
        events = self._sync_now(annotations, status, deployment)
        condition(
            "Ready",
            "True",
            "Suspended" if spec.suspend else "Reconciled",
            "suspended: no runs are scheduled" if spec.suspend else "in sync",
        )
        condition("Reconciling", "False", "Reconciled", "")
        condition("Stalled", "False", "Reconciled", "")
        status.update(conditions=conditions, observedGeneration=generation)
        return Outcome(status, events)

    # -- parts ---------------------------------------------------------------------------

    def _keys(
        self,
        meta: Mapping[str, Any],
        spec: ContactSyncSpec,
        keys: Mapping[str, Any],
        annotations: Mapping[str, str],
    ) -> dict[str, Any]:
        """Generate the keyring if needed (never overwrite it); rotate on request."""
        namespace, name = meta["namespace"], desired.key_secret(spec, meta["name"])
        state = dict(keys, secretName=name)
        live = self.kube.read("Secret", namespace, name)
        keyring: Keyring | None = None
        if live is None and spec.encryption.key_secret_ref is None:
            keyring = Keyring.generate()
            self.kube.create_only(desired.generated_key_secret(meta, name, keyring.to_json()))
        elif live is not None and KEYRING_KEY in (live.get("data") or {}):
            keyring = Keyring.from_json(base64.b64decode(live["data"][KEYRING_KEY]))
        rotation = annotations.get(ROTATE_KEYS)
        generated = spec.encryption.key_secret_ref is None  # a user's own keyring is theirs
        if generated and keyring is not None and rotation and rotation != keys.get("rotation"):
            keyring = keyring.rotated()
            encoded = base64.b64encode(keyring.to_json().encode()).decode()
            self.kube.ensure(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": namespace},
                    "data": {KEYRING_KEY: encoded},
                }
            )
            state["rotation"] = rotation
        if keyring is not None:
            state["primaryKeyId"] = keyring.primary_id
        return state

    def _children(
        self, meta: Mapping[str, Any], spec: ContactSyncSpec, annotations: Mapping[str, str]
    ) -> None:
        namespace = meta["namespace"]
        passthrough = dict(spec.service_account.annotations)
        owner = [desired.owner_reference(meta, controller=False)]
        self.kube.ensure(desired.sync_service_account(meta, passthrough))
        self.kube.ensure(desired.worker_service_account(namespace, owner), shared=True)
        self.kube.ensure(desired.worker_role_binding(namespace, self.settings, owner), shared=True)
        pool = desired.pool_name(spec, namespace)
        self.kube.ensure(
            desired.worker_deployment(namespace, pool, self.settings, owner), shared=True
        )

    def _prefect(
        self, meta: Mapping[str, Any], spec: ContactSyncSpec
    ) -> tuple[str, dict[str, Any]]:
        prefect = self.prefect
        pool_type = self.settings.work_pool_type
        pool = desired.work_pool(
            spec, meta["namespace"], pool_type, prefect.default_template(pool_type)
        )
        checked = json.dumps(pool, sort_keys=True)
        if time.monotonic() - self._pools_checked.get(checked, -POOL_RECHECK) >= POOL_RECHECK:
            live_pool = prefect.read_work_pool(pool["name"])
            if live_pool is None:
                prefect.create_work_pool({**pool, "description": "managed by contactsync-operator"})
            elif drift := desired.work_pool_drift(pool, live_pool):
                prefect.update_work_pool(pool["name"], drift)
            now = time.monotonic()
            self._pools_checked = {
                key: at for key, at in self._pools_checked.items() if now - at < POOL_RECHECK
            }
            self._pools_checked[checked] = now
        want = desired.prefect_deployment(meta, spec, self.settings)
        live = prefect.read_deployment(desired.FLOW_NAME, want["name"])
        if live is None:
            created = prefect.create_deployment(
                desired.FLOW_NAME, {**want, "enforce_parameter_schema": False}
            )
            return pool["name"], created
        if drift := desired.deployment_drift(want, live):
            prefect.update_deployment(str(live["id"]), drift)
        return pool["name"], live

    def _sync_now(
        self, annotations: Mapping[str, str], status: dict[str, Any], deployment: Mapping[str, Any]
    ) -> list[tuple[str, str, str]]:
        request = annotations.get(SYNC_NOW)
        if not request or request == status.get("syncNowHandled"):
            return []
        run = self.prefect.create_flow_run(str(deployment["id"]), tags=["contactsync.dev/sync-now"])
        status["syncNowHandled"] = request
        return [("Normal", "SyncRequested", f"flow run {run['id']} started on request")]

    # -- deletion ------------------------------------------------------------------------

    def delete(self, body: Mapping[str, Any]) -> list[tuple[str, str, str]]:
        """Remove the Prefect objects (unless orphaned by annotation). Raises
        PrefectUnavailableError while Prefect cannot be reached."""
        meta = body["metadata"]
        if (meta.get("annotations") or {}).get(DELETION_POLICY) == "orphan":
            return [("Normal", "Orphaned", "Prefect objects kept (deletion-policy: orphan)")]
        spec = ContactSyncSpec.model_validate(body.get("spec") or {})
        name = desired.deployment_name(meta["namespace"], meta["name"])
        live = self.prefect.read_deployment(desired.FLOW_NAME, name)
        if live is not None:
            self.prefect.delete_deployment(str(live["id"]))
        pool = desired.pool_name(spec, meta["namespace"])
        live_pool = self.prefect.read_work_pool(pool)
        if (
            live_pool is not None
            and live_pool.get("description") == "managed by contactsync-operator"
            and not self.prefect.deployments_in_pool(pool)
        ):
            self.prefect.delete_work_pool(pool)
            self._pools_checked.clear()  # a ContactSync created next must recreate it
        return [("Normal", "Deleted", f"Prefect deployment {name} removed")]
