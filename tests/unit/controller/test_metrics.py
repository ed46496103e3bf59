"""The per-ContactSync metrics: computed from current state at every scrape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from contactsync.controller import metrics
from contactsync.controller.metrics import ContactSyncMetrics
from contactsync.controller.tracking import FinishedRun
from contactsync.window import longest_gap

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def body(name: str = "crm", generation: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "sales",
            "name": name,
            "generation": generation,
            "creationTimestamp": "2026-11-27T09:00:00Z",
        },
        "spec": {
            "source": {"type": "csv", "path": "/data/in.csv"},
            "destination": {
                "type": "postgres",
                "dsnSecretRef": {"name": "warehouse", "key": "dsn"},
                "table": "contacts",
            },
            "schedule": {"cron": "0 * * * *"},
        },
        "status": status,
    }


def scrape(collector: ContactSyncMetrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {"namespace": "sales", "name": "crm", **labels})


def condition(type_: str, status: str) -> dict[str, str]:
    return {"type": type_, "status": status, "reason": "R", "message": ""}


def test_conditions_are_one_hot() -> None:
    metrics = ContactSyncMetrics(clock=lambda: NOW)
    metrics.observe(body(conditions=[condition("Ready", "False"), condition("Stalled", "True")]))
    registry = scrape(metrics)
    ready = {
        s: value(registry, "contactsync_status_condition", type="Ready", status=s)
        for s in ("True", "False", "Unknown")
    }
    assert ready == {"True": 0.0, "False": 1.0, "Unknown": 0.0}
    assert value(registry, "contactsync_status_condition", type="Stalled", status="True") == 1.0


def test_a_deleted_object_disappears_from_the_next_scrape() -> None:
    metrics = ContactSyncMetrics(clock=lambda: NOW)
    metrics.observe(body(conditions=[condition("Ready", "True")]))
    metrics.observe(body("other", conditions=[condition("Ready", "True")]))
    metrics.forget("sales", "crm")
    text = generate_latest(scrape(metrics)).decode()
    assert 'name="crm"' not in text
    assert 'name="other"' in text


def test_last_run_success_and_schedule_come_from_status_and_spec() -> None:
    metrics = ContactSyncMetrics(clock=lambda: NOW)
    metrics.observe(
        body(
            lastSync={
                "flowRunId": "r1",
                "state": "FAILED",
                "startedAt": "2026-11-27T10:00:00Z",
                "finishedAt": "2026-11-27T10:00:42Z",
                "failure": "DeleteRatioExceeded",
                "read": 10,
            },
            lastSuccessAt="2026-11-27T09:00:00Z",
            nextRunAt="2026-11-27T11:00:00Z",
        )
    )
    registry = scrape(metrics)
    assert value(registry, "contactsync_last_run_duration_seconds") == 42.0
    assert value(registry, "contactsync_last_run_records", outcome="read") == 10.0
    assert value(registry, "contactsync_last_run_records", outcome="inserted") == 0.0
    assert value(registry, "contactsync_last_run_failed", reason="DeleteRatioExceeded") == 1.0
    assert (
        value(registry, "contactsync_last_success_timestamp_seconds")
        == datetime(2026, 11, 27, 9, tzinfo=UTC).timestamp()
    )
    assert (
        value(registry, "contactsync_next_run_timestamp_seconds")
        == datetime(2026, 11, 27, 11, tzinfo=UTC).timestamp()
    )
    assert value(registry, "contactsync_schedule_max_interval_seconds") == 3600.0
    assert (
        value(registry, "contactsync_creation_timestamp_seconds")
        == datetime(2026, 11, 27, 9, tzinfo=UTC).timestamp()
    )


def test_objects_sharing_a_schedule_within_the_hour_walk_it_once() -> None:
    # The watch handler runs on every event of a burst: walking two months of
    # cron fires per object was half the operator's CPU under 200 creates.
    longest_gap.cache_clear()
    ticks = iter([NOW, NOW.replace(minute=59, second=59)])
    metrics = ContactSyncMetrics(clock=lambda: next(ticks))
    metrics.observe(body("crm"))
    metrics.observe(body("erp"))
    info = longest_gap.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    registry = scrape(metrics)
    for name in ("crm", "erp"):
        assert (
            registry.get_sample_value(
                "contactsync_schedule_max_interval_seconds", {"namespace": "sales", "name": name}
            )
            == 3600.0
        )


def test_a_suspended_sync_has_no_expected_interval() -> None:
    metrics = ContactSyncMetrics(clock=lambda: NOW)
    suspended = body()
    suspended["spec"]["suspend"] = True
    metrics.observe(suspended)
    assert value(scrape(metrics), "contactsync_schedule_max_interval_seconds") is None


def finished(n: int, state: str = "COMPLETED", **summary: object) -> FinishedRun:
    return FinishedRun(f"r{n}", state, None, f"2026-11-27T10:0{n}:00Z", summary)


def test_runs_are_counted_once_each_from_zero() -> None:
    metrics = ContactSyncMetrics(clock=lambda: NOW)
    metrics.observe(body())
    registry = scrape(metrics)
    assert value(registry, "contactsync_runs_total", state="COMPLETED") == 0.0
    assert value(registry, "contactsync_records_total", outcome="read") == 0.0
    assert value(registry, "contactsync_rejected_records_total", reason="phone.invalid") == 0.0

    first = [finished(1, read=5, rejected=2, reasons={"email.invalid": 2})]
    metrics.count_runs("sales", "crm", first)
    metrics.count_runs("sales", "crm", first)  # a status patch that did not land: seen again
    metrics.count_runs(
        "sales",
        "crm",
        [finished(2, "FAILED", failed="RejectRatioExceeded"), finished(3, skipped="OutsideWindow")],
    )

    assert value(registry, "contactsync_runs_total", state="COMPLETED") == 1.0
    assert value(registry, "contactsync_runs_total", state="FAILED") == 1.0
    assert value(registry, "contactsync_runs_total", state="SKIPPED") == 1.0
    assert value(registry, "contactsync_records_total", outcome="read") == 5.0
    assert value(registry, "contactsync_rejected_records_total", reason="email.invalid") == 2.0


def test_counting_resumes_after_the_status_watermark() -> None:
    """After an operator restart, runs already in status are not counted again."""
    metrics = ContactSyncMetrics(clock=lambda: NOW)
    metrics.observe(body(trackedUntil="2026-11-27T10:01:00Z"))
    metrics.count_runs("sales", "crm", [finished(1), finished(2)])
    assert value(scrape(metrics), "contactsync_runs_total", state="COMPLETED") == 1.0


def test_labels_are_bounded_and_carry_no_spec_values() -> None:
    metrics = ContactSyncMetrics(clock=lambda: NOW)
    metrics.observe(body(conditions=[condition("Ready", "True")]))
    metrics.count_runs("sales", "crm", [finished(1, read=1, reasons={"phone.invalid": 1})])
    text = generate_latest(scrape(metrics)).decode()
    for leak in ("/data/in.csv", "warehouse", "contacts", "dsn"):
        assert leak not in text.replace("contactsync_", "")
    names = {line.split("{")[0] for line in text.splitlines() if line and line[0] != "#"}
    assert all(n.startswith("contactsync_") for n in names)


def test_prefect_outcomes_and_reachability() -> None:
    def count(operation: str, outcome: str) -> float:
        found = metrics.REGISTRY.get_sample_value(
            "contactsync_operator_prefect_requests_total",
            {"operation": operation, "outcome": outcome},
        )
        return found or 0.0

    cases = [(200, "success", 1), (404, "not_found", 1), (409, "client_error", 1)]
    cases += [(503, "server_error", 0)]
    for status, outcome, up in cases:
        before = count("op_unit", outcome)
        metrics.prefect_answered("op_unit", status)
        assert count("op_unit", outcome) == before + 1
        assert metrics.REGISTRY.get_sample_value("contactsync_operator_prefect_up") == up
    metrics.prefect_answered("op_unit", 200)
    metrics.prefect_unreachable("op_unit")
    assert count("op_unit", "unreachable") >= 1
    assert metrics.REGISTRY.get_sample_value("contactsync_operator_prefect_up") == 0


def test_reconcile_timer_counts_an_escaping_exception_as_error() -> None:
    def count(result: str) -> float:
        found = metrics.REGISTRY.get_sample_value(
            "contactsync_operator_reconciles_total", {"handler": "unit", "result": result}
        )
        return found or 0.0

    with metrics.reconcile_timer("unit") as result:
        result.value = "requeue"
    with pytest.raises(RuntimeError), metrics.reconcile_timer("unit"):
        raise RuntimeError("boom")
    assert (count("requeue"), count("error")) == (1, 1)
    observed = metrics.REGISTRY.get_sample_value(
        "contactsync_operator_reconcile_duration_seconds_count", {"handler": "unit"}
    )
    assert observed == 2
