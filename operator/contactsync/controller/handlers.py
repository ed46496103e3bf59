"""Kopf handlers: thin glue from events to the Reconciler.

    kopf run -m contactsync.controller.handlers --namespace=NS   (or --all-namespaces)

One idempotent reconcile serves create, update and resume; a jittered timer
re-runs it to repair drift (in Kubernetes and in Prefect) and to track flow
runs; deletion goes through a finalizer.
"""

from __future__ import annotations

import os
import time
from typing import Any

import kopf
from kubernetes import client, config

from . import metrics
from .conditions import newsworthy, set_condition
from .kube_apply import KubeApplier
from .prefect_api import PrefectApi, PrefectUnavailableError
from .reconcile import Outcome, Reconciler
from .settings import Settings
from .tracking import Tracked, advance, track

GROUP, VERSION, PLURAL = "contactsync.dev", "v1alpha1", "contactsyncs"
RESYNC = max(5.0, float(os.environ.get("CONTACTSYNC_RESYNC_SECONDS", "300")))

_reconciler: Reconciler | None = None


def reconciler() -> Reconciler:
    global _reconciler
    if _reconciler is None:
        settings = Settings.from_env()
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        _reconciler = Reconciler(
            KubeApplier(client.ApiClient()),
            PrefectApi(
                settings.prefect_api_url,
                settings.prefect_api_key,
                write_concurrency=settings.prefect_write_concurrency,
            ),
            settings,
        )
    return _reconciler


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "contactsync.dev/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="contactsync.dev"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="contactsync.dev", key="last-handled-configuration"
    )
    settings.posting.level = 100  # Events are posted explicitly, on transitions only
    settings.peering.standalone = os.environ.get("CONTACTSYNC_PEERING", "") == ""
    settings.watching.server_timeout = 300
    # No cluster-wide observation of namespaces and CRDs: the operator's RBAC
    # (deploy/rbac/) grants nothing at cluster scope in namespaced mode.
    # Namespaces are served by exact name; a new CRD version needs a restart.
    settings.scanning.disabled = True
    # A deleted object's running resync timer is polled for cancellation this
    # often; Kopf's 60 s default would hold the finalizer that long.
    settings.background.cancellation_polling = 5
    # Handlers are synchronous (Kubernetes and Prefect clients block); Kopf runs
    # them in a thread pool whose default (cores + 4) queues a burst of creates.
    settings.execution.max_workers = 8
    metrics.serve(reconciler().settings)


def _apply(outcome: Outcome, body: kopf.Body, patch: kopf.Patch) -> None:
    patch.status.update(outcome.status)
    for kind, reason, message in outcome.events:
        kopf.event(body, type=kind, reason=reason, message=message)
    if outcome.retry:
        raise kopf.TemporaryError(
            outcome.status["conditions"][0]["message"], delay=reconciler().settings.retry_seconds
        )


def _post_transitions(body: kopf.Body, before: list[Any], after: list[Any]) -> None:
    for condition in newsworthy(before, after):
        good = (condition["status"] == "True") != (condition["type"] == "Stalled")
        kopf.event(
            body,
            type="Normal" if good else "Warning",
            reason=condition["reason"],
            message=f"{condition['type']}={condition['status']}: {condition['message']}",
        )


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    with metrics.reconcile_timer("reconcile") as result:
        outcome = reconciler().reconcile(body)
        result.value = outcome.result
    _post_transitions(
        body,
        list((body.get("status") or {}).get("conditions") or []),
        outcome.status.get("conditions", []),
    )
    _apply(outcome, body, patch)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC, initial_delay=RESYNC, idle=None)
def resync(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Repair drift and account for finished flow runs; writes happen only on a difference."""
    rec = reconciler()
    with metrics.reconcile_timer("resync") as result:
        outcome = rec.reconcile(body)
        result.value = outcome.result
    if outcome.result == "success":
        metrics.DRIFT_CHECK.set(time.time())
    deployment_id = (outcome.status.get("prefect") or {}).get("deploymentId")
    if deployment_id and outcome.result != "paused":  # paused: status stays as it is
        try:
            tracked = track(rec.prefect, deployment_id, outcome.status.get("trackedUntil"))
        except PrefectUnavailableError:
            tracked = Tracked(outcome.status.get("nextRunAt"), [])
        meta = body["metadata"]
        metrics.CONTACTSYNCS.count_runs(meta["namespace"], meta["name"], tracked.finished)
        outcome.status["nextRunAt"] = tracked.next_run_at
        generation = int(meta.get("generation") or 0)
        outcome.status.update(advance(outcome.status, tracked.finished, generation))
    before = list((body.get("status") or {}).get("conditions") or [])
    after = outcome.status.get("conditions", [])
    if outcome.status != dict(body.get("status") or {}):
        _post_transitions(body, before, after)
        _apply(outcome, body, patch)


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    with metrics.reconcile_timer("delete") as result:
        try:
            events = reconciler().delete(body)
        except PrefectUnavailableError as exc:
            result.value = "requeue"
            message = f"cannot remove Prefect objects yet: {exc}; retrying"
            conditions = set_condition(
                (body.get("status") or {}).get("conditions") or [],
                "Reconciling",
                "True",
                "PrefectUnavailable",
                message,
                int(body["metadata"].get("generation") or 0),
            )
            patch.status["conditions"] = conditions
            kopf.event(body, type="Warning", reason="PrefectUnavailable", message=message)
            raise kopf.TemporaryError(message, delay=reconciler().settings.retry_seconds) from exc
        result.value = "success"
    for kind, reason, message in events:
        kopf.event(body, type=kind, reason=reason, message=message)


@kopf.on.event(GROUP, VERSION, PLURAL)
def observe(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    """Feed the per-ContactSync metrics with the current state of every object."""
    if event.get("type") == "DELETED":
        metrics.CONTACTSYNCS.forget(body["metadata"]["namespace"], body["metadata"]["name"])
    else:
        metrics.CONTACTSYNCS.observe(body)


@kopf.on.probe(id="prefect")
def prefect_reachable(**_: Any) -> bool:
    """Reported in /healthz, never failing it: restarting the operator cannot fix
    Prefect. Each liveness check refreshes contactsync_operator_prefect_up."""
    return reconciler().prefect.ping()
