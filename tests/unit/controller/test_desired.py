from __future__ import annotations

import copy
from typing import Any

from contactsync.api.spec import ContactSyncSpec
from contactsync.controller import desired
from contactsync.controller.settings import Settings

SETTINGS = Settings(prefect_api_url="https://prefect.example/api")
META = {"name": "crm", "namespace": "sales", "uid": "u-1"}
SPEC = ContactSyncSpec.model_validate(
    {
        "source": {
            "type": "rest",
            "url": "https://crm.example/contacts",
            "auth": {"apiKey": {"secretRef": {"name": "crm-key", "key": "token"}}},
            "tls": {"caSecretRef": {"name": "crm-ca", "key": "ca.crt"}},
        },
        "destination": {
            "type": "postgres",
            "table": "contacts",
            "dsnSecretRef": {"name": "warehouse", "key": "dsn"},
        },
        "schedule": {"cron": "*/15 * * * *"},
    }
)
DEFAULT_TEMPLATE: dict[str, Any] = {
    "job_configuration": {
        "job_manifest": {"spec": {"template": {"spec": {"containers": [{"name": "prefect-job"}]}}}}
    },
    "variables": {"properties": {"finished_job_ttl": {"type": "integer"}}},
}


def test_referenced_secrets_are_every_ref_in_the_spec() -> None:
    assert desired.referenced_secrets(SPEC) == ["crm-ca", "crm-key", "warehouse"]


def test_sync_service_account_has_no_token_and_passes_annotations() -> None:
    account = desired.sync_service_account(META, {"iam.example/role": "r"})
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["annotations"] == {"iam.example/role": "r"}
    assert account["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_key_secret_is_not_owned() -> None:
    secret = desired.generated_key_secret(META, "crm-keys", "{}")
    assert "ownerReferences" not in secret["metadata"]


def test_job_template_is_restricted_and_the_default_untouched() -> None:
    original = copy.deepcopy(DEFAULT_TEMPLATE)
    template = desired.harden_job_template(DEFAULT_TEMPLATE)
    assert original == DEFAULT_TEMPLATE
    pod = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]["securityContext"]
    assert container == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["volumes"] == "{{ secret_volumes }}"


def test_deployment_carries_references_only_and_identifying_tags() -> None:
    deployment = desired.prefect_deployment(META, SPEC, SETTINGS)
    assert deployment["name"] == "sales.crm"
    assert deployment["parameters"]["spec"]["source"]["auth"]["apiKey"]["secretRef"] == {
        "name": "crm-key",
        "key": "token",
    }
    assert "contactsync.dev/uid=u-1" in deployment["tags"]
    mounts = deployment["job_variables"]["secret_mounts"]
    assert [m["mountPath"].rsplit("/", 1)[1] for m in mounts] == [
        "crm-ca",
        "crm-key",
        "crm-keys",
        "warehouse",
    ]
    assert all(m["readOnly"] for m in mounts)
    assert deployment["paused"] is False


def test_drift_is_empty_for_what_prefect_returns_of_the_same_deployment() -> None:
    want = desired.prefect_deployment(META, SPEC, SETTINGS)
    live = {
        **want,
        "id": "d-1",
        "tags": list(reversed(want["tags"])),
        "schedules": [
            {
                "id": "s",
                "schedule": {"cron": "*/15 * * * *", "timezone": "UTC", "day_or": True},
                "active": True,
            }
        ],
    }
    assert desired.deployment_drift(want, live) == {}
    suspended = desired.prefect_deployment(
        META, SPEC.model_copy(update={"suspend": True}), SETTINGS
    )
    drift = desired.deployment_drift(suspended, live)
    assert set(drift) == {"paused", "parameters"}  # the spec in the parameters changed too
    assert drift["paused"] is True


def test_work_pool_drift() -> None:
    pool = desired.work_pool(SPEC, "sales", "kubernetes", DEFAULT_TEMPLATE)
    assert pool["name"] == "contactsync-sales"
    assert desired.work_pool_drift(pool, {**pool}) == {}
    assert desired.work_pool_drift(pool, {**pool, "concurrency_limit": 9}) == {
        "concurrency_limit": 1
    }
