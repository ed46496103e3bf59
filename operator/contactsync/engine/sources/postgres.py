"""PostgreSQL source: a table read in order of its cursor column, through a
server-side cursor so memory stays flat whatever the table's size."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from . import RawRecord

# Source column -> ContactSync field. Other columns are not read: an unexpected
# column must not smuggle PII into places it is not encrypted.
FIELDS = {
    "external_id": "externalId",
    "email": "email",
    "phone": "phone",
    "first_name": "firstName",
    "last_name": "lastName",
    "company": "company",
    "job_title": "jobTitle",
    "updated_at": "updatedAt",
    "deleted": "deleted",
}


class PostgresSource:
    def __init__(self, conninfo: str, *, table: str, cursor_column: str = "updated_at") -> None:
        self.conninfo = conninfo
        self.table = table
        self.cursor_column = cursor_column

    def batches(self, *, since: datetime | None, batch_size: int) -> Iterator[list[RawRecord]]:
        t, c = sql.Identifier(self.table), sql.Identifier(self.cursor_column)
        where = sql.SQL("WHERE {c} >= %s ").format(c=c) if since else sql.SQL("")
        query = sql.SQL("SELECT * FROM {t} {where}ORDER BY {c}").format(t=t, where=where, c=c)
        position = 0
        with (
            psycopg.connect(self.conninfo) as conn,
            conn.cursor(name="contactsync_source", row_factory=dict_row) as cur,
        ):
            cur.itersize = batch_size
            cur.execute(query, (since,) if since else None)
            while rows := cur.fetchmany(batch_size):
                batch = []
                for row in rows:
                    position += 1
                    fields: dict[str, object] = {
                        name: _plain(row[column])
                        for column, name in FIELDS.items()
                        if column in row and row[column] is not None
                    }
                    if self.cursor_column != "updated_at" and row.get(self.cursor_column):
                        fields["updatedAt"] = _plain(row[self.cursor_column])
                    batch.append(RawRecord(position, fields))
                yield batch


def _plain(value: object) -> object:
    return value if isinstance(value, (str, bool, datetime)) else str(value)
