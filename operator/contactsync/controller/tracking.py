"""Flow-run tracking: the runs that finished since the last look, as status and metrics.

Every resync asks Prefect for the deployment's runs that finished after
`status.trackedUntil`, oldest first, so no run is missed between two resyncs
(counters in the metrics count each run once) and none is counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .conditions import set_condition

if TYPE_CHECKING:
    from .prefect_api import PrefectApi

FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
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
SKIPPED = "SKIPPED"  # a run that started outside spec.window: COMPLETED, but nothing synced


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class FinishedRun:
    """One finished flow run and the summary it published (counts and codes only)."""

    id: str
    state: str  # Prefect's final state type
    started_at: str | None
    finished_at: str
    summary: Mapping[str, Any] = field(default_factory=dict)

    @property
    def result(self) -> str:
        """The state type, or SKIPPED for a run that did not sync."""
        return SKIPPED if "skipped" in self.summary else self.state

    def counts(self) -> dict[str, int]:
        return {k: int(v) for k in COUNTS if isinstance(v := self.summary.get(k), int)}

    def reasons(self) -> dict[str, int]:
        found = self.summary.get("reasons")
        if not isinstance(found, Mapping):
            return {}
        return {str(k): int(v) for k, v in found.items() if isinstance(v, int)}

    def failure(self) -> str | None:
        if self.state == "COMPLETED":
            return None
        code = self.summary.get("failed")
        return code if isinstance(code, str) else self.state.capitalize()

    def last_sync(self) -> dict[str, Any]:
        failure = self.failure()
        return {
            "flowRunId": self.id,
            "state": self.state,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            **({"failure": failure} if failure else {}),
            **self.counts(),
        }


@dataclass(frozen=True)
class Tracked:
    next_run_at: str | None
    finished: list[FinishedRun]  # newly finished, oldest first


def track(prefect: PrefectApi, deployment_id: str, since: str | None) -> Tracked:
    """Runs of the deployment that finished after `since`, and the next scheduled start."""
    runs = prefect.finished_flow_runs(deployment_id, FINAL, after=since)
    watermark = parse_time(since) if since else None
    new = [
        r
        for r in runs
        if r.get("end_time") and (watermark is None or parse_time(r["end_time"]) > watermark)
    ]
    summaries = prefect.run_summaries([str(r["id"]) for r in new]) if new else {}
    finished = sorted(
        (
            FinishedRun(
                id=str(r["id"]),
                state=r["state"]["type"],
                started_at=r.get("start_time"),
                finished_at=r["end_time"],
                summary=summaries.get(str(r["id"]), {}),
            )
            for r in new
        ),
        key=lambda run: parse_time(run.finished_at),
    )
    upcoming = prefect.next_scheduled_run(deployment_id)
    return Tracked(upcoming.get("expected_start_time") if upcoming else None, finished)


def advance(
    status: Mapping[str, Any], finished: Sequence[FinishedRun], generation: int
) -> dict[str, Any]:
    """The status fields that change once `finished` (oldest first) are accounted for."""
    if not finished:
        return {}
    changes: dict[str, Any] = {"trackedUntil": finished[-1].finished_at}
    synced = [run for run in finished if run.result != SKIPPED]
    if synced:
        latest = synced[-1]
        failure = latest.failure()
        changes["lastSync"] = latest.last_sync()
        changes["conditions"] = set_condition(
            list(status.get("conditions") or []),
            "LastSyncSucceeded",
            "True" if failure is None else "False",
            failure or latest.state.capitalize(),
            f"flow run {latest.id} {latest.state.lower()}" + (f": {failure}" if failure else ""),
            generation,
        )
    succeeded = [run for run in synced if run.state == "COMPLETED"]
    if succeeded:
        changes["lastSuccessAt"] = succeeded[-1].finished_at
    return changes
