"""Prometheus metrics: the operator's own, and one set per ContactSync.

Per-ContactSync metrics are computed at scrape time from the objects the
operator currently watches (fed by every watch event), so a deleted object's
series disappear with it. Labels are namespace and name plus small, fixed
vocabularies (condition types, outcomes, states, reason codes): never a
record value, a secret or an unbounded string.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import ValidationError

from contactsync import __version__
from contactsync.api.spec import ContactSyncSpec
from contactsync.engine.reasons import Reason
from contactsync.window import longest_gap

from .settings import Settings
from .tracking import COUNTS, FINAL, SKIPPED, FinishedRun, parse_time

# The `*_created` series prometheus-client adds to every counter double the
# series count and no query here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

Info("contactsync_operator_build", "The running operator's version.", registry=REGISTRY).info(
    {"version": __version__}
)
RECONCILES = CounterMetric(
    "contactsync_operator_reconciles",
    "Reconciles by handler (reconcile, resync, delete) and result "
    "(success, requeue, invalid, paused, error).",
    ["handler", "result"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "contactsync_operator_reconcile_duration_seconds",
    "Time one reconcile took, by handler.",
    ["handler"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
PREFECT_REQUESTS = CounterMetric(
    "contactsync_operator_prefect_requests",
    "Prefect API calls by operation and outcome "
    "(success, not_found, client_error, server_error, unreachable).",
    ["operation", "outcome"],
    registry=REGISTRY,
)
PREFECT_UP = Gauge(
    "contactsync_operator_prefect_up",
    "1 when the operator's last Prefect API call was answered (not 5xx), else 0.",
    registry=REGISTRY,
)
KUBERNETES_ERRORS = CounterMetric(
    "contactsync_operator_kubernetes_api_errors",
    "Failed Kubernetes API calls of the reconciler by kind, verb and HTTP status "
    "(`transport` when no answer came).",
    ["kind", "verb", "code"],
    registry=REGISTRY,
)
DRIFT_CHECK = Gauge(
    "contactsync_operator_last_drift_check_timestamp_seconds",
    "When a resync last re-read Kubernetes and Prefect and found (or made) them right.",
    registry=REGISTRY,
)

CONDITION_STATUSES = ("True", "False", "Unknown")
REASONS = tuple(reason.value for reason in Reason)
RESULTS = (*FINAL, SKIPPED)


@dataclass
class _Result:
    value: str = "error"  # what an escaping exception leaves


@contextmanager
def reconcile_timer(handler: str) -> Iterator[_Result]:
    """Times a handler and counts it by the result it sets (error if it raises)."""
    result = _Result()
    start = time.perf_counter()
    try:
        yield result
    finally:
        RECONCILE_DURATION.labels(handler).observe(time.perf_counter() - start)
        RECONCILES.labels(handler, result.value).inc()


def prefect_answered(operation: str, status_code: int) -> None:
    if status_code < 400:
        outcome = "success"
    elif status_code == 404:
        outcome = "not_found"  # absence is an answer (a deleted deployment is restored)
    elif status_code < 500:
        outcome = "client_error"
    else:
        outcome = "server_error"
    PREFECT_REQUESTS.labels(operation, outcome).inc()
    PREFECT_UP.set(0 if status_code >= 500 else 1)


def prefect_unreachable(operation: str) -> None:
    PREFECT_REQUESTS.labels(operation, "unreachable").inc()
    PREFECT_UP.set(0)


def _timestamp(value: object) -> float | None:
    return parse_time(value).timestamp() if isinstance(value, str) else None


@dataclass
class _Watched:
    """What the metrics need of one ContactSync, and its run counters."""

    created: float | None
    status: Mapping[str, Any]
    generation: int = -1
    longest_gap: float | None = None
    suspended: bool = False
    runs: Counter[str] = field(default_factory=Counter)
    records: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)
    counted_until: datetime | None = None


class ContactSyncMetrics(Collector):
    """The per-ContactSync metrics, built from current state at every scrape."""

    def __init__(self, clock: Any = None) -> None:
        self._lock = threading.Lock()
        self._watched: dict[tuple[str, str], _Watched] = {}
        self._clock = clock or (lambda: datetime.now(UTC))

    def observe(self, body: Mapping[str, Any]) -> None:
        """Keep the latest state of an object (every watch event but deletion)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        status = dict(body.get("status") or {})
        with self._lock:
            watched = self._watched.get(key)
            if watched is None:
                # Only what the metrics read: the metadata's managed fields
                # and annotations would keep kilobytes alive per object.
                created = _timestamp(meta.get("creationTimestamp"))
                watched = self._watched[key] = _Watched(created, status)
                tracked = status.get("trackedUntil")
                watched.counted_until = parse_time(tracked) if tracked else None
            watched.status = status
            generation = int(meta.get("generation") or 0)
            if generation != watched.generation:  # the schedule is re-read on spec changes only
                watched.generation = generation
                self._read_spec(watched, body.get("spec") or {})

    def _read_spec(self, watched: _Watched, spec: Mapping[str, Any]) -> None:
        try:
            parsed = ContactSyncSpec.model_validate(spec)
        except ValidationError:
            watched.longest_gap, watched.suspended = None, False
            return
        watched.suspended = parsed.suspend
        hour = self._clock().replace(minute=0, second=0, microsecond=0)
        watched.longest_gap = longest_gap(parsed.schedule, parsed.window, hour)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._watched.pop((namespace, name), None)

    def count_runs(self, namespace: str, name: str, runs: Sequence[FinishedRun]) -> None:
        """Add newly finished runs (oldest first) to the counters, each run once."""
        with self._lock:
            watched = self._watched.get((namespace, name))
            if watched is None:
                return
            for run in runs:
                finished = parse_time(run.finished_at)
                if watched.counted_until is not None and finished <= watched.counted_until:
                    continue
                watched.counted_until = finished
                watched.runs[run.result] += 1
                if run.result != SKIPPED:
                    watched.records.update(run.counts())
                    watched.rejects.update(run.reasons())

    def collect(self) -> Iterable[Metric]:
        labels = ["namespace", "name"]
        condition = GaugeMetricFamily(
            "contactsync_status_condition",
            "One-hot condition status (Ready, Stalled, LastSyncSucceeded, ...).",
            labels=[*labels, "type", "status"],
        )
        created = GaugeMetricFamily(
            "contactsync_creation_timestamp_seconds",
            "When the ContactSync was created.",
            labels=labels,
        )
        gap = GaugeMetricFamily(
            "contactsync_schedule_max_interval_seconds",
            "Longest wait between two scheduled runs that sync (inside the window) over the "
            "next two months; absent when suspended or unscheduled.",
            labels=labels,
        )
        success = GaugeMetricFamily(
            "contactsync_last_success_timestamp_seconds",
            "When the last successful sync finished.",
            labels=labels,
        )
        duration = GaugeMetricFamily(
            "contactsync_last_run_duration_seconds",
            "How long the last run (that synced or failed) took.",
            labels=labels,
        )
        last_records = GaugeMetricFamily(
            "contactsync_last_run_records",
            "Records of the last run by outcome.",
            labels=[*labels, "outcome"],
        )
        failed = GaugeMetricFamily(
            "contactsync_last_run_failed",
            "1 when the last run failed, labelled with why (e.g. DeleteRatioExceeded).",
            labels=[*labels, "reason"],
        )
        next_run = GaugeMetricFamily(
            "contactsync_next_run_timestamp_seconds",
            "When the next scheduled run starts.",
            labels=labels,
        )
        runs = CounterMetricFamily(
            "contactsync_runs",
            "Finished runs by final state (SKIPPED: started outside the window).",
            labels=[*labels, "state"],
        )
        records = CounterMetricFamily(
            "contactsync_records",
            "Records of finished runs by outcome.",
            labels=[*labels, "outcome"],
        )
        rejects = CounterMetricFamily(
            "contactsync_rejected_records",
            "Rejected (quarantined) records by reason code.",
            labels=[*labels, "reason"],
        )
        with self._lock:
            watched = sorted(self._watched.items())
            for (namespace, name), w in watched:
                key = [namespace, name]
                for c in w.status.get("conditions") or []:
                    for value in CONDITION_STATUSES:
                        condition.add_metric(
                            [*key, c["type"], value], 1.0 if c.get("status") == value else 0.0
                        )
                if w.created is not None:
                    created.add_metric(key, w.created)
                if w.longest_gap is not None and not w.suspended:
                    gap.add_metric(key, w.longest_gap)
                if (at := _timestamp(w.status.get("lastSuccessAt"))) is not None:
                    success.add_metric(key, at)
                if (at := _timestamp(w.status.get("nextRunAt"))) is not None:
                    next_run.add_metric(key, at)
                last = w.status.get("lastSync") or {}
                started = _timestamp(last.get("startedAt"))
                ended = _timestamp(last.get("finishedAt"))
                if started is not None and ended is not None:
                    duration.add_metric(key, max(0.0, ended - started))
                if last:
                    for outcome in COUNTS:
                        last_records.add_metric([*key, outcome], float(last.get(outcome) or 0))
                if last.get("failure"):
                    failed.add_metric([*key, str(last["failure"])], 1.0)
                # Zeros from the start, so increase() sees a ContactSync's first run.
                for state in RESULTS:
                    runs.add_metric([*key, state], float(w.runs[state]))
                for outcome in COUNTS:
                    records.add_metric([*key, outcome], float(w.records[outcome]))
                for reason in sorted({*REASONS, *w.rejects}):
                    rejects.add_metric([*key, reason], float(w.rejects[reason]))
        yield from (condition, created, gap, success, duration, last_records, failed, next_run)
        yield from (runs, records, rejects)


CONTACTSYNCS = ContactSyncMetrics()
REGISTRY.register(CONTACTSYNCS)


def serve(settings: Settings) -> WSGIServer | None:
    """Serve /metrics on its own port (not Kopf's health port); TLS when a
    certificate is configured, and client certificates required when a client CA is."""
    if not settings.metrics_port:
        return None
    server, _ = start_http_server(
        settings.metrics_port,
        settings.metrics_address,
        REGISTRY,
        certfile=settings.metrics_cert_file,
        keyfile=settings.metrics_key_file,
        client_cafile=settings.metrics_client_ca_file,
        client_auth_required=settings.metrics_client_ca_file is not None,
        tls_min_version=ssl.TLSVersion.TLSv1_2,
    )
    return server
