"""The Prefect flow against the real Prefect server: it runs the engine, and
nothing Prefect stores (parameters, state, result, logs) carries PII or secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.testbed import TestBed

from .sync_helpers import SyncEnv, contact, new_env, write_csv

RUN_FLOW = """
import json, sys
from contactsync.flows import contact_sync
state = contact_sync(spec=json.loads(sys.argv[1]), namespace="sales", name="crm",
                     uid="uid-1", return_state=True)
print(json.dumps({"id": str(state.state_details.flow_run_id), "type": state.type.value}))
"""


@pytest.fixture
def env(bed: TestBed, tmp_path: Path) -> SyncEnv:
    return new_env(bed, tmp_path)


def published(bed: TestBed, flow_run_id: str) -> dict[str, object]:
    """The run's summary artifact, as the operator reads it."""
    with bed.prefect.client() as api:
        artifacts = api.post(
            "/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [flow_run_id]},
                    "key": {"any_": ["contactsync-summary"]},
                }
            },
        ).json()
    assert len(artifacts) == 1
    data = artifacts[0]["data"]
    found: dict[str, object] = json.loads(data) if isinstance(data, str) else data
    return found


def run_flow(bed: TestBed, env: SyncEnv, spec: dict[str, object]) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", RUN_FLOW, json.dumps(spec)],
        env={
            **os.environ,
            "PREFECT_API_URL": bed.prefect.api_url,
            "CONTACTSYNC_SECRETS_DIR": str(env.root / "secrets"),
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    outcome: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    outcome["logs"] = result.stderr
    return outcome


def test_flow_run_stores_counts_only(bed: TestBed, env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 6)] + [contact(6, email="broken-address")]
    source = write_csv(env.root / "in.csv", records)
    spec = env.spec({"type": "csv", "path": str(source)}).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )

    outcome = run_flow(bed, env, spec)

    assert outcome["type"] == "COMPLETED"
    assert env.rows("SELECT count(*) AS n FROM contacts")[0]["n"] == 5
    with bed.prefect.client() as api:
        flow_run = api.get(f"/flow_runs/{outcome['id']}").json()
        logs = api.post(
            "/logs/filter", json={"logs": {"flow_run_id": {"any_": [outcome["id"]]}}}
        ).json()
        task_runs = api.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [outcome["id"]]}}}
        ).json()
        artifacts = api.post(
            "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [outcome["id"]]}}}
        ).json()
    assert artifacts[0]["key"] == "contactsync-summary"
    published = artifacts[0]["data"]
    published = json.loads(published) if isinstance(published, str) else published
    assert published["inserted"] == 5
    assert published["reasons"] == {"email.invalid": 1}
    stored = json.dumps([flow_run, logs, task_runs, artifacts]) + outcome["logs"]
    assert flow_run["parameters"]["spec"]["destination"]["dsnSecretRef"]["name"] == "warehouse"
    keyring = (env.root / "secrets" / "crm-keys" / "keyring.json").read_text()
    secrets = [env.bed.postgres.password, json.loads(keyring)["keys"][env.keyring.primary_id]]
    pii = ["Person.1", "example.com", "broken-address", "First1", "+1650253", "6502530001"]
    for needle in secrets + pii:
        assert needle not in stored, f"{needle[:4]}... leaked into what Prefect stores"
    assert flow_run["state"]["data"] is None or "example.com" not in json.dumps(flow_run["state"])
    assert any("sync summary" in log["message"] for log in logs)


def test_flow_skips_runs_outside_the_window(bed: TestBed, env: SyncEnv) -> None:
    source = write_csv(env.root / "in.csv", [contact(1)])
    spec = env.spec(
        {"type": "csv", "path": str(source)},
        window={"start": "00:00", "end": "00:00", "timezone": "UTC"},
    )
    closed = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    # A window that contains no minute of the day: [now+1h, now+1h+1m) shifted off now.

    start = datetime.now(UTC) + timedelta(hours=2)
    closed["window"] = {
        "start": start.strftime("%H:%M"),
        "end": (start + timedelta(minutes=1)).strftime("%H:%M"),
        "timezone": "UTC",
    }
    outcome = run_flow(bed, env, closed)
    assert outcome["type"] == "COMPLETED"
    assert "outside the sync window" in outcome["logs"]
    assert published(bed, outcome["id"]) == {"skipped": "OutsideWindow"}
    with pytest.raises(Exception, match="does not exist"):
        env.rows("SELECT count(*) FROM contacts")


def test_a_refused_run_fails_and_publishes_only_its_code(bed: TestBed, env: SyncEnv) -> None:
    records = [contact(1), contact(2, email="not-an-address"), contact(3, phone="12")]
    source = write_csv(env.root / "in.csv", records)
    spec = env.spec({"type": "csv", "path": str(source)}, validation={"maxRejectRatio": 0.1})

    outcome = run_flow(bed, env, spec.model_dump(mode="json", by_alias=True, exclude_none=True))

    assert outcome["type"] == "FAILED"
    # The code, not the message: a message may quote counts today and values tomorrow.
    assert published(bed, outcome["id"]) == {"failed": "RejectRatioExceeded"}
