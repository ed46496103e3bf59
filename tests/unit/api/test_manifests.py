"""The pydantic half of the two-layer agreement: the manifests in
tests/api_cases.py, accepted or rejected with the field the API server names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from contactsync.api.spec import ContactSync
from contactsync.api.status import ContactSyncStatus
from tests.api_cases import INVALID, VALID, Case, Invalid, changed, example


def field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location in the API server's notation: spec.fields[1]."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def rejection(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as rejected:
        ContactSync.model_validate(manifest)
    return [(field_path(error["loc"]), error["msg"]) for error in rejected.value.errors()]


def test_example_is_a_valid_contactsync() -> None:
    sync = ContactSync.model_validate(example())
    assert sync.spec.source.type == "rest"
    assert sync.spec.destination.tls.ssl_mode == "verify-full"
    assert sync.spec.source.tls.ca_secret_ref is not None
    assert sync.spec.source.auth is not None
    assert sync.spec.source.auth.oauth2 is not None
    assert sync.spec.schedule is not None
    assert sync.spec.schedule.cron == "*/15 * * * *"
    assert sync.spec.window is not None
    assert sync.spec.mode == "incremental"


@pytest.mark.parametrize("case", VALID, ids=lambda case: case.id)
def test_valid_manifest_accepted(case: Case) -> None:
    ContactSync.model_validate(case.manifest())


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case.id)
def test_invalid_manifest_rejected_naming_the_field(case: Invalid) -> None:
    errors = rejection(case.manifest())
    # A model-level validator reports the object (spec.source) where the CEL
    # rule can point at the missing field (spec.source.url): a prefix agrees.
    assert any(
        case.field.startswith(path) and case.pydantic in message for path, message in errors
    ), errors


def test_immutability_needs_the_old_object() -> None:
    # Each version of the spec is valid on its own: only the API server, which
    # sees the old and the new object together, refuses the change (see
    # tests/integration/api).
    before = example()
    after = changed(before, {"spec.destination.table": "other_contacts"})
    assert ContactSync.model_validate(before) != ContactSync.model_validate(after)


def test_namespace_in_a_secret_reference_is_rejected() -> None:
    manifest = example()
    manifest["spec"]["destination"]["dsnSecretRef"]["namespace"] = "other"
    assert rejection(manifest) == [
        ("spec.destination.dsnSecretRef.namespace", "Extra inputs are not permitted")
    ]


def test_status_round_trips_in_its_wire_form() -> None:
    wire = {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Synced",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "prefect": {
            "workPoolName": "contactsync-team-a",
            "deploymentId": "0b6a4c52-53c4-4f6e-9d1e-8a8c1c2e2f10",
            "deploymentName": "contact-sync/team-a-crm",
        },
        "lastSync": {
            "flowRunId": "5f0e7f0c-2a7e-4cde-8a3f-0d6f3f1b9a11",
            "state": "COMPLETED",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:01:00Z",
            "read": 10,
            "valid": 9,
            "rejected": 1,
            "quarantined": 1,
            "inserted": 9,
            "updated": 0,
            "deleted": 0,
            "unchanged": 0,
            "merged": 0,
        },
        "nextRunAt": "2026-01-01T00:15:00Z",
        "keys": {"secretName": "crm-keys", "primaryKeyId": "k1-0f3a77c2"},
    }
    status = ContactSyncStatus.model_validate(wire)
    assert ContactSyncStatus.model_validate(status.model_dump(mode="json", by_alias=True)) == status
    assert status.conditions[0].status == "True"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"conditions": [{"type": "Ready", "status": "Maybe"}]}, "conditions[0].status"),
        ({"lastSync": {"read": -1}}, "lastSync.read"),
        ({"lastSync": {"state": "Done"}}, "lastSync.state"),
        ({"keys": {"primaryKeyId": "K1"}}, "keys.primaryKeyId"),
    ],
)
def test_status_is_typed(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as rejected:
        ContactSyncStatus.model_validate(change)
    assert field in [field_path(error["loc"]) for error in rejected.value.errors()]
