"""Syncs over real HTTPS: REST and file sources with OAuth 2.0, a REST
destination with idempotency keys, and failures that must leave nothing behind."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from contactsync.engine.errors import SyncFailedError
from contactsync.engine.http import HttpError, TlsError, TransportError
from tests.testbed import TestBed
from tests.testbed.pki import CertificateAuthority

from .contacts_api import ContactsApi
from .sync_helpers import FIELDS, SyncEnv, contact, new_env


@pytest.fixture
def env(bed: TestBed, tmp_path: Path) -> SyncEnv:
    return new_env(bed, tmp_path)


def api_records(count: int) -> list[object]:
    # The test API filters `updated_since` on `updated_at`; the engine reads `updatedAt`.
    return [{**contact(n), "updated_at": contact(n)["updatedAt"]} for n in range(1, count + 1)]


def oauth_source(env: SyncEnv, api: ContactsApi, ca: Path, **source: Any) -> dict[str, Any]:
    secrets = env.root / "secrets"
    (secrets / "crm-oauth").mkdir(exist_ok=True)
    (secrets / "crm-oauth" / "client-secret").write_text(api.client_secret + "\n")
    (secrets / "crm-ca").mkdir(exist_ok=True)
    shutil.copy(ca, secrets / "crm-ca" / "ca.crt")
    return {
        "type": "rest",
        "url": api.contacts_url,
        "auth": {
            "oauth2": {
                "tokenUrl": api.token_url,
                "clientId": api.client_id,
                "clientSecretRef": {"name": "crm-oauth", "key": "client-secret"},
            }
        },
        "tls": {"caSecretRef": {"name": "crm-ca", "key": "ca.crt"}},
        "pagination": {"type": "offset", "pageSize": 10},
        **source,
    }


def test_rest_source_with_oauth_into_postgres(
    env: SyncEnv, contacts_api: ContactsApi, pki: CertificateAuthority
) -> None:
    contacts_api.contacts = api_records(35)
    summary = env.run(env.spec(oauth_source(env, contacts_api, pki.cert_path)))
    assert (summary.read, summary.inserted) == (35, 35)
    assert len(contacts_api.issued_tokens) == 1
    second = env.run(env.spec(oauth_source(env, contacts_api, pki.cert_path)))
    # Incremental: only what changed since the cursor (minus the lookback) is asked for.
    assert second.read < 35
    assert "updated_since" in contacts_api.requests_to("/contacts")[-1].query


def test_csv_file_over_https_into_postgres(
    env: SyncEnv, contacts_api: ContactsApi, pki: CertificateAuthority
) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(contact(n) for n in range(1, 13))
    contacts_api.files["contacts.csv"] = b"\xef\xbb\xbf" + text.getvalue().encode()
    source = oauth_source(
        env, contacts_api, pki.cert_path, type="csv", url=f"{contacts_api.url}/files/contacts.csv"
    )
    del source["pagination"]
    summary = env.run(env.spec(source))
    assert (summary.valid, summary.inserted) == (12, 12)


def test_server_certificate_from_another_ca_is_refused(
    env: SyncEnv, contacts_api: ContactsApi, tmp_path: Path
) -> None:
    contacts_api.contacts = api_records(3)
    stranger = CertificateAuthority(tmp_path, "stranger")
    with pytest.raises(TlsError):
        env.run(env.spec(oauth_source(env, contacts_api, stranger.cert_path)))
    assert env.rows("SELECT count(*) AS n FROM contacts")[0]["n"] == 0


def test_plain_http_urls_are_refused_by_the_spec(env: SyncEnv) -> None:
    with pytest.raises(ValidationError, match="must be an https:// URL"):
        env.spec({"type": "rest", "url": "http://crm.example.com/contacts"})
    with pytest.raises(ValidationError, match="must be an https:// URL"):
        env.spec(
            {
                "type": "rest",
                "url": "https://crm.example.com/contacts",
                "auth": {
                    "oauth2": {
                        "tokenUrl": "http://crm.example.com/token",
                        "clientId": "x",
                        "clientSecretRef": {"name": "s", "key": "k"},
                    }
                },
            }
        )


def test_dropped_connection_fails_whole_and_the_next_run_has_no_gaps_or_duplicates(
    env: SyncEnv, contacts_api: ContactsApi, pki: CertificateAuthority
) -> None:
    contacts_api.contacts = api_records(45)
    spec = env.spec(oauth_source(env, contacts_api, pki.cert_path), mode="incremental")
    contacts_api.drop_after_page(3, times=5)  # page 4 of 5 is cut, every retry too
    with pytest.raises(HttpError):
        env.run(spec)
    with psycopg.connect(env.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM contacts").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM contactsync_state").fetchone() == (0,)
    contacts_api.drop_after_page(3, times=0)
    summary = env.run(spec)
    assert summary.inserted == 45
    ids = [r["external_id"] for r in env.rows()]
    assert sorted(ids) == sorted(f"c{n}" for n in range(1, 46))


def test_file_download_cut_mid_stream_writes_nothing(
    env: SyncEnv, contacts_api: ContactsApi, pki: CertificateAuthority
) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(contact(n) for n in range(1, 2000))
    contacts_api.files["big.csv"] = text.getvalue().encode()
    contacts_api.drop_files = True
    source = oauth_source(
        env, contacts_api, pki.cert_path, type="csv", url=f"{contacts_api.url}/files/big.csv"
    )
    del source["pagination"]
    with pytest.raises(TransportError):
        env.run(env.spec(source))
    assert env.rows("SELECT count(*) AS n FROM contacts")[0]["n"] == 0


def test_rest_destination_posts_encrypted_batches_once(
    env: SyncEnv, contacts_api: ContactsApi, pki: CertificateAuthority
) -> None:
    path = env.root / "in.jsonl"
    path.write_text("".join(json.dumps(contact(n)) + "\n" for n in range(1, 8)))
    destination = {
        "type": "rest",
        "url": contacts_api.upsert_url,
        "auth": oauth_source(env, contacts_api, pki.cert_path)["auth"],
        "tls": {"caSecretRef": {"name": "crm-ca", "key": "ca.crt"}},
        "batchSize": 3,
    }
    contacts_api.fail_after_apply(503, times=1)  # the first response is lost: retried
    summary = env.run(env.spec({"type": "jsonl", "path": str(path)}, destination=destination))
    assert summary.inserted == 7
    assert [len(b) for b in contacts_api.upsert_batches] == [3, 3, 1]
    assert len(contacts_api.applied) == 7
    assert len(contacts_api.replayed_keys) == 1
    first = contacts_api.applied[0]
    assert isinstance(first, dict)
    assert "example.com" not in str(contacts_api.applied)
    assert first["externalId"] == "c1"
    assert first["company"] == "Acme"


def test_rest_destination_sends_nothing_when_a_guard_refuses(
    env: SyncEnv, contacts_api: ContactsApi, pki: CertificateAuthority
) -> None:
    path = env.root / "in.jsonl"
    records = [contact(n) for n in range(1, 5)] + [contact(9, email="bad")]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    destination = {
        "type": "rest",
        "url": contacts_api.upsert_url,
        "auth": oauth_source(env, contacts_api, pki.cert_path)["auth"],
        "tls": {"caSecretRef": {"name": "crm-ca", "key": "ca.crt"}},
    }
    with pytest.raises(SyncFailedError):
        env.run(
            env.spec(
                {"type": "jsonl", "path": str(path)},
                destination=destination,
                validation={"maxRejectRatio": 0.1},
            )
        )
    assert contacts_api.upsert_batches == []
