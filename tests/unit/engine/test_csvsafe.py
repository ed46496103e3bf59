"""CSV injection: neutralising cells, and what a CSV reader gets back."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contactsync.engine.csvsafe import FORMULA_TRIGGERS, neutralize_cell, write_csv


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+14155550123", "'+14155550123"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        (" =1", "' =1"),
        ("  \t@x", "'  \t@x"),
        ("\n-2", "'\n-2"),
        ("\u00a0=1", "'\u00a0=1"),
        ("\u3000+1", "'\u3000+1"),
        ("\0=1", "'=1"),
        ("=\0=", "'=="),
        ("a\0b", "ab"),
        ("alice@example.com", "alice@example.com"),
        ("O'Brien", "O'Brien"),
        ("'=already", "'=already"),
        ("a=b", "a=b"),
        ("5-3", "5-3"),
        ("", ""),
        ("   ", "   "),
        ('Zoë, "the" boss\nline 2', 'Zoë, "the" boss\nline 2'),
    ],
)
def test_neutralize_cell(cell: str, expected: str) -> None:
    assert neutralize_cell(cell) == expected


def test_write_csv_quotes_every_field() -> None:
    stream = io.StringIO(newline="")
    assert write_csv(stream, ["name", "phone"], [["Ann", "+44 20 7946 0000"], ["Bo", "12"]]) == 2
    assert stream.getvalue() == ('"name","phone"\r\n"Ann","\'+44 20 7946 0000"\r\n"Bo","12"\r\n')


def test_write_csv_neutralises_the_header_too() -> None:
    stream = io.StringIO(newline="")
    write_csv(stream, ["=cmd"], [])
    assert stream.getvalue() == '"\'=cmd"\r\n'


def test_write_csv_rejects_ragged_rows_without_echoing_values() -> None:
    with pytest.raises(ValueError, match="row 2: 1 cells, header has 2") as caught:
        write_csv(io.StringIO(newline=""), ["a", "b"], [["x", "y"], ["secret-value"]])
    assert "secret" not in str(caught.value)


def test_write_csv_rejects_non_string_cells() -> None:
    # A number would skip neutralisation: -5 would reach the file as -5.
    with pytest.raises(TypeError, match="row 1, column 1: cell is not a string"):
        write_csv(io.StringIO(newline=""), ["a", "b"], [["x", -5]])  # type: ignore[list-item]


# --- properties ------------------------------------------------------------------------


@given(st.text())
def test_property_output_never_starts_a_formula(value: str) -> None:
    out = neutralize_cell(value)
    assert "\0" not in out
    assert out[:1] not in FORMULA_TRIGGERS or out == ""
    assert out.lstrip()[:1] not in FORMULA_TRIGGERS or out.lstrip() == ""
    cleaned = value.replace("\0", "")
    assert out in (cleaned, "'" + cleaned)  # the only change is the prefix
    assert neutralize_cell(out) == out


safe_cells = st.text().filter(
    lambda s: (
        "\0" not in s and s[:1] not in FORMULA_TRIGGERS and s.lstrip()[:1] not in FORMULA_TRIGGERS
    )
)


@given(safe_cells)
def test_property_safe_cells_are_unchanged(value: str) -> None:
    assert neutralize_cell(value) == value


awkward_text = st.text(
    alphabet=st.sampled_from(list("ab =+-@\t\r\n\",'\0 é\u00a0")) | st.characters(), max_size=12
)


@given(
    header=st.lists(awkward_text, min_size=1, max_size=4).flatmap(
        lambda h: st.tuples(
            st.just(h), st.lists(st.lists(awkward_text, min_size=len(h), max_size=len(h)))
        )
    )
)
def test_property_csv_round_trip_gives_the_neutralised_cells(
    header: tuple[list[str], list[list[str]]],
) -> None:
    names, rows = header
    stream = io.StringIO(newline="")
    assert write_csv(stream, names, rows) == len(rows)
    read_back = list(csv.reader(io.StringIO(stream.getvalue(), newline="")))
    assert read_back == [[neutralize_cell(c) for c in row] for row in [names, *rows]]
