"""`contactsync.dev/v1alpha1` ContactSync status, written by the operator.

Typed like the spec, so the CRD's status schema is generated from it too and
the API server rejects a malformed status write instead of storing it.
Conditions follow the shape of Kubernetes' `metav1.Condition`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from .spec import DnsName, Model

# The patterns and bounds of `metav1.Condition`, so generic tooling
# (`kubectl wait --for=condition=Ready`) sees the conditions it expects.
ConditionType = Annotated[
    str,
    Field(
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
        max_length=316,
    ),
]
ConditionReason = Annotated[
    str, Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", min_length=1, max_length=1024)
]
Count = Annotated[int, Field(ge=0)]
# A refused run's code (engine/errors.py), or the type name of what failed it.
FailureCode = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=64)]
Generation = Annotated[int, Field(ge=0)]
# Same shape as the engine's keyring ids (see engine/keyring.py).
KeyId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", max_length=32)]
# Prefect's StateType values.
FlowRunState = Literal[
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
]


class Condition(Model):
    """One aspect of the ContactSync's state, as in metav1.Condition."""

    type: ConditionType
    """Condition type, in CamelCase, such as Ready."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: ConditionReason
    """Machine-readable CamelCase reason for the last transition."""
    message: Annotated[str, Field(max_length=32768)]
    """Human-readable details."""
    last_transition_time: datetime
    """When status last changed."""
    observed_generation: Generation | None = None
    """The .metadata.generation the condition was set for."""


class PrefectStatus(Model):
    """What the operator created in Prefect."""

    work_pool_name: DnsName | None = None
    """Work pool runs execute in."""
    deployment_id: UUID | None = None
    """Prefect deployment id."""
    deployment_name: Annotated[str, Field(max_length=253)] | None = None
    """Prefect deployment name."""


class LastSync(Model):
    """The most recent flow run, in counts only: never record contents."""

    flow_run_id: UUID | None = None
    """Prefect flow run id."""
    state: FlowRunState | None = None
    """Prefect state type of the run."""
    started_at: datetime | None = None
    """When the run started."""
    finished_at: datetime | None = None
    """When the run finished."""
    failure: FailureCode | None = None
    """Why the run failed, as a code (e.g. DeleteRatioExceeded); unset when it did not."""
    read: Count = 0
    """Records read from the source."""
    valid: Count = 0
    """Records that passed validation."""
    rejected: Count = 0
    """Records that failed validation."""
    quarantined: Count = 0
    """Rejected records kept in quarantine."""
    inserted: Count = 0
    """Rows inserted into the destination."""
    updated: Count = 0
    """Rows updated in the destination."""
    deleted: Count = 0
    """Rows deleted from the destination (full mode)."""
    unchanged: Count = 0
    """Records whose destination row was already up to date."""
    merged: Count = 0
    """Valid records folded into another of the same run (the same contact)."""


class KeysStatus(Model):
    """The keyring in use; key ids only, never key material."""

    secret_name: Annotated[str, Field(max_length=253)] | None = None
    """Secret holding the keyring."""
    primary_key_id: KeyId | None = None
    """Id of the key new values are encrypted with."""
    rotation: Annotated[str, Field(max_length=253)] | None = None
    """The last `contactsync.dev/rotate-keys` value acted on."""


class ContactSyncStatus(Model):
    """Observed state, written by the operator."""

    observed_generation: Generation | None = None
    """The .metadata.generation last reconciled."""
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        # Keyed by type, so server-side apply merges conditions one by one.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    """Current conditions; Ready sums them up."""
    prefect: PrefectStatus | None = None
    """Prefect objects."""
    last_sync: LastSync | None = None
    """The most recent run that synced or failed (runs skipped outside the window are not)."""
    last_success_at: datetime | None = None
    """When the most recent successful sync finished."""
    tracked_until: datetime | None = None
    """End of the newest finished run already accounted for (lastSync and the metrics)."""
    next_run_at: datetime | None = None
    """When the next scheduled run starts."""
    keys: KeysStatus | None = None
    """Encryption keyring."""
    sync_now_handled: Annotated[str, Field(max_length=253)] | None = None
    """The last `contactsync.dev/sync-now` value acted on."""
