"""Desired state: pure functions from a ContactSync to the objects it needs.

Nothing here talks to a server, so every rule (names, ownership, hardening,
what reaches Prefect) is unit-tested without one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from contactsync.api.spec import API_VERSION, KIND, ContactSyncSpec, SecretKeyRef, SecretRef
from contactsync.engine.keyring import KEYRING_KEY
from contactsync.engine.secrets import DEFAULT_ROOT

from .settings import Settings

FLOW_NAME = "contact-sync"
ENTRYPOINT = "contactsync.flows:contact_sync"
WORKER_ACCOUNT = "contactsync-worker"
MANAGED_BY = {"app.kubernetes.io/managed-by": "contactsync-operator"}
UID = 10001  # the images' non-root user
# The root filesystem is read-only; the worker's scratch space is a private emptyDir.
SCRATCH = "/tmp"  # noqa: S108
# prefect-kubernetes settings that keep the worker within its ClusterRole
# (deploy/rbac/worker.yaml), which grants no Secrets and nothing cluster-wide.
KEY_SECRET_NAME = "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_NAME"  # noqa: S105
KEY_SECRET_KEY = "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_KEY_SECRET_KEY"  # noqa: S105
OBSERVER_NAMESPACES = "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"


def pool_name(spec: ContactSyncSpec, namespace: str) -> str:
    return spec.prefect.work_pool.name or f"contactsync-{namespace}"


def deployment_name(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


def sync_account(name: str) -> str:
    return f"{name}-sync"


def key_secret(spec: ContactSyncSpec, name: str) -> str:
    return (spec.encryption.key_secret_ref or SecretRef(name=f"{name}-keys")).name


def owner_reference(meta: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def referenced_secrets(spec: ContactSyncSpec) -> list[str]:
    """Names of every Secret the spec references, in a stable order."""

    def walk(model: BaseModel) -> Iterator[str]:
        for field in type(model).model_fields:
            value = getattr(model, field)
            if isinstance(value, (SecretKeyRef, SecretRef)):
                yield value.name
            elif isinstance(value, BaseModel):
                yield from walk(value)

    return sorted(set(walk(spec)))


# -- Kubernetes children -----------------------------------------------------------------


def sync_service_account(meta: Mapping[str, Any], annotations: Mapping[str, str]) -> dict[str, Any]:
    """The sync Job's identity: no API permissions, no token, workload-identity annotations."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": sync_account(meta["name"]),
            "namespace": meta["namespace"],
            "labels": dict(MANAGED_BY),
            "annotations": dict(annotations),
            "ownerReferences": [owner_reference(meta)],
        },
        "automountServiceAccountToken": False,
    }


def worker_service_account(namespace: str, owners: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": WORKER_ACCOUNT,
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
            "ownerReferences": owners,
        },
    }


def worker_role_binding(
    namespace: str, settings: Settings, owners: list[dict[str, Any]]
) -> dict[str, Any]:
    """Binds the chart's worker ClusterRole in this namespace only: the operator
    grants nothing it does not hold itself, it only binds (RBAC escalation rules)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": WORKER_ACCOUNT,
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
            "ownerReferences": owners,
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": settings.worker_cluster_role,
        },
        "subjects": [{"kind": "ServiceAccount", "name": WORKER_ACCOUNT, "namespace": namespace}],
    }


def _restricted_container() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _restricted_pod() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def worker_deployment(
    namespace: str, pool: str, settings: Settings, owners: list[dict[str, Any]]
) -> dict[str, Any]:
    labels = {
        **MANAGED_BY,
        "app.kubernetes.io/name": "prefect-worker",
        "contactsync.dev/work-pool": pool,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"prefect-worker-{pool}",
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": owners,
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"contactsync.dev/work-pool": pool}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": WORKER_ACCOUNT,
                    "securityContext": _restricted_pod(),
                    "containers": [
                        {
                            "name": "worker",
                            "image": settings.worker_image,
                            "args": [
                                "prefect",
                                "worker",
                                "start",
                                "--pool",
                                pool,
                                "--type",
                                "kubernetes",
                                "--with-healthcheck",
                            ],
                            "env": [
                                {"name": "PREFECT_API_URL", "value": settings.prefect_api_url},
                                {
                                    "name": "PREFECT_API_KEY",
                                    "valueFrom": {
                                        "secretKeyRef": {
                                            "name": settings.worker_api_secret,
                                            "key": "api-key",
                                            "optional": True,
                                        }
                                    },
                                },
                                # Jobs get the key as a reference to this same Secret,
                                # never a value; the worker neither reads nor creates
                                # Secrets (which "create secret for API key" would).
                                {"name": KEY_SECRET_NAME, "value": settings.worker_api_secret},
                                {"name": KEY_SECRET_KEY, "value": "api-key"},
                                # Its Job and Pod observer watches this namespace only;
                                # by default it would watch the whole cluster.
                                {"name": OBSERVER_NAMESPACES, "value": namespace},
                                {"name": "PREFECT_WORKER_WEBSERVER_PORT", "value": "8080"},
                                {"name": "HOME", "value": SCRATCH},
                            ],
                            "livenessProbe": {
                                "httpGet": {"path": "/health", "port": 8080},
                                "periodSeconds": 30,
                            },
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "192Mi"},
                                "limits": {"memory": "512Mi"},
                            },
                            "securityContext": _restricted_container(),
                            "volumeMounts": [{"name": "tmp", "mountPath": SCRATCH}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def generated_key_secret(meta: Mapping[str, Any], name: str, keyring_json: str) -> dict[str, Any]:
    """The keys a ContactSync encrypts with, when the spec names none.

    Deliberately NOT owned by the ContactSync: deleting a sync must never
    destroy the only keys to the data it wrote.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": dict(MANAGED_BY),
            "annotations": {"contactsync.dev/contactsync": meta["name"]},
        },
        "type": "Opaque",
        "stringData": {KEYRING_KEY: keyring_json},
    }


# -- Prefect objects ---------------------------------------------------------------------


def harden_job_template(default: Mapping[str, Any]) -> dict[str, Any]:
    """Prefect's default kubernetes base job template, made restricted.

    Secrets reach the sync container only as read-only volume mounts of the
    Secrets the spec names (`secret_volumes`/`secret_mounts` per deployment),
    never as values in the Job.
    """
    template = copy.deepcopy(dict(default))
    manifest = template["job_configuration"]["job_manifest"]
    pod = manifest["spec"]["template"]["spec"]
    pod["automountServiceAccountToken"] = False
    pod["securityContext"] = _restricted_pod()
    pod["volumes"] = "{{ secret_volumes }}"
    container = pod["containers"][0]
    container["securityContext"] = _restricted_container()
    container["volumeMounts"] = "{{ secret_mounts }}"
    properties = template["variables"]["properties"]
    properties["secret_volumes"] = {
        "title": "Secret volumes",
        "type": "array",
        "default": [],
        "items": {"type": "object"},
    }
    properties["secret_mounts"] = {
        "title": "Secret mounts",
        "type": "array",
        "default": [],
        "items": {"type": "object"},
    }
    properties["finished_job_ttl"]["default"] = 3600
    for key, value in {
        "cpu_request": "250m",
        "memory_request": "256Mi",
        "cpu_limit": "2",
        "memory_limit": "1Gi",
    }.items():
        properties.setdefault(key, {"type": "string"})["default"] = value
    return template


def work_pool(
    spec: ContactSyncSpec, namespace: str, pool_type: str, base_job_template: Mapping[str, Any]
) -> dict[str, Any]:
    template = (
        harden_job_template(base_job_template)
        if pool_type == "kubernetes"
        else copy.deepcopy(dict(base_job_template))
    )
    return {
        "name": pool_name(spec, namespace),
        "type": pool_type,
        "base_job_template": template,
        "concurrency_limit": spec.prefect.work_pool.concurrency_limit,
    }


def _schedules(spec: ContactSyncSpec) -> list[dict[str, Any]]:
    schedule = spec.schedule
    if schedule is None:
        return []
    if schedule.cron is not None:
        rule: dict[str, Any] = {"cron": schedule.cron, "timezone": schedule.timezone}
    else:
        rule = {"interval": float(schedule.interval_seconds or 0), "timezone": schedule.timezone}
    return [{"schedule": rule, "active": True}]


def prefect_deployment(
    meta: Mapping[str, Any], spec: ContactSyncSpec, settings: Settings
) -> dict[str, Any]:
    """The deployment's desired fields (what `deployment_drift` compares)."""
    namespace, name = meta["namespace"], meta["name"]
    secrets = sorted({*referenced_secrets(spec), key_secret(spec, name)})
    return {
        "name": deployment_name(namespace, name),
        "work_pool_name": pool_name(spec, namespace),
        "entrypoint": ENTRYPOINT,
        # The spec holds Secret *references* only: nothing secret reaches Prefect.
        "parameters": {
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "namespace": namespace,
            "name": name,
            "uid": meta["uid"],
        },
        "schedules": _schedules(spec),
        "paused": spec.suspend,
        "tags": sorted(
            [
                "contactsync",
                f"contactsync.dev/namespace={namespace}",
                f"contactsync.dev/name={name}",
                f"contactsync.dev/uid={meta['uid']}",
            ]
        ),
        "job_variables": _job_variables(namespace, name, spec, settings, secrets),
    }


def _job_variables(
    namespace: str, name: str, spec: ContactSyncSpec, settings: Settings, secrets: list[str]
) -> dict[str, Any]:
    if settings.work_pool_type != "kubernetes":
        # A local process worker: Secrets are projected into a directory on its host.
        return {"env": {"CONTACTSYNC_SECRETS_DIR": settings.local_secrets_dir or str(DEFAULT_ROOT)}}
    return {
        "namespace": namespace,
        "service_account_name": sync_account(name),
        "image": spec.prefect.image or settings.sync_image,
        "secret_volumes": [
            {"name": f"secret-{i}", "secret": {"secretName": secret, "defaultMode": 0o440}}
            for i, secret in enumerate(secrets)
        ],
        "secret_mounts": [
            {"name": f"secret-{i}", "mountPath": f"{DEFAULT_ROOT}/{secret}", "readOnly": True}
            for i, secret in enumerate(secrets)
        ],
    }


def deployment_drift(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `desired` that differ in `live`: empty means no write at all
    (every deployment PATCH deletes future scheduled runs)."""
    drift = {}
    for key, value in desired.items():
        if key == "name":
            continue
        current = live.get(key)
        if key == "schedules":
            current = [
                {"schedule": _schedule_rule(s.get("schedule", {})), "active": s.get("active")}
                for s in current or []
            ]
            value = [
                {"schedule": _schedule_rule(s["schedule"]), "active": s["active"]} for s in value
            ]
        if key == "tags":
            current = sorted(current or [])
        if current != value:
            drift[key] = desired[key]
    return drift


def _schedule_rule(schedule: Mapping[str, Any]) -> dict[str, Any]:
    if schedule.get("cron") is not None:
        return {"cron": schedule["cron"], "timezone": schedule.get("timezone") or "UTC"}
    return {
        "interval": float(schedule.get("interval") or 0),
        "timezone": schedule.get("timezone") or "UTC",
    }


def work_pool_drift(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in desired.items()
        if key in ("base_job_template", "concurrency_limit") and live.get(key) != value
    }
