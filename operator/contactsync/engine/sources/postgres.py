"""PostgreSQL source: a table, or one SELECT, read in order of its cursor column
through a server-side cursor, so memory stays flat whatever the table's size.

A query is the user's own SQL, run with the user's own credentials; what the
engine adds is that it can only read. It runs in a read-only transaction (a
data-modifying CTE or a function that writes fails there) and as the body of
a server-side cursor, which PostgreSQL accepts for one SELECT or VALUES only,
so a second statement cannot ride along.
"""

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
    def __init__(
        self,
        conninfo: str,
        *,
        table: str | None = None,
        query: str | None = None,
        cursor_column: str = "updated_at",
    ) -> None:
        if (table is None) == (query is None):
            raise ValueError("a postgres source reads exactly one of a table or a query")
        self.conninfo = conninfo
        self.relation: sql.Composable
        if table is not None:
            self.relation = sql.Identifier(table)
        else:
            assert query is not None
            # Concatenated, never .format()ted: braces in the query stay text.
            # A literal % is doubled, since psycopg reads %s placeholders.
            self.relation = sql.SQL("(") + sql.SQL(query.replace("%", "%%")) + sql.SQL(") AS q")
        self.cursor_column = cursor_column

    def batches(self, *, since: datetime | None, batch_size: int) -> Iterator[list[RawRecord]]:
        c = sql.Identifier(self.cursor_column)
        where = sql.SQL("WHERE {c} >= %s ").format(c=c) if since else sql.SQL("")
        query = sql.SQL("SELECT * FROM {r} {where}ORDER BY {c}").format(
            r=self.relation, where=where, c=c
        )
        position = 0
        with psycopg.connect(self.conninfo) as conn:
            conn.read_only = True
            with conn.cursor(name="contactsync_source", row_factory=dict_row) as cur:
                cur.itersize = batch_size
                cur.execute(query, (since,) if since else ())
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
