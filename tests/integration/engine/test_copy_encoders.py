"""The native COPY encoders load exactly what psycopg's own COPY loads, on a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

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
        conn.execute(
            "CREATE TABLE tb (n text, s text, b bytea, f boolean, at timestamptz, j jsonb)"
        )
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


# Aware datetimes whose UTC instant Python can hold, in UTC or any whole-minute offset.
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC) | OFFSETS
)
JSON = st.dictionaries(TEXT, TEXT, max_size=3)
BINARY_ROWS = st.lists(
    st.tuples(
        TEXT | st.none(),
        st.binary() | st.none(),
        st.booleans() | st.none(),
        MOMENTS | st.none(),
        JSON | st.none(),
    ),
    max_size=30,
)
BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)


def load_binary(
    conn: psycopg.Connection[tuple[object, ...]], native: bool, rows: list[tuple[object, ...]]
) -> list[tuple[object, ...]]:
    conn.execute("TRUNCATE tb")
    with conn.cursor().copy("COPY tb FROM STDIN (FORMAT BINARY)") as copy:
        if native:
            cells = [
                (str(n), s, b, f, at, None if j is None else b"\x01" + json.dumps(j).encode())
                for n, (s, b, f, at, j) in enumerate(rows)
            ]
            copy.write(BINARY_HEADER + _native.copy_binary(cells) + b"\xff\xff")  # type: ignore[arg-type]
        else:
            copy.set_types(["text", "text", "bytea", "bool", "timestamptz", "jsonb"])
            for n, (s, b, f, at, j) in enumerate(rows):
                copy.write_row((str(n), s, b, f, at, None if j is None else Jsonb(j)))
    return [
        (s, None if b is None else bytes(b), f, at, j)
        for s, b, f, at, j in conn.execute(
            "SELECT s, b, f, at, j FROM tb ORDER BY n::int"
        ).fetchall()
    ]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=BINARY_ROWS)
def test_native_copy_binary_loads_what_psycopg_loads(
    conn: psycopg.Connection[tuple[object, ...]], rows: list[tuple[object, ...]]
) -> None:
    assert load_binary(conn, True, rows) == load_binary(conn, False, rows) == rows


def test_binary_instants_are_exact_across_offsets_and_eras(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    moments = [
        datetime(2000, 1, 1, tzinfo=UTC),  # PostgreSQL's epoch: zero
        datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=12))),
        datetime(2024, 2, 29, 12, 30, 15, 123_456, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    ]
    rows: list[tuple[object, ...]] = [(None, None, None, moment, None) for moment in moments]
    assert load_binary(conn, True, rows) == rows
