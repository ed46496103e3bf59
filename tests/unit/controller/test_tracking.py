"""Accounting for finished flow runs: which become status, and how."""

from __future__ import annotations

from contactsync.controller.tracking import SKIPPED, FinishedRun, advance


def run(n: int, state: str = "COMPLETED", **summary: object) -> FinishedRun:
    return FinishedRun(
        id=f"00000000-0000-0000-0000-00000000000{n}",
        state=state,
        started_at=f"2026-11-27T10:0{n}:00Z",
        finished_at=f"2026-11-27T10:0{n}:30Z",
        summary=summary,
    )


def test_nothing_new_changes_nothing() -> None:
    assert advance({"conditions": []}, [], 1) == {}


def test_the_newest_run_becomes_last_sync_with_its_counts() -> None:
    changes = advance({}, [run(1, read=3), run(2, read=5, rejected=1, inserted=4)], 7)
    assert changes["lastSync"] == {
        "flowRunId": run(2).id,
        "state": "COMPLETED",
        "startedAt": "2026-11-27T10:02:00Z",
        "finishedAt": "2026-11-27T10:02:30Z",
        "read": 5,
        "rejected": 1,
        "inserted": 4,
    }
    assert changes["lastSuccessAt"] == changes["trackedUntil"] == "2026-11-27T10:02:30Z"
    (condition,) = changes["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "LastSyncSucceeded",
        "True",
        "Completed",
    )
    assert condition["observedGeneration"] == 7


def test_a_refused_run_names_its_code_and_keeps_the_last_success() -> None:
    changes = advance({}, [run(1), run(2, "FAILED", failed="DeleteRatioExceeded")], 1)
    assert changes["lastSync"]["failure"] == "DeleteRatioExceeded"
    assert changes["lastSuccessAt"] == run(1).finished_at
    (condition,) = changes["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "DeleteRatioExceeded")


def test_a_crash_without_a_summary_is_named_by_its_state() -> None:
    changes = advance({}, [run(1, "CRASHED")], 1)
    assert changes["lastSync"]["failure"] == "Crashed"
    assert "lastSuccessAt" not in changes


def test_skipped_runs_move_the_watermark_only() -> None:
    skipped = run(3, skipped="OutsideWindow")
    assert skipped.result == SKIPPED
    assert advance({}, [skipped], 1) == {"trackedUntil": skipped.finished_at}
    changes = advance({}, [run(1, read=2), skipped], 1)
    assert changes["lastSync"]["flowRunId"] == run(1).id
    assert changes["trackedUntil"] == skipped.finished_at
