"""Flow-run tracking: the latest finished run of a deployment, as status.lastSync."""

from __future__ import annotations

from typing import Any

from .prefect_api import PrefectApi

FINAL = {"COMPLETED": True, "FAILED": False, "CRASHED": False, "CANCELLED": False}
COUNTS = (
    "read",
    "valid",
    "rejected",
    "quarantined",
    "inserted",
    "updated",
    "deleted",
    "unchanged",
    "merged",
)


def last_sync(prefect: PrefectApi, deployment_id: str) -> dict[str, Any]:
    """{"lastSync": {...}, "succeeded": bool | None, "nextRunAt": str | None}, or {}."""
    runs = prefect.recent_flow_runs(deployment_id)
    finished = [r for r in runs if (r.get("state") or {}).get("type") in FINAL]
    upcoming = prefect.next_scheduled_run(deployment_id)
    out: dict[str, Any] = {"nextRunAt": upcoming.get("expected_start_time") if upcoming else None}
    if not finished:
        return out if upcoming else {}
    run = finished[0]
    state = run["state"]["type"]
    summary = prefect.run_summary(str(run["id"])) or {}
    out["lastSync"] = {
        "flowRunId": str(run["id"]),
        "state": state,
        "startedAt": run.get("start_time"),
        "finishedAt": run.get("end_time"),
        **{k: int(summary[k]) for k in COUNTS if isinstance(summary.get(k), int)},
    }
    out["succeeded"] = FINAL[state]
    return out
