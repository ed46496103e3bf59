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

from contactsync import _native
from contactsync.engine.prepare import COLUMNS, Prepared

from ..errors import DeleteGuardError
from . import EncodedBatch, Encoder, WriteCounts

log = logging.getLogger("contactsync.engine.postgres")

STATE_TABLE = "contactsync_state"
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
_COLUMN_NAMES = tuple(COLUMNS.values())
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# jsonb's binary form: a version byte, then the JSON text.
_JSONB_VERSION = b"\x01"
_NO_ATTRIBUTES = _JSONB_VERSION + b"{}"
# Binary COPY's file header (signature, no flags, no extension) and trailer.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER = b"\xff\xff"


def encode(prepared: Prepared) -> EncodedBatch:
    """Turn prepared rows into COPY data; runs in the worker processes.

    Valid rows go in COPY's binary format (``copy_binary``): about 40% fewer
    bytes than text, whose bytea is hex, and a third of the server's parsing.
    Quarantined ones, few, go as text (``copy_text``), the parent appending
    the run's columns to each line. Tests compare both encoders with
    psycopg's own COPY through a real server.
    """
    rows = zip(
        prepared.external_ids,
        *(prepared.values[column] for column in _COLUMN_NAMES),
        prepared.email_bidx,
        prepared.phone_bidx,
        # Most contacts have no attributes: skip json.dumps for them.
        [
            _JSONB_VERSION + _json(attributes).encode() if attributes else _NO_ATTRIBUTES
            for attributes in prepared.attributes
        ],
        prepared.updated_at,
        prepared.deleted,
        prepared.digests,
        strict=True,
    )
    quarantine = [
        (str(reject.position), f"{{{','.join(reject.reasons)}}}", reject.envelope)
        for reject in prepared.rejected
    ]
    return EncodedBatch(
        rows=_native.copy_binary(rows),
        quarantine=_native.copy_text(quarantine),
        seen_ids=[r.external_id for r in prepared.rejected if r.external_id is not None],
        valid=prepared.valid,
        rejected=len(prepared.rejected),
        reasons=prepared.reasons,
        max_updated_at=prepared.max_updated_at,
        ids_digest=prepared.ids_digest,
    )


BLIND_INDEXED = ("email_bidx", "phone_bidx")
BULK_LOAD_MIN = 10_000  # a first load this large builds its blind indexes afterwards


def _field_type(column: str, encrypted_columns: frozenset[str]) -> str:
    """A contact field's column type: ciphertext or text."""
    return "bytea" if column in encrypted_columns else "text"


def _stage_types(encrypted_columns: frozenset[str]) -> dict[str, str]:
    """The staging table's column types: those of `encode`'s values."""
    types = {column: _field_type(column, encrypted_columns) for column in COLUMNS.values()}
    types.update(
        external_id="text",
        email_bidx="bytea",
        phone_bidx="bytea",
        attributes="jsonb",
        updated_at="timestamptz",
        deleted="boolean",
        content_digest="bytea",
    )
    return {column: types[column] for column in _STAGE_COLUMNS}


def blind_index(table: str, column: str) -> sql.Identifier:
    return sql.Identifier(f"{table}_{column}")


def blind_indexes(table: str) -> list[sql.Composed]:
    """The partial indexes the second-level match probes (live contacts only)."""
    return [
        sql.SQL("CREATE INDEX IF NOT EXISTS {name} ON {t} ({c}) WHERE deleted_at IS NULL").format(
            name=blind_index(table, column), t=sql.Identifier(table), c=sql.Identifier(column)
        )
        for column in BLIND_INDEXED
    ]


def ddl(table: str, encrypted_columns: frozenset[str]) -> list[sql.Composed]:
    """Tables the destination needs; safe to run on every sync."""
    t = sql.Identifier(table)
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(
            sql.Identifier(column), sql.SQL(_field_type(column, encrypted_columns))
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
            # Room on each page for an update that changes no indexed column
            # (the common one: a name, a company) to stay there and touch no
            # index (a HOT update): a third of the cost of a later run's writes.
            " WITH (fillfactor = 90)"
        ).format(t=t, columns=columns),
        *blind_indexes(table),
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
        encrypted_columns: frozenset[str],
        sync_key: str,
        run_id: str,
        key_id: str,
    ) -> None:
        self.conn = conn
        self.table = table
        self.encrypted_columns = encrypted_columns
        self.sync_key = sync_key
        self.run_id = run_id
        self.key_id = key_id
        self._t = sql.Identifier(table)
        self._staged = 0  # valid rows COPYed into stage

    def begin(self) -> None:
        with self.conn.cursor() as cur:
            # One run per destination table at a time, across processes and pods.
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"contactsync:{self.table}",),
            )
            # The types binary COPY writes (`encode`), whatever the destination's.
            # `seq`, a row number: the merge sorts and joins narrow rows (keys
            # and this number) and fetches the wide encrypted rows only for the
            # winners.
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE stage ({columns},"
                    " seq bigint GENERATED ALWAYS AS IDENTITY) ON COMMIT DROP"
                ).format(
                    columns=sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind))
                        for column, kind in _stage_types(self.encrypted_columns).items()
                    )
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
                copy_stage = sql.SQL("COPY stage ({}) FROM STDIN (FORMAT BINARY)")
                with cur.copy(copy_stage.format(columns)) as copy:
                    copy.write(_BINARY_HEADER)
                    copy.write(batch.rows)
                    copy.write(_BINARY_TRAILER)
                self._staged += batch.valid
            if batch.quarantine:
                statement = sql.SQL(
                    "COPY {q} (position, reasons, record, run_id, key_id) FROM STDIN"
                ).format(q=sql.Identifier(f"{self.table}_quarantine"))
                suffix = b"\t" + _native.copy_text([(self.run_id, self.key_id)])
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
        # The merge sorts and hashes the whole run a few times: in memory.
        cur.execute("SET LOCAL work_mem = '256MB'")
        # These statements run once per run over temp tables: compiling them
        # (JIT) costs more than it saves, a third of a second per statement.
        cur.execute("SET LOCAL jit = off")
        # 1. One row per contact: resolve each record to its stored row, then
        #    keep the last writer (ties broken by digest, then by source id:
        #    order-independent). Only keys travel through the sorts and joins;
        #    grouping compares ids COLLATE "C" (equality is the same under any
        #    deterministic collation, and byte order sorts fastest), while the
        #    "first" id of a group is min() in the database's collation, as before.
        cur.execute(
            "CREATE TEMP TABLE latest ON COMMIT DROP AS "
            'SELECT DISTINCT ON (external_id COLLATE "C")'
            " seq, external_id, email_bidx, phone_bidx, updated_at, content_digest, deleted"
            " FROM stage"
            ' ORDER BY external_id COLLATE "C", updated_at DESC, content_digest DESC,'
            " seq"
        )
        staged = self._staged
        # Estimates for the lookups below (index probes or one hash join):
        # statistics of the columns they match on only.
        cur.execute("ANALYZE latest (external_id, email_bidx, phone_bidx)")
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE winners ON COMMIT DROP AS "
                # Each record's own stored row, probed once (the probes are most
                # of an incremental run's merge).
                "WITH probed AS MATERIALIZED ("
                "  SELECT l.*, d.external_id AS stored_id FROM latest l"
                "  LEFT JOIN {t} d ON d.external_id = l.external_id"
                # A group of one is its own first: only shared emails and phones
                # need an entry (the COALESCE below then falls to the own id),
                # with whether that first record's own id is stored.
                # (Ids are unique here: the first is stored when it is also the
                # first of the stored ones.) Finding the shared ones counts keys
                # alone; the minima are then taken over the few rows that share,
                # not kept for every key (a bulk load resolves about a tenth faster).
                "), shared_email AS ("
                "  SELECT email_bidx FROM probed WHERE email_bidx IS NOT NULL"
                "  GROUP BY email_bidx HAVING count(*) > 1"
                "), by_email AS ("
                "  SELECT email_bidx, min(external_id) AS first, COALESCE("
                "   min(external_id) FILTER (WHERE stored_id IS NOT NULL) = min(external_id),"
                "   false) AS first_stored"
                "  FROM probed WHERE email_bidx IN (SELECT email_bidx FROM shared_email)"
                "  GROUP BY email_bidx"
                "), shared_phone AS ("
                "  SELECT phone_bidx FROM probed WHERE phone_bidx IS NOT NULL"
                "  GROUP BY phone_bidx HAVING count(*) > 1"
                "), by_phone AS ("
                "  SELECT phone_bidx, min(external_id) AS first, COALESCE("
                "   min(external_id) FILTER (WHERE stored_id IS NOT NULL) = min(external_id),"
                "   false) AS first_stored"
                "  FROM probed WHERE phone_bidx IN (SELECT phone_bidx FROM shared_phone)"
                "  GROUP BY phone_bidx"
                # Stored matches by email or phone, looked up only for records
                # whose own id is not stored (that match comes first).
                "), unknown AS ("
                "  SELECT email_bidx, phone_bidx FROM probed WHERE stored_id IS NULL"
                "), stored_email AS ("
                "  SELECT x.email_bidx, min(x.external_id) AS id FROM {t} x"
                "  WHERE x.deleted_at IS NULL AND x.email_bidx IN ("
                "   SELECT email_bidx FROM unknown WHERE email_bidx IS NOT NULL)"
                "  GROUP BY x.email_bidx"
                "), stored_phone AS ("
                "  SELECT x.phone_bidx, min(x.external_id) AS id FROM {t} x"
                "  WHERE x.deleted_at IS NULL AND x.phone_bidx IN ("
                "   SELECT phone_bidx FROM unknown WHERE email_bidx IS NULL)"
                "  GROUP BY x.phone_bidx"
                "), resolved AS ("
                "  SELECT l.seq, l.external_id, l.updated_at, l.content_digest, l.deleted,"
                "   COALESCE("
                "    l.stored_id,"
                "    se.id,"
                "    CASE WHEN l.email_bidx IS NULL THEN sp.id END,"
                "    CASE WHEN l.email_bidx IS NOT NULL THEN be.first"
                "         WHEN l.phone_bidx IS NOT NULL THEN bp.first END,"
                "    l.external_id) AS target_id,"
                # Whether the contact is stored already (updated, else
                # inserted), from the branch the COALESCE took: known here,
                # so no second probe of the table (whose plan, on estimates
                # these joins inflate, can be a scan of all of it).
                "   CASE WHEN l.stored_id IS NOT NULL OR se.id IS NOT NULL"
                "         OR (l.email_bidx IS NULL AND sp.id IS NOT NULL) THEN true"
                "    WHEN l.email_bidx IS NOT NULL THEN COALESCE(be.first_stored, false)"
                "    WHEN l.phone_bidx IS NOT NULL THEN COALESCE(bp.first_stored, false)"
                "    ELSE false END AS stored"
                "  FROM probed l"
                "  LEFT JOIN stored_email se ON se.email_bidx = l.email_bidx"
                "  LEFT JOIN stored_phone sp ON sp.phone_bidx = l.phone_bidx"
                "  LEFT JOIN by_email be ON be.email_bidx = l.email_bidx"
                "  LEFT JOIN by_phone bp ON bp.phone_bidx = l.phone_bidx"
                ") "
                'SELECT DISTINCT ON (target_id COLLATE "C") * FROM resolved'
                ' ORDER BY target_id COLLATE "C", updated_at DESC, content_digest DESC,'
                ' external_id COLLATE "C"'
            ).format(t=t)
        )
        winners = cur.rowcount
        # So the writes hash-join it to stage; the columns the statements below match on.
        cur.execute("ANALYZE winners (seq, target_id, stored, deleted)")
        # 2. The delete guard, computed before anything is written.
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
        # Counting the live contacts takes a scan: only needed when deleting.
        live = 0
        if flagged + missing:
            live = _count(
                cur, sql.SQL("SELECT count(*) FROM {t} WHERE deleted_at IS NULL").format(t=t)
            )
        if live and (flagged + missing) / live > max_delete_ratio:
            raise DeleteGuardError(
                f"refusing to delete {flagged + missing} of {live} live contacts "
                f"({(flagged + missing) / live:.1%} > safety.maxDeleteRatio "
                f"{max_delete_ratio:.1%}); nothing was written"
            )
        # 3. Write only what is new, or newer and different. New contacts are
        #    inserted plainly, without ON CONFLICT's speculative insertion (a
        #    third of the cost of a write): runs on a table are serialised by
        #    the advisory lock, so nothing else inserts them meanwhile; should
        #    anything outside ContactSync do so, the run fails and writes nothing.
        stage_targets = sql.SQL(", ").join(sql.Identifier("s", c) for c in COLUMNS.values())
        # A first load into an empty table (a backfill) builds its indexes
        # once, by sorting, after the rows are in, instead of growing them row
        # by row: the blind indexes, and the primary key unless a foreign key
        # needs it. Dropping them locks the table until the commit; it is
        # empty, so readers only wait for the first rows. A failed run rolls
        # the drops back with the rest; rebuilding the primary key checks
        # uniqueness as the inserts would have.
        bulk = winners >= BULK_LOAD_MIN and not _exists(
            cur, sql.SQL("SELECT 1 FROM {t}").format(t=t)
        )
        primary_key = None
        if bulk:
            for column in BLIND_INDEXED:
                cur.execute(sql.SQL("DROP INDEX {}").format(blind_index(self.table, column)))
            primary_key = _unreferenced_primary_key(cur, t)
            if primary_key is not None:
                cur.execute(
                    sql.SQL("ALTER TABLE {t} DROP CONSTRAINT {pk}").format(t=t, pk=primary_key)
                )
        cur.execute(
            sql.SQL(
                "INSERT INTO {t} (external_id, source_id, {targets}, email_bidx, phone_bidx,"
                " attributes, updated_at, deleted_at, content_digest, key_id, run_id) "
                "SELECT w.target_id, s.external_id, {stage_targets}, s.email_bidx, s.phone_bidx,"
                " s.attributes, s.updated_at, CASE WHEN s.deleted THEN s.updated_at END,"
                " s.content_digest, %s, %s "
                "FROM winners w JOIN stage s ON s.seq = w.seq WHERE NOT w.stored"
            ).format(
                t=t,
                targets=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS.values()),
                stage_targets=stage_targets,
            ),
            (self.key_id, self.run_id),
        )
        inserted = cur.rowcount
        if bulk:
            cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
            if primary_key is not None:
                cur.execute(
                    sql.SQL("ALTER TABLE {t} ADD CONSTRAINT {pk} PRIMARY KEY (external_id)").format(
                        t=t, pk=primary_key
                    )
                )
            for statement in blind_indexes(self.table):
                cur.execute(statement)
        updates = sql.SQL(", ").join(
            sql.SQL("{c} = {v}").format(c=sql.Identifier(c), v=sql.Identifier("s", c))
            for c in [
                *COLUMNS.values(),
                "email_bidx",
                "phone_bidx",
                "attributes",
                "updated_at",
                "content_digest",
            ]
        )
        cur.execute(
            sql.SQL(
                "UPDATE {t} AS d SET {updates}, source_id = s.external_id,"
                " key_id = %s, run_id = %s, synced_at = now(),"
                " deleted_at = CASE WHEN s.deleted THEN COALESCE(d.deleted_at, s.updated_at) END "
                "FROM winners w JOIN stage s ON s.seq = w.seq "
                "WHERE w.stored AND d.external_id = w.target_id"
                " AND d.content_digest <> s.content_digest"
                " AND (s.updated_at, s.content_digest) > (d.updated_at, d.content_digest)"
            ).format(t=t, updates=updates),
            (self.key_id, self.run_id),
        )
        written = inserted + cur.rowcount
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
            updated=written - inserted - flagged,
            deleted=flagged + missing,
            unchanged=winners - written,
            merged=staged - winners,
        )


def _exists(cur: psycopg.Cursor[tuple[object, ...]], query: sql.Composed) -> bool:
    cur.execute(sql.SQL("SELECT EXISTS ({})").format(query))
    row = cur.fetchone()
    assert row is not None
    return bool(row[0])


def _unreferenced_primary_key(
    cur: psycopg.Cursor[tuple[object, ...]], table: sql.Identifier
) -> sql.Identifier | None:
    """The name of the table's primary key, unless a foreign key refers to it."""
    cur.execute(
        "SELECT c.conname FROM pg_constraint c"
        " WHERE c.conrelid = %s::regclass AND c.contype = 'p'"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.confrelid = c.conrelid)",
        (table.as_string(cur),),
    )
    row = cur.fetchone()
    return None if row is None else sql.Identifier(str(row[0]))


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
                    encrypted_columns=self.encrypted_columns,
                    sync_key=self.sync_key,
                    run_id=run_id,
                    key_id=self.key_id,
                )
                run.begin()
                yield run
