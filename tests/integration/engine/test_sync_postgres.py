"""The engine end to end into the real PostgreSQL (TLS verify-full)."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from contactsync.engine.crypto import DecryptError
from contactsync.engine.destinations import postgres as pg_destination
from contactsync.engine.errors import DeleteGuardError, SyncFailedError
from tests.testbed import TestBed

from .sync_helpers import SyncEnv, contact, new_env, write_csv, write_jsonl


@pytest.fixture
def env(bed: TestBed, tmp_path: Path) -> SyncEnv:
    return new_env(bed, tmp_path)


def csv_source(path: Path) -> dict[str, object]:
    return {"type": "csv", "path": str(path)}


def test_csv_into_postgres_encrypts_pii_and_counts_everything(env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 11)]
    records.append(contact(11, email="not-an-email"))
    records.append(contact(12, phone="12"))
    records.append(contact(3, jobTitle="CTO", updatedAt="2025-02-01T00:00:00Z"))  # newer dup
    path = write_csv(env.root / "in.csv", records)

    summary = env.run(env.spec(csv_source(path), mode="full"))

    assert (summary.read, summary.valid, summary.rejected) == (13, 11, 2)
    assert (summary.inserted, summary.merged, summary.quarantined) == (10, 1, 2)
    assert summary.reasons == {"email.invalid": 1, "phone.invalid": 1}
    rows = env.rows()
    assert [r["external_id"] for r in rows] == sorted(f"c{n}" for n in range(1, 11))
    c3 = next(r for r in rows if r["external_id"] == "c3")
    assert c3["job_title"] == "CTO"  # last writer wins
    assert env.decrypt(c3, "email") == "Person.3@example.com"
    assert env.decrypt(c3, "phone") == "+16502530003"
    raw = b"".join(bytes(r["email"]) + bytes(r["first_name"]) for r in rows)
    assert b"example.com" not in raw
    assert b"First" not in raw
    quarantine = env.rows("SELECT position, reasons, record FROM contacts_quarantine ORDER BY 1")
    assert [(q["position"], q["reasons"]) for q in quarantine] == [
        (11, ["email.invalid"]),
        (12, ["phone.invalid"]),
    ]
    assert b"not-an-email" not in bytes(quarantine[0]["record"])


def test_jsonl_into_postgres(env: SyncEnv) -> None:
    path = write_jsonl(env.root / "in.jsonl", [contact(n) for n in range(1, 6)])
    summary = env.run(env.spec({"type": "jsonl", "path": str(path)}))
    assert (summary.valid, summary.inserted) == (5, 5)


def test_rerun_of_the_same_extract_writes_nothing(env: SyncEnv) -> None:
    path = write_csv(env.root / "in.csv", [contact(n) for n in range(1, 21)])
    spec = env.spec(csv_source(path), mode="full")
    env.run(spec)
    before = env.rows("SELECT external_id, email, synced_at FROM contacts ORDER BY 1")
    again = env.run(spec)
    assert (again.inserted, again.updated, again.deleted, again.unchanged) == (0, 0, 0, 20)
    assert env.rows("SELECT external_id, email, synced_at FROM contacts ORDER BY 1") == before


def test_incremental_reads_only_what_changed(env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 31)]
    path = write_csv(env.root / "in.csv", records)
    spec = env.spec(csv_source(path), mode="incremental")
    assert env.run(spec).inserted == 30
    records[4] = contact(5, company="NewCo", updatedAt="2025-03-01T00:00:00Z")
    write_csv(path, records)
    second = env.run(spec)
    # Only records within the lookback of the cursor and the changed one are read.
    assert second.read < 30
    assert (second.inserted, second.updated) == (0, 1)
    assert (
        env.rows("SELECT company FROM contacts WHERE external_id = 'c5'")[0]["company"] == "NewCo"
    )
    state = env.rows("SELECT cursor FROM contactsync_state")[0]["cursor"]
    assert state.isoformat() == "2025-03-01T00:00:00+00:00"


def test_second_level_match_on_email_blind_index(env: SyncEnv) -> None:
    first = write_csv(env.root / "a.csv", [contact(1)])
    env.run(env.spec(csv_source(first)))
    # Another source id, same person (email differs only in case), newer.
    second = write_csv(
        env.root / "b.csv",
        [
            contact(
                99,
                email="PERSON.1@example.com",
                phone="+1 650 253 0001",
                jobTitle="VP",
                updatedAt="2025-05-01T00:00:00Z",
            )
        ],
    )
    summary = env.run(env.spec(csv_source(second)))
    assert (summary.inserted, summary.updated) == (0, 1)
    rows = env.rows()
    assert len(rows) == 1
    assert rows[0]["external_id"] == "c1"
    assert rows[0]["source_id"] == "c99"
    assert rows[0]["job_title"] == "VP"
    assert env.decrypt(rows[0], "email") == "PERSON.1@example.com"


def test_last_writer_wins_regardless_of_arrival_order(env: SyncEnv) -> None:
    newer = contact(1, jobTitle="New", updatedAt="2025-06-01T00:00:00Z")
    older = contact(1, jobTitle="Old", updatedAt="2025-01-01T00:00:00Z")
    # Full mode: an incremental run would not even read the older record.
    env.run(env.spec(csv_source(write_csv(env.root / "n.csv", [newer])), mode="full"))
    summary = env.run(env.spec(csv_source(write_csv(env.root / "o.csv", [older])), mode="full"))
    assert summary.unchanged == 1
    assert env.rows()[0]["job_title"] == "New"


def test_source_deletion_flag_soft_deletes(env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 21)]
    env.run(env.spec(csv_source(write_csv(env.root / "a.csv", records))))
    records[0] = contact(1, deleted="true", updatedAt="2025-07-01T00:00:00Z")
    summary = env.run(env.spec(csv_source(write_csv(env.root / "b.csv", records[:1]))))
    assert summary.deleted == 1
    row = env.rows("SELECT deleted_at FROM contacts WHERE external_id = 'c1'")[0]
    assert row["deleted_at"] is not None


def test_full_mode_soft_deletes_rows_missing_from_the_extract(env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 21)]
    env.run(env.spec(csv_source(write_csv(env.root / "a.csv", records)), mode="full"))
    summary = env.run(env.spec(csv_source(write_csv(env.root / "b.csv", records[1:])), mode="full"))
    assert summary.deleted == 1
    assert env.rows("SELECT count(*) AS n FROM contacts WHERE deleted_at IS NOT NULL")[0]["n"] == 1


def test_a_rejected_record_is_not_deleted_by_a_full_run(env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 21)]
    env.run(env.spec(csv_source(write_csv(env.root / "a.csv", records)), mode="full"))
    records[0] = contact(1, email="broken@")
    summary = env.run(env.spec(csv_source(write_csv(env.root / "b.csv", records)), mode="full"))
    assert (summary.rejected, summary.deleted) == (1, 0)


def test_delete_guard_refuses_and_writes_nothing(env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 21)]
    env.run(env.spec(csv_source(write_csv(env.root / "a.csv", records)), mode="full"))
    before = env.rows()
    shrunk = write_csv(env.root / "b.csv", [*records[:10], contact(50)])
    with pytest.raises(DeleteGuardError, match=r"refusing to delete 10 of 20") as refused:
        env.run(env.spec(csv_source(shrunk), mode="full", safety={"maxDeleteRatio": 0.2}))
    assert refused.value.code == "DeleteRatioExceeded"
    assert env.rows() == before


def test_reject_ratio_guard_fails_before_writing(env: SyncEnv) -> None:
    records = [contact(n) for n in range(1, 11)] + [contact(n, email="x") for n in range(11, 15)]
    path = write_csv(env.root / "in.csv", records)
    with pytest.raises(SyncFailedError, match="4 of 14 records rejected") as failed:
        env.run(env.spec(csv_source(path), validation={"maxRejectRatio": 0.1}))
    assert failed.value.code == "RejectRatioExceeded"
    with psycopg.connect(env.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM contacts").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM contacts_quarantine").fetchone() == (0,)


def test_ciphertext_moved_to_another_row_fails_to_decrypt(env: SyncEnv) -> None:
    env.run(env.spec(csv_source(write_csv(env.root / "a.csv", [contact(1), contact(2)]))))
    with psycopg.connect(env.dsn) as conn:
        conn.execute(
            "UPDATE contacts SET email = (SELECT email FROM contacts WHERE "
            "external_id = 'c2') WHERE external_id = 'c1'"
        )
    rows = {r["external_id"]: r for r in env.rows()}
    assert env.decrypt(rows["c2"], "email") == "Person.2@example.com"
    with pytest.raises(DecryptError):
        env.decrypt(rows["c1"], "email")
    with pytest.raises(DecryptError):  # moved to another column of the same row
        env.decrypt({**rows["c2"], "phone": rows["c2"]["email"]}, "phone")


def test_worker_processes_give_the_same_result(env: SyncEnv) -> None:
    path = write_csv(
        env.root / "in.csv", [contact(n) for n in range(1, 200)] + [contact(500, email="nope")]
    )
    summary = env.run(env.spec(csv_source(path)), workers=2)
    assert (summary.valid, summary.rejected, summary.inserted) == (199, 1, 199)


def test_postgres_source_into_postgres(env: SyncEnv) -> None:
    with psycopg.connect(env.dsn) as conn:
        conn.execute(
            "CREATE TABLE crm (external_id text, email text, phone text, "
            "first_name text, updated_at timestamptz, secret_notes text)"
        )
        for n in range(1, 8):
            conn.execute(
                "INSERT INTO crm VALUES (%s, %s, %s, %s, now(), 'x')",
                (f"p{n}", f"p{n}@example.org", "+1 650 253 0000", f"F{n}"),
            )
    (env.root / "secrets" / "crm-db").mkdir()
    (env.root / "secrets" / "crm-db" / "dsn").write_text(env.dsn)
    summary = env.run(
        env.spec(
            {"type": "postgres", "dsnSecretRef": {"name": "crm-db", "key": "dsn"}, "table": "crm"}
        )
    )
    # They share a phone, but the phone only matches records without an email:
    # seven different emails stay seven contacts. Unmapped columns are never read.
    assert (summary.valid, summary.inserted) == (7, 7)
    assert "x" not in {str(v) for row in env.rows() for v in row["attributes"].values()}


def test_phone_matches_a_record_without_email(env: SyncEnv) -> None:
    env.run(env.spec(csv_source(write_csv(env.root / "a.csv", [contact(1)]))))
    later = contact(7, email="", phone="+1 (650) 253-0001", updatedAt="2025-08-01T00:00:00Z")
    summary = env.run(env.spec(csv_source(write_csv(env.root / "b.csv", [later]))))
    assert summary.updated == 1
    assert [r["external_id"] for r in env.rows()] == ["c1"]


def test_postgres_source_reads_a_query_and_only_reads(env: SyncEnv) -> None:
    with psycopg.connect(env.dsn) as conn:
        conn.execute(
            "CREATE TABLE people (id int, mail text, first text, changed timestamptz, note text)"
        )
        for n in range(1, 6):
            conn.execute(
                "INSERT INTO people VALUES (%s, %s, %s, now() - %s * interval '1 hour', '{x}')",
                (n, f"q{n}@{'example.org' if n % 2 else 'example.net'}", f"F{n}", n),
            )
    (env.root / "secrets" / "crm-db").mkdir()
    (env.root / "secrets" / "crm-db" / "dsn").write_text(env.dsn)

    def source(query: str) -> dict[str, object]:
        ref = {"name": "crm-db", "key": "dsn"}
        return {"type": "postgres", "dsnSecretRef": ref, "query": query}

    # Columns are renamed to the contact fields; a literal % and braces stay text.
    summary = env.run(
        env.spec(
            source(
                "SELECT 'p' || id AS external_id, mail AS email, first AS first_name, "
                "changed AS updated_at FROM people WHERE mail LIKE '%example.org' "
                "AND note = '{x}'"
            )
        )
    )
    assert (summary.read, summary.inserted) == (3, 3)
    assert sorted(env.decrypt(row, "email") for row in env.rows()) == [
        "q1@example.org",
        "q3@example.org",
        "q5@example.org",
    ]

    # A query that would write fails: a write through a function (the
    # read-only transaction refuses it), a writing CTE, a second statement.
    # The source is untouched and the destination gets nothing more.
    with psycopg.connect(env.dsn) as conn:
        conn.execute("CREATE SEQUENCE people_seq")
    writers = {
        "SELECT 'p' || nextval('people_seq') AS external_id, now() AS updated_at FROM people": (
            "read-only transaction"
        ),
        "WITH gone AS (DELETE FROM people RETURNING id) "
        "SELECT 'p' || id AS external_id, now() AS updated_at FROM gone": "data-modifying",
        "SELECT now() AS updated_at; DELETE FROM people": "syntax error",
    }
    for query, refusal in writers.items():
        with pytest.raises(psycopg.Error, match=refusal):
            env.run(env.spec(source(query)))
    with psycopg.connect(env.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone() == (5,)
        assert conn.execute("SELECT is_called FROM people_seq").fetchone() == (False,)
    assert len(env.rows()) == 3


@pytest.mark.parametrize(("bulk", "referenced"), [(True, False), (True, True), (False, False)])
def test_a_first_load_builds_its_indexes_afterwards(
    env: SyncEnv, monkeypatch: pytest.MonkeyPatch, bulk: bool, referenced: bool
) -> None:
    # Lowered threshold: the bulk path on a small load. The table exists but
    # is empty (made by the destination's own DDL), as before a first sync.
    monkeypatch.setattr(pg_destination, "BULK_LOAD_MIN", 5 if bulk else 10**9)
    with psycopg.connect(env.dsn) as conn:
        for statement in pg_destination.ddl("contacts", frozenset({"email"})):
            conn.execute(statement)
        if referenced:  # a foreign key needs the primary key: it stays
            conn.execute("CREATE TABLE notes (contact text REFERENCES contacts (external_id))")

    def indexes() -> dict[str, tuple[int, str]]:
        query = (
            "SELECT indexrelid::regclass::text, indexrelid::int, pg_get_indexdef(indexrelid)"
            " FROM pg_index WHERE indrelid = 'contacts'::regclass"
        )
        with psycopg.connect(env.dsn) as conn:
            return {name: (oid, text) for name, oid, text in conn.execute(query).fetchall()}

    before = indexes()
    path = write_csv(env.root / "in.csv", [contact(n) for n in range(1, 9)])
    assert env.run(env.spec(csv_source(path))).inserted == 8
    after = indexes()
    # The same indexes, defined the same way; rebuilt (new oids) only in bulk.
    assert {n: d for n, (_, d) in after.items()} == {n: d for n, (_, d) in before.items()}
    rebuilt = {n for n in after if after[n][0] != before[n][0]}
    blind = {"contacts_email_bidx", "contacts_phone_bidx"}
    if not bulk:
        assert rebuilt == set()
    else:
        assert rebuilt == (blind if referenced else blind | {"contacts_pkey"})
    with psycopg.connect(env.dsn) as conn:
        constraint = "SELECT contype FROM pg_constraint WHERE conname = 'contacts_pkey'"
        assert conn.execute(constraint).fetchall() == [("p",)]
    # And they serve the second-level match: a new source id with a stored email.
    newer = contact(99, email="person.1@example.com", updatedAt="2025-05-01T00:00:00Z")
    summary = env.run(env.spec(csv_source(write_csv(env.root / "again.csv", [newer]))))
    assert (summary.inserted, summary.updated) == (0, 1)


def test_an_update_of_unindexed_fields_stays_on_its_page(env: SyncEnv) -> None:
    """The table leaves room on its pages, so a changed company is a HOT update:
    no new index entries."""
    people = [contact(n) for n in range(1, 4)]
    env.run(env.spec(csv_source(write_csv(env.root / "first.csv", people))))
    changed = [{**people[0], "company": "Globex", "updatedAt": "2030-01-01T00:00:00Z"}]
    summary = env.run(env.spec(csv_source(write_csv(env.root / "second.csv", changed))))
    assert summary.updated == 1
    query = "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'contacts'"
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        options = "SELECT reloptions FROM pg_class WHERE oid = 'contacts'::regclass"
        assert conn.execute(options).fetchone() == (["fillfactor=90"],)
        for _ in range(50):  # the run's backend reports its statistics as it exits
            conn.execute("SELECT pg_stat_clear_snapshot()")
            if conn.execute(query).fetchone() == (1, 1):
                break
            time.sleep(0.1)
        assert conn.execute(query).fetchone() == (1, 1)
