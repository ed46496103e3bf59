"""The `contactsync` command line, as other tools run it: a subprocess, JSON on
stdout, exit codes 0/1/2, one-line errors on stderr."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from contactsync.engine.crypto import FieldCipher
from contactsync.engine.keyring import Keyring
from tests.testbed import TestBed

from .sync_helpers import SyncEnv, contact, new_env, write_csv


def cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "contactsync.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(bed: TestBed, tmp_path: Path) -> SyncEnv:
    return new_env(bed, tmp_path)


def manifest(env: SyncEnv, source: Path, **spec: Any) -> Path:
    document = {
        "apiVersion": "contactsync.dev/v1alpha1",
        "kind": "ContactSync",
        "metadata": {"name": env.name, "namespace": env.namespace},
        "spec": {
            "source": {"type": "csv", "path": str(source)},
            "destination": {
                "type": "postgres",
                "table": "contacts",
                "dsnSecretRef": {"name": "warehouse", "key": "dsn"},
            },
            **spec,
        },
    }
    path = env.root / "contactsync.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_validate_reports_hostile_csv_with_reason_codes(tmp_path: Path) -> None:
    good = "c{n},p{n}@example.com,+1 650 253 000{n},Ann,2025-01-01T00:00:00Z\r\n"
    data = b"\xef\xbb\xbfexternalId,email,phone,firstName,updatedAt\r\n"
    data += good.format(n=1).encode()
    data += (
        b'c2,=cmd|calc!A1@example.com,+1 650 253 0002,"=HYPERLINK(""x"")",2025-01-01T00:00:00Z\r\n'
    )
    data += b'c3,p3@example.com,+1 650 253 0003,"multi\nline",2025-01-01T00:00:00Z\r\n'
    data += b"c4,p4@example.com,+1 650 253 0004,Nul\x00Name,2025-01-01T00:00:00Z\r\n"
    data += (
        b"c5,p5@example.com,+1 650 253 0005," + b"x" * (10 * 2**20) + b",2025-01-01T00:00:00Z\r\n"
    )
    data += b"c6,p6@example.com,+1 650 253 0006,Bad\xff\xfeUtf8,2025-01-01T00:00:00Z\r\n"
    data += good.format(n=7).encode()
    path = tmp_path / "hostile.csv"
    path.write_bytes(data)

    result = cli("validate", str(path), "--format", "csv", "--output", "json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_record = {r["record"]: r["reasons"] for r in report["rejects"]}
    # `=cmd|calc!A1@example.com` is a valid address: formulas are data on the way in
    # and neutralised only where the engine writes CSV.
    assert 2 not in by_record
    assert by_record[4] == ["record.malformed"]
    assert by_record[5] == ["record.too_large"]
    assert by_record[6] == ["encoding.invalid"]
    assert 1 not in by_record
    assert 7 not in by_record
    assert report["valid"] == 4  # 1, 2, 3 (newline collapsed in a name) and 7
    assert report["rejected"] == 3
    assert sum(report["reasons"].values()) == 3
    assert "HYPERLINK" not in result.stdout + result.stderr


def test_validate_usage_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    missing = cli("validate", str(tmp_path / "nope.csv"), "--format", "csv")
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1
    assert cli("validate", "--format", "xml", "x").returncode == 2


def test_sync_manifest_audit_and_verify(env: SyncEnv) -> None:
    source = write_csv(env.root / "in.csv", [contact(n) for n in range(1, 6)])
    audit = env.root / "audit.jsonl"
    result = cli(
        "sync",
        "-f",
        str(manifest(env, source)),
        "--secrets-dir",
        str(env.root / "secrets"),
        "--audit-log",
        str(audit),
        "--output",
        "json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["read"], summary["inserted"]) == (5, 5)
    assert "example.com" not in result.stdout + result.stderr

    verified = cli("audit", "verify", str(audit))
    assert verified.returncode == 0, verified.stderr
    lines = audit.read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["batch", "run"]
    tampered = lines[1].replace('"inserted":5', '"inserted":4')
    assert tampered != lines[1]
    audit.write_text("\n".join([lines[0], tampered]) + "\n")
    broken = cli("audit", "verify", str(audit))
    assert broken.returncode == 1
    assert "line 2" in broken.stderr


def test_sync_refused_by_a_guard_exits_1_and_invalid_manifest_exits_2(env: SyncEnv) -> None:
    source = write_csv(env.root / "in.csv", [contact(1), contact(2, email="bad")])
    refused = cli(
        "sync", "-f", str(manifest(env, source)), "--secrets-dir", str(env.root / "secrets")
    )
    assert refused.returncode == 1
    assert "validation.maxRejectRatio" in refused.stderr
    invalid = manifest(env, source, mode="sometimes")
    result = cli("sync", "-f", str(invalid))
    assert result.returncode == 2
    assert "spec.mode" in result.stderr


def test_rotation_reencrypt_and_formula_safe_export(env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 8)]
    records[2] = contact(3, company='=HYPERLINK("https://evil.example","x")')
    spec = env.spec({"type": "csv", "path": str(write_csv(env.root / "in.csv", records))})
    env.run(spec)
    old_key = env.keyring.primary_id

    keyring_file = env.root / "secrets" / "crm-keys" / "keyring.json"
    rotated = cli("keys", "rotate", "--keyring", str(keyring_file), "--write", str(keyring_file))
    assert rotated.returncode == 0, rotated.stderr
    new = Keyring.from_file(keyring_file)
    assert new.primary_id != old_key
    assert set(new.key_ids) == {old_key, new.primary_id}

    path = manifest(env, env.root / "in.csv")
    result = cli(
        "reencrypt",
        "-f",
        str(path),
        "--secrets-dir",
        str(env.root / "secrets"),
        "--batch-size",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 7
    assert json.loads(result.stdout)["batches"] == 3
    rows = env.rows()
    assert {r["key_id"] for r in rows} == {new.primary_id}
    cipher = FieldCipher(new)
    assert all(cipher.is_current(bytes(r["email"])) for r in rows)
    again = cli("reencrypt", "-f", str(path), "--secrets-dir", str(env.root / "secrets"))
    assert json.loads(again.stdout)["rows"] == 0  # resumable: nothing left to do

    out = env.root / "export.csv"
    exported = cli(
        "export", "-f", str(path), "--secrets-dir", str(env.root / "secrets"), "--out", str(out)
    )
    assert exported.returncode == 0, exported.stderr
    assert out.stat().st_mode & 0o077 == 0
    text = out.read_text()
    assert all(line.startswith('"') for line in text.splitlines())  # every field quoted
    exported_rows = list(csv.DictReader(text.splitlines()))
    by_id = {r["externalId"]: r for r in exported_rows}
    assert by_id["c3"]["company"].startswith("'=HYPERLINK")
    assert by_id["c1"]["email"] == "Person.1@example.com"
