"""Operations on stored data: re-encryption after key rotation, and export.

Re-encryption walks the rows still under an older key in small batches, one
transaction each, locking only the rows of the batch (SKIP LOCKED), so syncs
keep running meanwhile; the `key_id` column records progress, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .crypto import FieldCipher, reencrypt
from .prepare import COLUMNS


def _bytes(value: object) -> bytes:
    assert isinstance(value, (bytes, memoryview)), "an encrypted column holds bytea"
    return bytes(value)


@dataclass
class ReencryptCounts:
    rows: int = 0
    quarantined: int = 0
    batches: int = 0


def reencrypt_postgres(
    conninfo: str,
    *,
    table: str,
    encrypted_columns: frozenset[str],
    cipher: FieldCipher,
    batch_size: int = 1_000,
) -> ReencryptCounts:
    counts = ReencryptCounts()
    columns = [c for c in COLUMNS.values() if c in encrypted_columns]
    t = sql.Identifier(table)
    select = sql.SQL(
        "SELECT external_id, source_id, {cols} FROM {t} WHERE key_id <> %s "
        "ORDER BY external_id LIMIT %s FOR UPDATE SKIP LOCKED"
    ).format(cols=sql.SQL(", ").join(map(sql.Identifier, columns)), t=t)
    update = sql.SQL("UPDATE {t} SET {sets}, key_id = %s WHERE external_id = %s").format(
        t=t,
        sets=sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns),
    )
    with psycopg.connect(conninfo) as conn:
        while True:
            with conn.transaction():
                rows = conn.execute(select, (cipher.primary_id, batch_size)).fetchall()
                if not rows:
                    break
                params = []
                for external_id, source_id, *values in rows:
                    assert isinstance(source_id, str)
                    fresh = [
                        None
                        if value is None
                        else reencrypt(
                            _bytes(value),
                            table=table,
                            column=column,
                            record_id=source_id,
                            target=cipher,
                        )
                        for column, value in zip(columns, values, strict=True)
                    ]
                    params.append((*fresh, cipher.primary_id, external_id))
                conn.cursor().executemany(update, params)
                counts.rows += len(rows)
                counts.batches += 1
        counts.quarantined = _reencrypt_quarantine(conn, table, cipher, batch_size)
    return counts


def _reencrypt_quarantine(
    conn: psycopg.Connection[tuple[object, ...]], table: str, cipher: FieldCipher, batch_size: int
) -> int:
    q = sql.Identifier(f"{table}_quarantine")
    done = 0
    while True:
        with conn.transaction():
            rows = conn.execute(
                sql.SQL(
                    "SELECT id, run_id, position, record FROM {q} WHERE key_id <> %s "
                    "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
                ).format(q=q),
                (cipher.primary_id, batch_size),
            ).fetchall()
            if not rows:
                return done
            conn.cursor().executemany(
                sql.SQL("UPDATE {q} SET record = %s, key_id = %s WHERE id = %s").format(q=q),
                [
                    (
                        reencrypt(
                            _bytes(record),
                            table=f"{table}_quarantine",
                            column="record",
                            record_id=f"{run_id}:{position}",
                            target=cipher,
                        ),
                        cipher.primary_id,
                        row_id,
                    )
                    for row_id, run_id, position, record in rows
                ],
            )
            done += len(rows)


EXPORT_HEADER = ["externalId", *COLUMNS, "updatedAt", "deletedAt"]


def export_contacts(
    conninfo: str, *, table: str, encrypted_columns: frozenset[str], cipher: FieldCipher
) -> Iterator[list[str]]:
    """Decrypted contact rows, streamed through a server-side cursor."""
    columns = list(COLUMNS.values())
    query = sql.SQL(
        "SELECT external_id, source_id, {cols}, updated_at, deleted_at FROM {t} "
        "ORDER BY external_id"
    ).format(cols=sql.SQL(", ").join(map(sql.Identifier, columns)), t=sql.Identifier(table))
    with psycopg.connect(conninfo) as conn, conn.cursor(name="contactsync_export") as cur:
        cur.execute(query)
        for external_id, source_id, *values, updated_at, deleted_at in cur:
            assert isinstance(source_id, str)
            cells = [str(external_id)]
            for column, value in zip(columns, values, strict=True):
                if value is None:
                    cells.append("")
                elif column in encrypted_columns:
                    cells.append(
                        cipher.decrypt(
                            _bytes(value),
                            table=table,
                            column=column,
                            record_id=source_id,
                        )
                    )
                else:
                    cells.append(str(value))
            cells += [str(updated_at), "" if deleted_at is None else str(deleted_at)]
            yield cells


QUARANTINE_HEADER = ["runId", "position", "reasons", "record"]


def export_quarantine(conninfo: str, *, table: str, cipher: FieldCipher) -> Iterator[list[str]]:
    """Quarantined records, decrypted, with their reason codes."""
    query = sql.SQL("SELECT run_id, position, reasons, record FROM {q} ORDER BY id").format(
        q=sql.Identifier(f"{table}_quarantine")
    )
    with psycopg.connect(conninfo) as conn, conn.cursor(name="contactsync_quarantine") as cur:
        cur.execute(query)
        for run_id, position, reasons, record in cur:
            document = cipher.decrypt(
                _bytes(record),
                table=f"{table}_quarantine",
                column="record",
                record_id=f"{run_id}:{position}",
            )
            assert isinstance(reasons, list)
            yield [str(run_id), str(position), " ".join(reasons), document]
