"""PostgreSQL destination: the whole run in one transaction.

Valid rows are COPYed into a temporary staging table as they arrive; at the
end one set-based merge resolves each record to its stored contact (same
source id, else the blind index of the email, else, for a record without an
email, of the phone: a shared switchboard number must not merge two people
whose emails differ), keeps the
last writer by `updatedAt` (ties broken by content digest, so the outcome does
not depend on arrival order), applies the delete guard, upserts, soft-deletes
what a full extract no longer contains, and stores the cursor, all before the
single COMMIT. An interrupted or refused run therefore leaves nothing behind
and the cursor where the last committed data is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg
from psycopg import sql

from contactsync.engine.prepare import COLUMNS, Prepared

from ..errors import DeleteGuardError
from . import EncodedBatch, Encoder, WriteCounts

log = logging.getLogger("contactsync.engine.postgres")

STATE_TABLE = "contactsync_state"
_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_STAGE_COLUMNS = [
    "external_id",
    *COLUMNS.values(),
    "email_bidx",
    "phone_bidx",
    "attributes",
    "updated_at",
    "deleted",
    "content_digest",
]


def _text(value: str | None) -> str:
    return "\\N" if value is None else value.translate(_ESCAPE)


def _bytea(value: bytes | None) -> str:
    return "\\N" if value is None else "\\\\x" + value.hex()


def encode(prepared: Prepared) -> EncodedBatch:
    """Turn prepared rows into COPY text; runs in the worker processes."""
    lines = []
    for row in prepared.rows:
        cells = [_text(row.external_id)]
        for column in COLUMNS.values():
            value = row.values[column]
            cells.append(_bytea(value) if isinstance(value, bytes) else _text(value))
        cells += [
            _bytea(row.email_bidx),
            _bytea(row.phone_bidx),
            _text(json.dumps(row.attributes, ensure_ascii=False, separators=(",", ":"))),
            row.updated_at.isoformat(),
            "t" if row.deleted else "f",
            _bytea(row.digest),
        ]
        lines.append("\t".join(cells))
    quarantine = [
        f"{reject.position}\t{{{','.join(reject.reasons)}}}\t{_bytea(reject.envelope)}"
        for reject in prepared.rejected
    ]
    return EncodedBatch(
        rows=("\n".join(lines) + "\n").encode() if lines else b"",
        quarantine=("\n".join(quarantine) + "\n").encode() if quarantine else b"",
        seen_ids=[r.external_id for r in prepared.rejected if r.external_id is not None],
        valid=len(prepared.rows),
        rejected=len(prepared.rejected),
        reasons=prepared.reasons,
        max_updated_at=prepared.max_updated_at,
        ids_digest=prepared.ids_digest,
    )


def ddl(table: str, encrypted_columns: frozenset[str]) -> list[sql.Composed]:
    """Tables the destination needs; safe to run on every sync."""
    t = sql.Identifier(table)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(
            sql.Identifier(column), sql.SQL("bytea" if column in encrypted_columns else "text")
        )
        for column in COLUMNS.values()
    )
    return [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {t} ("
            " external_id text PRIMARY KEY,"
            " source_id text NOT NULL,"  # the record whose values (and AAD) the row holds
            " {columns},"
            " email_bidx bytea, phone_bidx bytea,"
            " attributes jsonb NOT NULL DEFAULT '{{}}',"
            " updated_at timestamptz NOT NULL,"
            " deleted_at timestamptz,"
            " content_digest bytea NOT NULL,"
            " key_id text NOT NULL,"
            " run_id text NOT NULL,"
            " synced_at timestamptz NOT NULL DEFAULT now())"
        ).format(t=t, columns=columns),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON {t} (email_bidx) WHERE deleted_at IS NULL"
        ).format(name=sql.Identifier(f"{table}_email_bidx"), t=t),
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {name} ON {t} (phone_bidx) WHERE deleted_at IS NULL"
        ).format(name=sql.Identifier(f"{table}_phone_bidx"), t=t),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {q} ("
            " id bigserial PRIMARY KEY, run_id text NOT NULL, position integer NOT NULL,"
            " reasons text[] NOT NULL, record bytea NOT NULL, key_id text NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        ).format(q=sql.Identifier(f"{table}_quarantine")),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {s} ("
            " sync_key text PRIMARY KEY, cursor timestamptz, run_id text NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(s=sql.Identifier(STATE_TABLE)),
    ]


class PostgresRun:
    def __init__(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        *,
        table: str,
        sync_key: str,
        run_id: str,
        key_id: str,
    ) -> None:
        self.conn = conn
        self.table = table
        self.sync_key = sync_key
        self.run_id = run_id
        self.key_id = key_id
        self._t = sql.Identifier(table)

    def begin(self) -> None:
        with self.conn.cursor() as cur:
            # One run per destination table at a time, across processes and pods.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"contactsync:{self.table}",),
            )
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE stage ON COMMIT DROP AS "
                    "SELECT {cols}, false AS deleted FROM {t} WITH NO DATA"
                ).format(
                    cols=sql.SQL(", ").join(
                        sql.Identifier(c) for c in _STAGE_COLUMNS if c != "deleted"
                    ),
                    t=self._t,
                )
            )
            cur.execute("CREATE TEMP TABLE seen_rejected (external_id text) ON COMMIT DROP")

    def cursor(self) -> datetime | None:
        row = self.conn.execute(
            sql.SQL("SELECT cursor FROM {s} WHERE sync_key = %s").format(
                s=sql.Identifier(STATE_TABLE)
            ),
            (self.sync_key,),
        ).fetchone()
        value = row[0] if row else None
        assert value is None or isinstance(value, datetime)
        return value

    def write(self, batch: EncodedBatch) -> None:
        with self.conn.cursor() as cur:
            if batch.rows:
                columns = sql.SQL(", ").join(sql.Identifier(c) for c in _STAGE_COLUMNS)
                with cur.copy(sql.SQL("COPY stage ({}) FROM STDIN").format(columns)) as copy:
                    copy.write(batch.rows)
            if batch.quarantine:
                statement = sql.SQL(
                    "COPY {q} (position, reasons, record, run_id, key_id) FROM STDIN"
                ).format(q=sql.Identifier(f"{self.table}_quarantine"))
                suffix = f"\t{_text(self.run_id)}\t{_text(self.key_id)}\n".encode()
                payload = b"".join(
                    line + suffix for line in batch.quarantine.rstrip(b"\n").split(b"\n")
                )
                with cur.copy(statement) as copy:
                    copy.write(payload)
            if batch.seen_ids:
                with cur.copy("COPY seen_rejected (external_id) FROM STDIN") as copy:
                    for external_id in batch.seen_ids:
                        copy.write_row((external_id,))

    def finish(
        self, *, full: bool, max_delete_ratio: float, cursor: datetime | None
    ) -> WriteCounts:
        t = self._t
        cur = self.conn.cursor()
        # The merge sorts the whole run a few times: let it do so in memory.
        cur.execute("SET LOCAL work_mem = '256MB'")
        cur.execute("ANALYZE stage")
        staged = _count(cur, sql.SQL("SELECT count(*) FROM stage"))
        # 1. One row per contact: resolve each record to its stored row, then
        #    keep the last writer (ties broken by digest: order-independent).
        cur.execute(
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
        winners = cur.rowcount
        # 2. The delete guard, computed before anything is written.
        live = _count(cur, sql.SQL("SELECT count(*) FROM {t} WHERE deleted_at IS NULL").format(t=t))
        flagged = _count(
            cur,
            sql.SQL(
                "SELECT count(*) FROM winners w JOIN {t} d ON d.external_id = w.target_id "
                "WHERE w.deleted AND d.deleted_at IS NULL AND d.content_digest <> w.content_digest"
                " AND (w.updated_at, w.content_digest) > (d.updated_at, d.content_digest)"
            ).format(t=t),
        )
        missing_rows = sql.SQL(
            "d.deleted_at IS NULL"
            " AND NOT EXISTS (SELECT 1 FROM winners w WHERE w.target_id = d.external_id)"
            " AND NOT EXISTS (SELECT 1 FROM seen_rejected s WHERE s.external_id = d.external_id)"
        )
        missing = 0
        if full:
            missing = _count(
                cur, sql.SQL("SELECT count(*) FROM {t} d WHERE ").format(t=t) + missing_rows
            )
        if live and (flagged + missing) / live > max_delete_ratio:
            raise DeleteGuardError(
                f"refusing to delete {flagged + missing} of {live} live contacts "
                f"({(flagged + missing) / live:.1%} > safety.maxDeleteRatio "
                f"{max_delete_ratio:.1%}); nothing was written"
            )
        # 3. Upsert: write only what is newer and different.
        targets = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS.values())
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in [
                *COLUMNS.values(),
                "source_id",
                "email_bidx",
                "phone_bidx",
                "attributes",
                "updated_at",
                "content_digest",
                "key_id",
                "run_id",
            ]
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} AS d (external_id, source_id, {targets}, email_bidx, phone_bidx,"
                " attributes, updated_at, deleted_at, content_digest, key_id, run_id) "
                "SELECT target_id, external_id, {targets}, email_bidx, phone_bidx, attributes,"
                " updated_at, CASE WHEN deleted THEN updated_at END, content_digest, %s, %s "
                "FROM winners "
                "ON CONFLICT (external_id) DO UPDATE SET {updates}, synced_at = now(),"
                " deleted_at = CASE WHEN EXCLUDED.deleted_at IS NULL THEN NULL"
                "   ELSE COALESCE(d.deleted_at, EXCLUDED.deleted_at) END "
                "WHERE d.content_digest <> EXCLUDED.content_digest"
                " AND (EXCLUDED.updated_at, EXCLUDED.content_digest)"
                "   > (d.updated_at, d.content_digest) "
                "RETURNING (xmax = 0)"
            ).format(t=t, targets=targets, updates=updates),
            (self.key_id, self.run_id),
        )
        written = cur.fetchall()
        inserted = sum(1 for (is_new,) in written if is_new)
        # 4. A complete extract: what it no longer has is soft-deleted.
        if full and missing:
            cur.execute(
                sql.SQL(
                    "UPDATE {t} d SET deleted_at = now(), run_id = %s, synced_at = now() WHERE "
                ).format(t=t)
                + missing_rows,
                (self.run_id,),
            )
        if cursor is not None:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {s} (sync_key, cursor, run_id) VALUES (%s, %s, %s) "
                    "ON CONFLICT (sync_key) DO UPDATE SET"
                    " cursor = GREATEST({s}.cursor, EXCLUDED.cursor),"
                    " run_id = EXCLUDED.run_id, updated_at = now()"
                ).format(s=sql.Identifier(STATE_TABLE)),
                (self.sync_key, cursor, self.run_id),
            )
        return WriteCounts(
            inserted=inserted,
            updated=len(written) - inserted - flagged,
            deleted=flagged + missing,
            unchanged=winners - len(written),
            merged=staged - winners,
        )


def _count(cur: psycopg.Cursor[tuple[object, ...]], query: sql.SQL | sql.Composed) -> int:
    cur.execute(query)
    row = cur.fetchone()
    assert row is not None
    assert isinstance(row[0], int)
    return row[0]


class PostgresDestination:
    def __init__(
        self,
        conninfo: str,
        *,
        table: str,
        encrypted_columns: frozenset[str],
        sync_key: str,
        key_id: str,
    ) -> None:
        self.conninfo = conninfo
        self.table = table
        self.encrypted_columns = encrypted_columns
        self.sync_key = sync_key
        self.key_id = key_id
        self.encoder: Encoder = encode

    @contextmanager
    def open_run(self, run_id: str) -> Iterator[PostgresRun]:
        with psycopg.connect(self.conninfo) as conn:
            with conn.transaction():
                for statement in ddl(self.table, self.encrypted_columns):
                    conn.execute(statement)
            # Everything of the run below commits together or not at all.
            with conn.transaction():
                run = PostgresRun(
                    conn,
                    table=self.table,
                    sync_key=self.sync_key,
                    run_id=run_id,
                    key_id=self.key_id,
                )
                run.begin()
                yield run
