"""Building blocks for end-to-end engine tests on the real PostgreSQL."""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from contactsync.api.spec import ContactSyncSpec
from contactsync.engine.crypto import FieldCipher
from contactsync.engine.keyring import Keyring
from contactsync.engine.pipeline import Summary, SyncIdentity, run_sync
from contactsync.engine.records import SCALAR_FIELDS
from contactsync.engine.secrets import SecretStore
from tests.testbed import TestBed

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # contact n was last updated n hours later
FIELDS = list(SCALAR_FIELDS)


def contact(n: int, **overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "externalId": f"c{n}",
        "email": f"Person.{n}@Example.com",
        "phone": f"+1 650 253 {n % 10_000:04d}" if n % 2 else f"+44 7911 1{n % 100_000:05d}",
        "firstName": f"First{n}",
        "lastName": f"Last{n}",
        "company": "Acme",
        "jobTitle": "Engineer",
        "updatedAt": (EPOCH + timedelta(hours=n)).isoformat().replace("+00:00", "Z"),
        "deleted": "false",
    }
    record.update(overrides)
    return record


def write_csv(path: Path, records: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    return path


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@dataclass
class SyncEnv:
    """A fresh database, a secrets directory and a keyring for one test."""

    bed: TestBed
    root: Path
    database: str
    keyring: Keyring
    name: str = "crm"
    namespace: str = "sales"

    @property
    def secrets(self) -> SecretStore:
        return SecretStore(self.root / "secrets")

    @property
    def dsn(self) -> str:
        return self.bed.postgres.dsn(self.database)

    def spec(self, source: dict[str, Any], **extra: Any) -> ContactSyncSpec:
        document: dict[str, Any] = {
            "source": source,
            "destination": {
                "type": "postgres",
                "dsnSecretRef": {"name": "warehouse", "key": "dsn"},
                "table": "contacts",
            },
            "validation": {"maxRejectRatio": 0.5},
            **extra,
        }
        return ContactSyncSpec.model_validate(document)

    def run(self, spec: ContactSyncSpec, **kwargs: Any) -> Summary:
        identity = SyncIdentity(self.namespace, self.name, "uid-1")
        return run_sync(
            spec, identity, secrets=self.secrets, workers=kwargs.pop("workers", 0), **kwargs
        )

    def rows(
        self, query: str = "SELECT * FROM contacts ORDER BY external_id"
    ) -> list[dict[str, Any]]:
        with psycopg.connect(self.dsn, row_factory=psycopg.rows.dict_row) as conn:
            return conn.execute(query).fetchall()  # type: ignore[arg-type]

    def decrypt(self, row: dict[str, Any], column: str) -> str:
        return FieldCipher(self.keyring).decrypt(
            bytes(row[column]), table="contacts", column=column, record_id=row["source_id"]
        )


def new_env(bed: TestBed, root: Path) -> SyncEnv:
    database = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(bed.postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")  # generated name, not user input
    keyring = Keyring.generate()
    secrets = root / "secrets"
    (secrets / "crm-keys").mkdir(parents=True)
    (secrets / "crm-keys" / "keyring.json").write_text(keyring.to_json())
    (secrets / "warehouse").mkdir()
    (secrets / "warehouse" / "dsn").write_text(bed.postgres.dsn(database))
    return SyncEnv(bed, root, database, keyring)
