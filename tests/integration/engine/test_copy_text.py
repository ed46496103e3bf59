"""The native COPY encoder loads exactly what psycopg's own COPY loads, on a real server."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync import _native
from tests.testbed import TestBed

from .sync_helpers import new_env

# PostgreSQL text holds any character but NUL; lone surrogates are not text.
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
ROWS = st.lists(
    st.tuples(TEXT | st.none(), st.binary() | st.none(), st.booleans() | st.none()), max_size=30
)


@pytest.fixture(scope="module")
def conn(
    bed: TestBed, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    env = new_env(bed, tmp_path_factory.mktemp("copy"))
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (n int, s text, b bytea, f boolean)")
        yield conn


def load(
    conn: psycopg.Connection[tuple[object, ...]], native: bool, rows: list[tuple[object, ...]]
) -> list[tuple[object, ...]]:
    conn.execute("TRUNCATE t")
    with conn.cursor().copy("COPY t FROM STDIN") as copy:
        if native:
            copy.write(_native.copy_text([(str(n), *row) for n, row in enumerate(rows)]))  # type: ignore[misc]
        else:
            for n, row in enumerate(rows):
                copy.write_row((n, *row))
    return [
        (s, None if b is None else bytes(b), f)
        for s, b, f in conn.execute("SELECT s, b, f FROM t ORDER BY n").fetchall()
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=ROWS)
def test_native_copy_text_loads_what_psycopg_loads(
    conn: psycopg.Connection[tuple[object, ...]], rows: list[tuple[object, ...]]
) -> None:
    assert load(conn, True, rows) == load(conn, False, rows) == rows


def test_a_hostile_row_round_trips(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    row = ("tab\there\nnewline\r\\N back\\slash \\x00 ✓ Zoë", b"\x00\\\n\t\xff", True)
    assert load(conn, True, [row]) == [row]
