"""The generated CRD in a real kube-apiserver: it installs with plain
`kubectl apply`, accepts what pydantic accepts, and rejects what pydantic
rejects, naming the same field."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from contactsync.api.crd import GROUP, NAME, PLURAL, VERSION
from contactsync.api.spec import ContactSync, ContactSyncSpec
from tests.api_cases import EXAMPLE, INVALID, VALID, Case, Invalid, changed, example
from tests.testbed import TestBed

CRD_FILE = Path(__file__).parents[3] / "crds" / "contactsync.dev_contactsyncs.yaml"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50]


@pytest.fixture(scope="module")
def crd(bed: TestBed) -> str:
    # Client-side apply on purpose: it stores the whole CRD in the
    # last-applied annotation, so this proves the file is small enough.
    bed.kube.kubectl("apply", "-f", str(CRD_FILE))
    bed.kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{NAME}")
    # Left installed: later modules of the session may use it too, and apply
    # is idempotent.
    return NAME


@pytest.fixture(scope="module")
def api(bed: TestBed) -> Iterator[client.CustomObjectsApi]:
    with bed.kube.api_client() as admin:
        yield client.CustomObjectsApi(admin)


@pytest.fixture(scope="module")
def ns(bed: TestBed, crd: str) -> Iterator[str]:
    """One namespace for the module: most cases create nothing."""
    name = f"crd-{uuid.uuid4().hex[:8]}"
    with bed.kube.api_client() as admin:
        core = client.CoreV1Api(admin)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        yield name
        core.delete_namespace(name)


def create(
    api: client.CustomObjectsApi, ns: str, manifest: dict[str, Any], **options: Any
) -> dict[str, Any]:
    created: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, manifest, **options
    )
    return created


def named(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return changed(manifest, {"metadata.name": name})


def causes(rejected: ApiException) -> list[tuple[str, str]]:
    """(field, message) of each error the server reported."""
    status = json.loads(rejected.body)
    return [(c.get("field", ""), c["message"]) for c in status["details"]["causes"]]


def assert_names(rejected: ApiException, field: str, text: str) -> None:
    """One of the server's errors is about `field` and says `text`."""
    assert rejected.status == 422
    reported = causes(rejected)
    assert any(f == field and text in message for f, message in reported), reported


def test_crd_is_established_with_its_names(bed: TestBed, crd: str) -> None:
    stored = json.loads(bed.kube.kubectl("get", "crd", crd, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
    resources = bed.kube.kubectl("api-resources", f"--api-group={GROUP}", "-o", "wide").stdout
    assert re.search(
        r"contactsyncs\s+csync\s+contactsync.dev/v1alpha1\s+true\s+ContactSync", resources
    )


def test_example_applies_with_kubectl(bed: TestBed, crd: str, ns: str) -> None:
    bed.kube.kubectl("apply", "-n", ns, "-f", str(EXAMPLE))
    listed = bed.kube.kubectl("get", "csync", "-n", ns, "-o", "name").stdout
    assert listed.strip() == "contactsync.contactsync.dev/crm-contacts"
    bed.kube.kubectl("delete", "-n", ns, "-f", str(EXAMPLE))


@pytest.mark.parametrize("case", VALID, ids=lambda case: case.id)
def test_valid_manifest_accepted_with_pydantic_defaults(
    api: client.CustomObjectsApi, ns: str, case: Case
) -> None:
    manifest = named(case.manifest(), slug(case.id))
    stored = create(api, ns, manifest)
    try:
        parsed = ContactSync.model_validate(manifest).spec
        if not case.rewritten:
            # The server filled in exactly the defaults pydantic fills in: the
            # stored spec is what the engine will run with.
            assert stored["spec"] == parsed.model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
        assert ContactSyncSpec.model_validate(stored["spec"]) == parsed
    finally:
        api.delete_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, manifest["metadata"]["name"]
        )


@pytest.mark.parametrize("case", INVALID, ids=lambda case: case.id)
def test_invalid_manifest_rejected_by_both_layers(
    api: client.CustomObjectsApi, ns: str, case: Invalid
) -> None:
    manifest = case.manifest()
    with pytest.raises(ValidationError):
        ContactSync.model_validate(manifest)

    with pytest.raises(ApiException) as rejected:
        create(api, ns, manifest)
    assert_names(rejected.value, case.field, case.server)


# -- unknown fields: a Secret reference has no namespace --------------------------------


def with_namespaced_secret(name: str) -> dict[str, Any]:
    return named(changed(example(), {"spec.destination.dsnSecretRef.namespace": "other"}), name)


def test_kubectl_rejects_a_namespace_in_a_secret_reference(
    bed: TestBed, crd: str, ns: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "cross-namespace.yaml"
    manifest.write_text(yaml.safe_dump(with_namespaced_secret("cross-namespace")))
    # kubectl asks for strict field validation by default.
    result = bed.kube.kubectl("apply", "-n", ns, "-f", str(manifest), check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.destination.dsnSecretRef.namespace"' in result.stderr


def test_strict_field_validation_rejects_a_namespace_in_a_secret_reference(
    api: client.CustomObjectsApi, ns: str
) -> None:
    with pytest.raises(ApiException) as rejected:
        create(api, ns, with_namespaced_secret("strict"), field_validation="Strict")
    assert rejected.value.status == 400
    assert 'unknown field \\"spec.destination.dsnSecretRef.namespace\\"' in rejected.value.body


def test_lenient_clients_get_the_namespace_pruned(
    bed: TestBed, api: client.CustomObjectsApi, ns: str, tmp_path: Path
) -> None:
    # Without strict validation the field is dropped, never stored or used:
    # the reference still means a Secret in the ContactSync's own namespace.
    manifest = tmp_path / "warned.yaml"
    manifest.write_text(yaml.safe_dump(with_namespaced_secret("warned")))
    result = bed.kube.kubectl("apply", "--validate=warn", "-n", ns, "-f", str(manifest))
    assert 'unknown field "spec.destination.dsnSecretRef.namespace"' in result.stderr
    stored = create(api, ns, with_namespaced_secret("pruned"))
    assert stored["spec"]["destination"]["dsnSecretRef"] == {"name": "contacts-db", "key": "dsn"}
    for name in ("warned", "pruned"):
        api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


# -- immutable fields --------------------------------------------------------------------


@pytest.fixture
def existing(api: client.CustomObjectsApi, ns: str) -> Iterator[str]:
    """The example, stored, with one encrypted field so that the default differs."""
    name = f"existing-{uuid.uuid4().hex[:6]}"
    create(api, ns, named(changed(example(), {"spec.encryption.fields": ["email"]}), name))
    yield name
    api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def patch(api: client.CustomObjectsApi, ns: str, name: str, spec: dict[str, Any]) -> Any:
    """A JSON merge patch of the spec, as `kubectl patch --type=merge` sends."""
    return api.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": spec})


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (
            {"destination": {"table": "other_contacts"}},
            "spec.destination.table",
            "destination.table is immutable: create a new ContactSync to write elsewhere",
        ),
        (
            {"destination": {"type": "jsonl", "path": "/data/out.jsonl"}},
            "spec.destination.type",
            "destination.type is immutable",
        ),
        (
            {"encryption": {"fields": ["email", "phone"]}},
            "spec.encryption.fields",
            "encryption.fields is immutable",
        ),
        (
            # Dropping the list means the default list, which is a change too.
            {"encryption": {"fields": None}},
            "spec.encryption.fields",
            "encryption.fields is immutable",
        ),
    ],
    ids=["table", "type", "encryption fields", "encryption fields to default"],
)
def test_immutable_field_cannot_change(
    api: client.CustomObjectsApi,
    ns: str,
    existing: str,
    spec: dict[str, Any],
    field: str,
    message: str,
) -> None:
    with pytest.raises(ApiException) as rejected:
        patch(api, ns, existing, spec)
    assert_names(rejected.value, field, message)


def test_a_table_cannot_be_added_later(api: client.CustomObjectsApi, ns: str) -> None:
    name = "table-later"
    jsonl = changed(example(), {"spec.destination": {"type": "jsonl", "path": "/data/out.jsonl"}})
    create(api, ns, named(jsonl, name))
    try:
        with pytest.raises(ApiException) as rejected:
            patch(api, ns, name, {"destination": {"table": "crm_contacts"}})
        assert_names(rejected.value, "spec.destination.table", "destination.table is immutable")
    finally:
        api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)


def test_mutable_fields_and_reordered_encryption_fields_are_accepted(
    api: client.CustomObjectsApi, ns: str
) -> None:
    name = "reordered"
    create(api, ns, named(example(), name))
    try:
        updated = patch(
            api,
            ns,
            name,
            {
                "mode": "full",
                "schedule": {"cron": None, "intervalSeconds": 3600},
                # A set: the same fields in another order are no change.
                "encryption": {"fields": ["lastName", "firstName", "phone", "email"]},
            },
        )
    finally:
        api.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    assert updated["spec"]["mode"] == "full"
    assert updated["spec"]["schedule"] == {"intervalSeconds": 3600, "timezone": "Europe/Berlin"}


# -- status ------------------------------------------------------------------------------


def test_status_is_typed_and_shown_in_columns(
    bed: TestBed, api: client.CustomObjectsApi, ns: str, existing: str
) -> None:
    condition = {
        "type": "Ready",
        "status": "False",
        "reason": "SourceUnreachable",
        "message": "token endpoint answered 503",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    status = {
        "observedGeneration": 1,
        "conditions": [condition],
        "prefect": {"workPoolName": "contactsync-team-a"},
        "lastSync": {"state": "FAILED", "finishedAt": "2026-01-01T00:00:00Z"},
        "nextRunAt": "2026-01-01T00:15:00Z",
    }
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, ns, PLURAL, existing, {"status": status}
    )
    table = bed.kube.kubectl("get", "csync", existing, "-n", ns, "-o", "wide").stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "READY",
        "REASON",
        "LAST",
        "SYNC",
        "NEXT",
        "RUN",
        "AGE",
        "MESSAGE",
        "WORK",
        "POOL",
    ]
    row = table[1]
    for shown in (existing, "False", "SourceUnreachable", "token endpoint answered 503"):
        assert shown in row
    assert row.rstrip().endswith("contactsync-team-a")

    invalid = {"lastSync": {"read": -1}, "conditions": [{**condition, "status": "Maybe"}]}
    with pytest.raises(ApiException) as rejected:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, ns, PLURAL, existing, {"status": invalid}
        )
    assert_names(rejected.value, "status.lastSync.read", "greater than or equal to 0")
    assert_names(rejected.value, "status.conditions[0].status", 'Unsupported value: "Maybe"')
