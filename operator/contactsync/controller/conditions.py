"""Status conditions in the standard Kubernetes shape.

`lastTransitionTime` moves only when a condition's status flips, so watchers
can tell how long something has been true; reason and message may change
freely without resetting it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]
TYPES = (
    "Ready",
    "Reconciling",
    "Stalled",
    "WorkPoolReady",
    "DeploymentReady",
    "LastSyncSucceeded",
    "ReconciliationPaused",
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: Status,
    reason: str,
    message: str,
    generation: int,
    *,
    at: str | None = None,
) -> list[dict[str, Any]]:
    """A new list with `type_` set; the others are kept as they are."""
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != status
    condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": (at or now())
        if changed or previous is None
        else previous.get("lastTransitionTime", at or now()),
    }
    out = [dict(c) for c in conditions if c.get("type") != type_]
    out.append(condition)
    return sorted(out, key=lambda c: TYPES.index(c["type"]) if c["type"] in TYPES else 99)


def get(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def transitions(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Conditions whose status differs between two lists (for Events)."""
    return [
        c
        for c in after
        if (old := get(before, c["type"])) is None or old.get("status") != c["status"]
    ]


def newsworthy(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The transitions that get an Event: Ready and LastSyncSucceeded flips, and a
    Stalled that starts or ends. A Stalled born False is no news: every healthy
    object starts that way, and an Event each would double a burst's Events."""
    return [
        c
        for c in transitions(before, after)
        if c["type"] in ("Ready", "LastSyncSucceeded")
        or (c["type"] == "Stalled" and (c["status"] == "True" or get(before, "Stalled")))
    ]
