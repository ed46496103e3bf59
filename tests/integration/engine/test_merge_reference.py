"""The set-based merge agrees with a straightforward reference merge.

The production merge (destinations/postgres.py) sorts narrow keys, joins hash
aggregates and fetches wide rows last, for speed. The reference below is the
plain formulation it replaced (window functions and correlated subqueries).
Both run on the same random stored rows and staged records, drawn from small
pools so that ids, emails and phones collide often; the resulting tables must
be equal. Staged digests are unique, so the reference has no arbitrary ties.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from contactsync.engine.destinations.postgres import PostgresRun, ddl, encode
from contactsync.engine.prepare import COLUMNS, Prepared, PreparedRow
from tests.testbed import TestBed

from .sync_helpers import new_env

IDS = ["a", "B", "c", "d", "E", "f", "g", "h", "i", "j"]
EMAILS = [b"e1", b"e2", b"e3", b"e4", None]
PHONES = [b"p1", b"p2", b"p3", None]
TIMES = [datetime(2025, 1, day, tzinfo=UTC) for day in (1, 2, 3)]


def reference_finish(conn: psycopg.Connection[tuple[object, ...]], table: str, full: bool) -> None:
    """The merge as first written: correct and slow."""
    t = sql.Identifier(table)
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE winners ON COMMIT DROP AS "
            "WITH latest AS ("
            "  SELECT DISTINCT ON (external_id) * FROM stage"
            "  ORDER BY external_id, updated_at DESC, content_digest DESC"
            "), grouped AS ("
            "  SELECT l.*,"
            "   min(external_id) OVER (PARTITION BY email_bidx) AS email_first,"
            "   min(external_id) OVER (PARTITION BY phone_bidx) AS phone_first"
            "  FROM latest l"
            "), resolved AS ("
            "  SELECT g.*, COALESCE("
            "    d.external_id,"
            "    (SELECT x.external_id FROM {t} x WHERE x.email_bidx = g.email_bidx"
            "      AND x.deleted_at IS NULL ORDER BY x.external_id LIMIT 1),"
            "    CASE WHEN g.email_bidx IS NULL THEN"
            "     (SELECT x.external_id FROM {t} x WHERE x.phone_bidx = g.phone_bidx"
            "      AND x.deleted_at IS NULL ORDER BY x.external_id LIMIT 1) END,"
            "    CASE WHEN g.email_bidx IS NOT NULL THEN g.email_first"
            "         WHEN g.phone_bidx IS NOT NULL THEN g.phone_first END,"
            "    g.external_id) AS target_id"
            "  FROM grouped g LEFT JOIN {t} d ON d.external_id = g.external_id"
            ") "
            "SELECT DISTINCT ON (target_id) * FROM resolved "
            "ORDER BY target_id, updated_at DESC, content_digest DESC"
        ).format(t=t)
    )
    missing_rows = sql.SQL(
        "d.deleted_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM winners w WHERE w.target_id = d.external_id)"
        " AND NOT EXISTS (SELECT 1 FROM seen_rejected s WHERE s.external_id = d.external_id)"
    )
    # Soft-delete first here (the production code counts first, then writes):
    # the upsert only touches winners, which this never touches.
    if full:
        conn.execute(
            sql.SQL("UPDATE {t} d SET deleted_at = now(), run_id = 'ref' WHERE ").format(t=t)
            + missing_rows
        )
    conn.execute(
        sql.SQL(
            "INSERT INTO {t} AS d (external_id, source_id, email_bidx, phone_bidx,"
            " updated_at, deleted_at, content_digest, key_id, run_id) "
            "SELECT target_id, external_id, email_bidx, phone_bidx, updated_at,"
            " CASE WHEN deleted THEN updated_at END, content_digest, 'k', 'ref' FROM winners "
            "ON CONFLICT (external_id) DO UPDATE SET source_id = EXCLUDED.source_id,"
            " email_bidx = EXCLUDED.email_bidx, phone_bidx = EXCLUDED.phone_bidx,"
            " updated_at = EXCLUDED.updated_at, content_digest = EXCLUDED.content_digest,"
            " deleted_at = CASE WHEN EXCLUDED.deleted_at IS NULL THEN NULL"
            "   ELSE COALESCE(d.deleted_at, EXCLUDED.deleted_at) END "
            "WHERE d.content_digest <> EXCLUDED.content_digest"
            " AND (EXCLUDED.updated_at, EXCLUDED.content_digest)"
            "   > (d.updated_at, d.content_digest)"
        ).format(t=t)
    )


def stored_rows(rng: random.Random) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for external_id in rng.sample(IDS, rng.randint(0, len(IDS))):
        deleted = rng.random() < 0.2
        rows.append(
            (
                external_id,
                rng.choice(EMAILS),
                rng.choice(PHONES),
                rng.choice(TIMES),
                TIMES[0] if deleted else None,
                rng.randbytes(4),
            )
        )
    return rows


def staged_rows(rng: random.Random, stored: list[tuple[object, ...]]) -> list[PreparedRow]:
    digests = {row[0]: row[5] for row in stored}
    rows = []
    for position in range(rng.randint(1, 14)):
        external_id = rng.choice(IDS)
        # Now and then the stored content again (unchanged), once per stored row.
        digest = digests.pop(external_id, None) if rng.random() < 0.3 else None
        rows.append(
            PreparedRow(
                external_id=external_id,
                values=dict.fromkeys(COLUMNS.values()),
                email_bidx=rng.choice(EMAILS),
                phone_bidx=rng.choice(PHONES),
                attributes={},
                updated_at=rng.choice(TIMES) + timedelta(hours=rng.choice((0, 0, 1))),
                deleted=rng.random() < 0.15,
                digest=digest if isinstance(digest, bytes) else rng.randbytes(8),
                position=position,
            )
        )
    return rows


def table_state(
    conn: psycopg.Connection[tuple[object, ...]], table: str
) -> list[tuple[object, ...]]:
    return conn.execute(
        sql.SQL(
            "SELECT external_id, source_id, email_bidx, phone_bidx, updated_at,"
            " deleted_at IS NULL, content_digest FROM {t} ORDER BY external_id"
        ).format(t=sql.Identifier(table))
    ).fetchall()


@pytest.mark.parametrize("full", [False, True], ids=["incremental", "full"])
def test_the_merge_agrees_with_the_reference(bed: TestBed, tmp_path: Path, full: bool) -> None:
    env = new_env(bed, tmp_path)
    rng = random.Random(20250101 + full)
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        for _ in range(60):
            stored = stored_rows(rng)
            batch = encode(Prepared.of(staged_rows(rng, stored)))
            rejected = rng.sample(IDS, rng.randint(0, 2))
            batch.seen_ids = rejected
            for table in ("m_new", "m_ref"):
                with conn.transaction():
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
                    for statement in ddl(table, frozenset()):
                        conn.execute(statement)
                    with conn.cursor() as cur:
                        cur.executemany(
                            sql.SQL(
                                "INSERT INTO {} (external_id, source_id, email_bidx, phone_bidx,"
                                " updated_at, deleted_at, content_digest, key_id, run_id)"
                                " VALUES (%s, %s, %s, %s, %s, %s, %s, 'k', 'old')"
                            ).format(sql.Identifier(table)),
                            [(row[0], row[0], *row[1:]) for row in stored],
                        )
                with conn.transaction():
                    run = PostgresRun(
                        conn,
                        table=table,
                        encrypted_columns=frozenset(),
                        sync_key=table,
                        run_id="r",
                        key_id="k",
                    )
                    run.begin()
                    run.write(batch)
                    if table == "m_new":
                        run.finish(full=full, max_delete_ratio=1.0, cursor=None)
                    else:
                        reference_finish(conn, table, full)
            assert table_state(conn, "m_new") == table_state(conn, "m_ref")
