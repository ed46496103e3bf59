"""CsvSource and JsonlSource: happy paths, hostile input, and properties."""

from __future__ import annotations

import codecs
import csv
import io
import json
import pickle
import tracemalloc
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contactsync import _native
from contactsync.engine.sources import RawRecord, Source, files, predates
from contactsync.engine.sources.files import (
    ENCODING_INVALID,
    RECORD_MALFORMED,
    RECORD_TOO_LARGE,
    CsvHeaderError,
    CsvLines,
    CsvSource,
    JsonlSource,
    _predating,
    open_path,
)

MB = 1024 * 1024


class _Tracked(io.BytesIO):
    """A stream that remembers being closed."""

    closed_by_source = False

    def close(self) -> None:
        type(self).closed_by_source = True
        super().close()


def _opener(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)


def _records(source: Source, batch_size: int = 3) -> list[RawRecord]:
    batches = list(source.batches(since=None, batch_size=batch_size))
    assert all(len(batch) == batch_size for batch in batches[:-1])
    assert all(0 < len(batch) <= batch_size for batch in batches)
    return [record for batch in batches for record in batch]


def read_csv(data: bytes, **options: object) -> list[RawRecord]:
    return _records(CsvSource(_opener(data), **options))  # type: ignore[arg-type]


def read_jsonl(data: bytes, **options: object) -> list[RawRecord]:
    return _records(JsonlSource(_opener(data), **options))  # type: ignore[arg-type]


def _summary(records: list[RawRecord]) -> list[tuple[int, dict[str, object] | str]]:
    """(position, fields) for good records, (position, reason) for bad ones; asserts
    that bad records carry no fields."""
    summary: list[tuple[int, dict[str, object] | str]] = []
    for record in records:
        if record.error is None:
            summary.append((record.position, record.fields))
        else:
            assert record.fields == {}
            summary.append((record.position, record.error))
    return summary


# --- CSV happy paths ----------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed_from_the_header(delimiter: str) -> None:
    text = delimiter.join(["externalId", "email", "company"]) + "\n"
    text += delimiter.join(["1", "a@example.com", "Acme, Inc; Ltd|x"]) + "\n"
    # The data row mixes every candidate; only the header decides.
    text = text.replace("Acme, Inc; Ltd|x", '"Acme, Inc; Ltd|x"')
    assert _summary(read_csv(text.encode())) == [
        (1, {"externalId": "1", "email": "a@example.com", "company": "Acme, Inc; Ltd|x"})
    ]


def test_csv_sniffing_ignores_delimiters_inside_quoted_names() -> None:
    data = b'"Last, First";"a,b,c";email\nx;y;z\n'
    assert _summary(read_csv(data)) == [(1, {"Last, First": "x", "a,b,c": "y", "email": "z"})]


def test_csv_given_delimiter_wins_over_sniffing() -> None:
    data = b"a;b,c\n1;2,3\n"
    assert _summary(read_csv(data, delimiter=",")) == [(1, {"a;b": "1;2", "c": "3"})]


def test_csv_single_column_file_reads_as_comma_separated() -> None:
    assert _summary(read_csv(b'email\na@example.com\n""\n')) == [
        (1, {"email": "a@example.com"}),
        (2, {"email": ""}),
    ]


def test_csv_quoted_fields_keep_delimiters_quotes_and_line_breaks() -> None:
    data = (
        b"externalId,company,jobTitle\r\n"
        b'1,"Acme, Inc.","He said ""hi"""\r\n'
        b'2,"two\r\nlines","three\nmore\nlines"\r\n'
        b'3,"",\r\n'
    )
    assert _summary(read_csv(data)) == [
        (1, {"externalId": "1", "company": "Acme, Inc.", "jobTitle": 'He said "hi"'}),
        (2, {"externalId": "2", "company": "two\r\nlines", "jobTitle": "three\nmore\nlines"}),
        (3, {"externalId": "3", "company": "", "jobTitle": ""}),
    ]


def test_csv_every_value_is_a_string() -> None:
    [record] = read_csv(b"externalId,deleted,updatedAt\n42,true,2026-01-01\n")
    assert record.fields == {"externalId": "42", "deleted": "true", "updatedAt": "2026-01-01"}
    assert all(type(value) is str for value in record.fields.values())


def test_csv_blank_lines_are_not_records() -> None:
    data = b"\n\r\nemail\n\na@x\n\r\n\nb@x\n\n"
    assert _summary(read_csv(data)) == [(1, {"email": "a@x"}), (2, {"email": "b@x"})]


def test_csv_last_line_without_line_break_is_read() -> None:
    assert _summary(read_csv(b"email,phone\na@x,1")) == [(1, {"email": "a@x", "phone": "1"})]


def test_csv_utf8_bom_stays_out_of_the_first_column_name() -> None:
    data = codecs.BOM_UTF8 + "externalId,firstName\n1,José\n".encode()
    expected = [(1, {"externalId": "1", "firstName": "José"})]
    assert _summary(read_csv(data)) == expected
    assert _summary(read_csv(data, encoding="utf-8")) == expected
    assert _summary(read_csv(data, encoding="utf-8-sig")) == expected


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_csv_utf16_and_utf32_are_recognised_by_their_bom(codec: str) -> None:
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}
    text = 'email;firstName\r\nzoë@x;"Zoë\nLi 李"\r\n'
    data = bom.get(codec, codecs.BOM_UTF32_LE) + text.encode(codec)
    expected = [(1, {"email": "zoë@x", "firstName": "Zoë\nLi 李"})]
    assert _summary(read_csv(data)) == expected
    # Named explicitly, the codec leaves the mark in the text: the header drops it.
    assert _summary(read_csv(data, encoding=codec)) == expected


def test_csv_given_encoding_is_used() -> None:
    data = "email,company\nx@y,Café €\n".encode("cp1252")
    assert _summary(read_csv(data, encoding="cp1252")) == [
        (1, {"email": "x@y", "company": "Café €"})
    ]
    with pytest.raises(LookupError):
        CsvSource(_opener(data), encoding="no-such-codec")


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("externalId", "externalId"),
        ("external_id", "externalId"),
        ("External ID", "externalId"),
        ("id", "externalId"),
        ("ID", "externalId"),
        ("email", "email"),
        ("E-Mail", "email"),
        ("Email Address", "email"),
        ("phone", "phone"),
        ("Phone Number", "phone"),
        ("first_name", "firstName"),
        ("First Name", "firstName"),
        ("FIRSTNAME", "firstName"),
        ("last_name", "lastName"),
        ("Surname", "lastName"),
        ("Company Name", "company"),
        ("organisation", "company"),
        ("job_title", "jobTitle"),
        ("updated_at", "updatedAt"),
        ("Last Modified", "updatedAt"),
        ("is_deleted", "deleted"),
        ("  Deleted  ", "deleted"),
    ],
)
def test_csv_header_aliases(spelling: str, name: str) -> None:
    data = f"{spelling},attr.x\nv,w\n".encode()
    assert _summary(read_csv(data)) == [(1, {name: "v", "attr.x": "w"})]


def test_csv_extra_columns_pass_through_and_blank_ones_are_dropped() -> None:
    data = b"email, attr.Favourite Colour ,Title,attr.first_name,,\na@x,blue,Dr,Jo,,z\n"
    assert _summary(read_csv(data)) == [
        (
            1,
            {
                "email": "a@x",
                "attr.Favourite Colour": "blue",
                "Title": "Dr",
                "attr.first_name": "Jo",
            },
        )
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no header row"),
        (b"\n\r\n\n", "no header row"),
        (b"email,E-Mail\na,b\n", "columns 1 and 2 have the same name"),
        (b",,\n1,2,3\n", "no column names"),
        (b"email,na\xffme\nx,y\n", ENCODING_INVALID),
        (b"email,na\0me\nx,y\n", RECORD_MALFORMED),
        (b'email,"name\n', RECORD_MALFORMED),
        (b"email,name\rphone\nx,y\n", RECORD_MALFORMED),
        (b"email," + b"n" * 100 + b"\nx,y\n", RECORD_TOO_LARGE),
    ],
)
def test_csv_unusable_header_raises(data: bytes, message: str) -> None:
    with pytest.raises(CsvHeaderError, match=message):
        read_csv(data, max_field_bytes=64)


def test_csv_since_is_left_to_the_engine() -> None:
    data = b"email,updatedAt\na@x,2000-01-01T00:00:00Z\n"
    source = CsvSource(_opener(data))
    [batch] = source.batches(since=datetime(2030, 1, 1, tzinfo=UTC), batch_size=10)
    assert _summary(batch) == [(1, {"email": "a@x", "updatedAt": "2000-01-01T00:00:00Z"})]


def test_csv_batches_have_batch_size_records() -> None:
    data = b"email\n" + b"".join(b"%d@x\n" % n for n in range(10))
    batches = list(CsvSource(_opener(data)).batches(since=None, batch_size=4))
    assert [len(batch) for batch in batches] == [4, 4, 2]
    assert [r.position for batch in batches for r in batch] == list(range(1, 11))
    with pytest.raises(ValueError, match="batch_size"):
        next(CsvSource(_opener(data)).batches(since=None, batch_size=0))


def test_open_path_streams_a_local_file(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"email\na@x\n")
    assert _summary(_records(CsvSource(open_path(path)))) == [(1, {"email": "a@x"})]
    path.write_bytes(b'{"email": "a@x"}\n')
    assert _summary(_records(JsonlSource(open_path(str(path))))) == [(1, {"email": "a@x"})]


@pytest.mark.parametrize("source_type", [CsvSource, JsonlSource])
def test_the_stream_is_closed_even_when_reading_stops_early(
    source_type: type[CsvSource] | type[JsonlSource],
) -> None:
    data = b"email\n" + b'{"email": "a@x"}\n' * 10
    _Tracked.closed_by_source = False
    batches = source_type(lambda: _Tracked(data)).batches(since=None, batch_size=2)
    assert isinstance(batches, Generator)
    next(batches)
    assert not _Tracked.closed_by_source
    batches.close()
    assert _Tracked.closed_by_source


@pytest.mark.parametrize(
    "options",
    [
        {"delimiter": '"'},
        {"delimiter": ",,"},
        {"delimiter": "\n"},
        {"delimiter": "\0"},
        {"delimiter": "é"},
        {"max_field_bytes": 0},
        {"max_field_bytes": csv.field_size_limit() + 1},
        {"max_record_bytes": 0},
    ],
)
def test_csv_rejects_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"delimiter|max_field_bytes|max_record_bytes"):
        CsvSource(_opener(b""), **options)  # type: ignore[arg-type]


# --- CSV hostile input --------------------------------------------------------------


def test_csv_hostile_file() -> None:
    data = b"".join(
        [
            codecs.BOM_UTF8 + b"externalId,email,firstName,attr.note\r\n",
            b'1,=HYPERLINK("http://x"),+1,-2\r\n',
            b'2,@SUM(A1),"multi\r\nline",ok\r\n',
            b"3,nul\0here,a,b\r\n",
            b"4,a,b," + b"A" * (10 * MB) + b"\r\n",
            b"5,bad\xff\xfeutf8,a,b\r\n",
            b"6,\xef\xbb\xbfbom inside,a,b\r\n",
            b"7,too,many,columns,here\r\n",
            b"8,too few\r\n",
            b'9,"multi\r\nline \xc3 broken",a,b\r\n',
            b'10,"x""y",=1+1,"@me"\r\n',
            b'11,"unterminated,a,b\r\n',
            b"12,swallowed,by,it\r\n",
        ]
    )
    with pytest.raises(csv.Error):  # what the plain reader would do
        list(csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline="")))
    tracemalloc.start()
    try:
        records = read_csv(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MB  # the 10 MB field is skipped in bounded chunks
    names = ("externalId", "email", "firstName", "attr.note")
    assert _summary(records) == [
        (1, dict(zip(names, ["1", '=HYPERLINK("http://x")', "+1", "-2"], strict=True))),
        (2, dict(zip(names, ["2", "@SUM(A1)", "multi\r\nline", "ok"], strict=True))),
        (3, RECORD_MALFORMED),
        (4, RECORD_TOO_LARGE),
        (5, ENCODING_INVALID),
        (6, dict(zip(names, ["6", "\ufeffbom inside", "a", "b"], strict=True))),
        (7, RECORD_MALFORMED),
        (8, RECORD_MALFORMED),
        (9, ENCODING_INVALID),
        (10, dict(zip(names, ["10", 'x"y', "=1+1", "@me"], strict=True))),
        (11, RECORD_MALFORMED),  # the open quote runs to the end of the file
    ]


def test_csv_field_over_the_limit_within_a_record() -> None:
    data = (
        "email,company\n"
        + "a@x,"
        + "c" * 10
        + "\n"
        + "b@x,"
        + "c" * 11
        + "\n"
        + "c@x,"
        + "é" * 6  # 6 characters, 12 bytes
        + "\n"
        + "d@x,ok\n"
    ).encode()
    assert _summary(read_csv(data, max_field_bytes=10)) == [
        (1, {"email": "a@x", "company": "c" * 10}),
        (2, RECORD_TOO_LARGE),
        (3, RECORD_TOO_LARGE),
        (4, {"email": "d@x", "company": "ok"}),
    ]


def test_csv_field_over_the_csv_module_limit_is_too_large() -> None:
    big = b"x" * (csv.field_size_limit() + 1)
    data = b"email,company\na@x," + big + b"\nb@x,ok\n"
    assert _summary(read_csv(data)) == [
        (1, RECORD_TOO_LARGE),
        (2, {"email": "b@x", "company": "ok"}),
    ]


def test_csv_huge_quoted_field_over_many_lines_is_skipped_to_its_end() -> None:
    # Its lines look like records: they must not come back as records.
    inside = b"9,fake,record\n" * (3 * MB // 14)
    data = b'id,email,company\n1,"' + inside + b'",x\n2,b@x,ok\n'
    tracemalloc.start()
    try:
        records = read_csv(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MB  # a few times the default 1 MiB record limit at most
    assert _summary(records) == [
        (1, RECORD_TOO_LARGE),
        (2, {"externalId": "2", "email": "b@x", "company": "ok"}),
    ]


def test_csv_record_over_the_record_limit_is_too_large() -> None:
    data = b"a,b\n" + b"1,2\n" + b"1," + b"2" * 30 + b"\n" + b'"3\n' + b"3" * 30 + b'",4\n5,6\n'
    assert _summary(read_csv(data, max_field_bytes=8, max_record_bytes=16)) == [
        (1, {"a": "1", "b": "2"}),
        (2, RECORD_TOO_LARGE),
        (3, RECORD_TOO_LARGE),
        (4, {"a": "5", "b": "6"}),
    ]


def test_csv_stray_quotes() -> None:
    data = (
        b"id,note,x\n"
        b"1,5'10\" tall,a\n"  # literal quote inside an unquoted field: fine for csv
        b'2,"closed"then text,a\n'  # text after a closing quote: also literal
        b'3,a"b,"opens here\n'  # even count, but csv sees the last field open
        b"4,ok,a\n"
        b'5,"x"y"z,a\n'  # odd count, csv takes it as one line
        b"6,ok,a\n"
    )
    assert _summary(read_csv(data)) == [
        (1, {"externalId": "1", "note": "5'10\" tall", "x": "a"}),
        (2, {"externalId": "2", "note": "closedthen text", "x": "a"}),
        (3, RECORD_MALFORMED),
        (4, {"externalId": "4", "note": "ok", "x": "a"}),
        (5, {"externalId": "5", "note": 'xy"z', "x": "a"}),
        (6, {"externalId": "6", "note": "ok", "x": "a"}),
    ]


def test_csv_bare_carriage_return_spoils_only_its_record() -> None:
    data = b'a,b\n1,x\ry\n2,"in\rquotes"\n3,z\n'
    assert _summary(read_csv(data)) == [
        (1, RECORD_MALFORMED),
        (2, {"a": "2", "b": "in\rquotes"}),
        (3, {"a": "3", "b": "z"}),
    ]


def test_csv_unterminated_quote_at_end_of_file() -> None:
    assert _summary(read_csv(b'a,b\n1,2\n3,"never closed')) == [
        (1, {"a": "1", "b": "2"}),
        (2, RECORD_MALFORMED),
    ]


@pytest.mark.parametrize(
    ("codec", "bom"), [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)]
)
def test_csv_invalid_utf16_spoils_only_its_record(codec: str, bom: bytes) -> None:
    lone = "\ud800".encode(codec, "surrogatepass")  # half a surrogate pair
    body = "a,b\n1,".encode(codec) + lone + "\n2,ok\n".encode(codec)
    expected = [(1, ENCODING_INVALID), (2, {"a": "2", "b": "ok"})]
    assert _summary(read_csv(bom + body)) == expected
    assert _summary(read_csv(body, encoding=codec)) == expected
    # Half a code unit at the very end is one more (undecodable) line.
    assert _summary(read_csv(bom + body + b"\x00")) == [*expected, (3, ENCODING_INVALID)]


def test_csv_bytes_undefined_in_the_given_encoding_are_invalid() -> None:
    data = b"a,b\n1,\x81\n2,\x80\n"  # cp1252 has no 0x81
    assert _summary(read_csv(data, encoding="cp1252")) == [
        (1, ENCODING_INVALID),
        (2, {"a": "2", "b": "€"}),
    ]


# --- CSV properties -----------------------------------------------------------------

_Quoting = Literal[0, 1]
_QUOTINGS: list[_Quoting] = [csv.QUOTE_MINIMAL, csv.QUOTE_ALL]
_CSV_TEXT = st.text(st.sampled_from(',;\t|"\r\n \0=+-@é\ufeff') | st.characters(codec="utf-8"))


@st.composite
def _csv_tables(draw: st.DrawFn) -> tuple[int, list[list[str]]]:
    width = draw(st.integers(1, 4))
    return width, draw(st.lists(st.lists(_CSV_TEXT, min_size=width, max_size=width)))


def _write_csv(header: list[str], rows: list[list[str]], delimiter: str, quoting: _Quoting) -> str:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    table=_csv_tables(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quoting=st.sampled_from(_QUOTINGS),
)
def test_csv_reads_back_what_the_csv_module_wrote(
    table: tuple[int, list[list[str]]], delimiter: str, quoting: _Quoting
) -> None:
    width, rows = table
    header = [f"attr.c{n}" for n in range(width)]
    text = _write_csv(header, rows, delimiter, quoting)
    records = read_csv(text.encode(), delimiter=delimiter)
    assert [record.position for record in records] == list(range(1, len(rows) + 1))
    for record, row in zip(records, rows, strict=True):
        if any("\0" in value for value in row):
            assert (record.error, record.fields) == (RECORD_MALFORMED, {})
        else:
            assert record.error is None
            assert record.fields == dict(zip(header, row, strict=True))


@st.composite
def _damaged_csv(draw: st.DrawFn) -> bytes:
    width, rows = draw(_csv_tables())
    header = [f"attr.{n}" for n in range(width)]
    quoting = draw(st.sampled_from(_QUOTINGS))
    data = _write_csv(header, rows, ",", quoting).encode()
    header_end = data.index(b"\r\n") + 2
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(header_end, len(data)))
        noise = draw(st.binary(max_size=40) | st.sampled_from([b'"', b"\0", b"\xff", b"\r", b"\n"]))
        data = data[:at] + noise + data[at:]
    return data


def _assert_sound(records: list[RawRecord], names: set[str] | None = None) -> None:
    assert [record.position for record in records] == list(range(1, len(records) + 1))
    for record in records:
        if record.error is not None:
            assert record.error in (ENCODING_INVALID, RECORD_MALFORMED, RECORD_TOO_LARGE)
            assert record.fields == {}
            continue
        if names is not None:
            assert set(record.fields) == names
        for value in record.fields.values():
            assert isinstance(value, str)
            assert "\0" not in value
            value.encode("utf-8")  # no smuggled surrogates


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=_damaged_csv(),
    limits=st.sampled_from([{}, {"max_field_bytes": 8, "max_record_bytes": 40}]),
)
def test_csv_damage_after_the_header_never_raises(data: bytes, limits: dict[str, int]) -> None:
    width = data.split(b"\r\n", 1)[0].count(b",") + 1
    records = read_csv(data, delimiter=",", **limits)
    _assert_sound(records, {f"attr.{n}" for n in range(width)})


@settings(deadline=None)
@given(data=st.binary(max_size=300))
def test_csv_arbitrary_bytes_raise_nothing_but_a_header_error(data: bytes) -> None:
    try:
        records = read_csv(data, max_field_bytes=16, max_record_bytes=64)
    except CsvHeaderError:
        return
    _assert_sound(records)


# --- JSON Lines ---------------------------------------------------------------------


def test_jsonl_values_keep_their_json_types() -> None:
    line = {
        "externalId": "c-1",
        "email": "zoë@example.com",
        "count": 3,
        "score": 1.5,
        "deleted": False,
        "company": None,
        "attributes": {"colour": "blue", "tags": ["a", "b"], "nested": {"n": 1}},
    }
    data = (
        codecs.BOM_UTF8
        + json.dumps(line).encode()
        + b"\r\n"
        + json.dumps(line, ensure_ascii=False).encode()
    )
    assert _summary(read_jsonl(data)) == [(1, line), (2, line)]


def test_jsonl_blank_lines_are_skipped_and_not_counted() -> None:
    data = b'\n  \n{"a": 1}\n\r\n\t\n {"a": 2} \n\n'
    assert _summary(read_jsonl(data)) == [(1, {"a": 1}), (2, {"a": 2})]


def test_jsonl_hostile_file() -> None:
    data = b"\n".join(
        [
            b'{"n": 1}',
            b'{"n": 2',  # truncated
            b"not json",
            b"[1, 2]",  # valid JSON, not an object
            b'"text"',
            b"null",
            b'{"n": 7} {"n": 8}',  # two values on one line
            b'{"n": "\xff"}',  # invalid UTF-8
            b'{"n": "nul\\u0000"}',  # NUL via an escape
            b'{"n\\u0000": 1}',  # ... in a key
            b'{"n": {"deep": ["\\ud800"]}}',  # half a surrogate pair
            b'{"n": NaN}',
            b'{"n": Infinity}',
            b'{"n": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # absurd nesting
            b'{"n": "' + b"x" * (300 * 1024) + b'"}',  # over the line limit
            b'{"n": "\\\\u0000 is text", "e": "\\ud83d\\ude00", "u": "\\u00e9"}',  # all fine
            b'{"n": 17, "z": "\0"}',  # raw NUL in a string
            b'{"n": 1' + b"9" * 5000 + b"}",  # over Python's int digit limit
            b'{"n": 19}',
        ]
    )
    assert _summary(read_jsonl(data)) == [
        (1, {"n": 1}),
        (2, RECORD_MALFORMED),
        (3, RECORD_MALFORMED),
        (4, RECORD_MALFORMED),
        (5, RECORD_MALFORMED),
        (6, RECORD_MALFORMED),
        (7, RECORD_MALFORMED),
        (8, ENCODING_INVALID),
        (9, RECORD_MALFORMED),
        (10, RECORD_MALFORMED),
        (11, ENCODING_INVALID),
        (12, RECORD_MALFORMED),
        (13, RECORD_MALFORMED),
        (14, RECORD_MALFORMED),
        (15, RECORD_TOO_LARGE),
        (16, {"n": "\\u0000 is text", "e": "😀", "u": "é"}),
        (17, RECORD_MALFORMED),
        (18, RECORD_MALFORMED),
        (19, {"n": 19}),
    ]


def test_jsonl_huge_line_is_skipped_in_bounded_memory() -> None:
    data = b'{"a": "' + b"x" * (20 * MB) + b'"}\n{"a": 2}\n{"a": "' + b"y" * 50 + b'"}'
    tracemalloc.start()
    try:
        records = read_jsonl(data, max_line_bytes=64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 * MB
    assert _summary(records) == [(1, RECORD_TOO_LARGE), (2, {"a": 2}), (3, {"a": "y" * 50})]
    assert _summary(read_jsonl(data, max_line_bytes=40)) == [
        (1, RECORD_TOO_LARGE),
        (2, {"a": 2}),
        (3, RECORD_TOO_LARGE),  # at end of file, without a line break
    ]


def test_jsonl_line_exactly_at_the_limit_is_read() -> None:
    line = b'{"a": "' + b"x" * 10 + b'"}'
    assert _summary(read_jsonl(line + b"\n", max_line_bytes=len(line) + 1)) == [
        (1, {"a": "x" * 10})
    ]
    assert _summary(read_jsonl(line + b"\n", max_line_bytes=len(line))) == [(1, RECORD_TOO_LARGE)]


def test_jsonl_utf16_with_bom() -> None:
    data = '{"email": "李@x"}\n{"email": "b@x"}\n'.encode("utf-16")
    assert _summary(read_jsonl(data)) == [(1, {"email": "李@x"}), (2, {"email": "b@x"})]


@settings(deadline=None)
@given(
    lines=st.lists(
        st.binary(max_size=60)
        | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5)).map(
            lambda obj: json.dumps(obj).encode()
        )
    )
)
def test_jsonl_arbitrary_lines_never_raise(lines: list[bytes]) -> None:
    records = read_jsonl(b"\n".join(lines), max_line_bytes=48)
    assert [record.position for record in records] == list(range(1, len(records) + 1))
    for record in records:
        assert record.error is not None or isinstance(record.fields, dict)
        assert record.error is None or record.fields == {}


# --- CSV: skipping records that predate `since` ---------------------------------------

_SINCE = datetime(2024, 6, 1, tzinfo=UTC)
_TIMES = st.sampled_from(
    [
        "2024-01-01T00:00:00Z",
        "2024-12-01T00:00:00Z",
        "2024-06-01T00:00:00Z",
        "2024-05-31T23:59:59.999999",
        "2024-05-31T23:59:59.999+00:00",
        "2024-05-31T23:59:59.9Z",
        "2024-02-30T00:00:00Z",
        "2024-01-01 00:00:00Z",
        "2024-06-01T01:00:00+02:00",
        "2024-01-01",
        "garbage",
        "",
        " 2024-01-01T00:00:00Z",
    ]
)


@st.composite
def _timed_csv(draw: st.DrawFn) -> bytes:
    width, rows = draw(_csv_tables())
    column = draw(st.integers(0, width - 1))
    header = [f"attr.c{n}" for n in range(width)]
    header[column] = "updatedAt"
    for row in rows:
        row[column] = draw(st.just("2024-01-01T00:00:00Z") | _TIMES | _CSV_TEXT)
    quoting = draw(st.sampled_from(_QUOTINGS))
    data = _write_csv(header, rows, ",", quoting).encode()
    if draw(st.booleans()):  # LF line ends, damage, blank lines
        data = data.replace(b"\r\n", b"\n")
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(data.index(b"\n") + 1, len(data)))
        noise = draw(st.sampled_from([b'"', b"\0", b"\xff", b"\r", b"\n", b",", b"\n\n", b"\r\n"]))
        data = data[:at] + noise + data[at:]
    return data


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_timed_csv(), batch_size=st.integers(1, 4))
def test_csv_skips_exactly_what_the_engine_would_drop(data: bytes, batch_size: int) -> None:
    everything = [
        record
        for batch in CsvSource(_opener(data), delimiter=",").batches(since=_SINCE, batch_size=50)
        for record in batch
    ]
    kept = [
        record
        for batch in CsvSource(_opener(data), delimiter=",", skip_predating=True).batches(
            since=_SINCE, batch_size=batch_size
        )
        for record in batch
    ]
    # Whatever is returned is returned unchanged, at its own position ...
    by_position = {record.position: record for record in everything}
    assert all(record == by_position[record.position] for record in kept)

    # ... and after the engine's own filter (pipeline._newer_than) nothing differs.
    def engine_filter(records: list[RawRecord]) -> list[RawRecord]:
        return [r for r in records if not predates(r.fields.get("updatedAt"), _SINCE)]

    assert _summary(engine_filter(kept)) == _summary(engine_filter(everything))


def test_csv_skipping_keeps_positions_and_needs_since() -> None:
    data = (
        b"externalId,updatedAt\n"
        b"a,2024-01-01T00:00:00Z\n"
        b'"b",2024-01-01T00:00:00Z\n'  # quoted: returned, the engine decides
        b"c,2025-01-01T00:00:00Z\n"
        b"d,2024-01-01T00:00:00Z,extra\n"  # malformed: returned
        b"e\rf,2024-01-01T00:00:00Z\n"  # a bare CR: malformed, returned
        b"g,2024-01-01T00:00:00Z\r\n"  # CRLF is a line end: skipped
        b"h,2025-01-01T00:00:00Z\r\n"
    )
    source = CsvSource(_opener(data), skip_predating=True)
    [batch] = source.batches(since=_SINCE, batch_size=10)
    assert _summary(batch) == [
        (2, {"externalId": "b", "updatedAt": "2024-01-01T00:00:00Z"}),
        (3, {"externalId": "c", "updatedAt": "2025-01-01T00:00:00Z"}),
        (4, RECORD_MALFORMED),
        (5, RECORD_MALFORMED),
        (7, {"externalId": "h", "updatedAt": "2025-01-01T00:00:00Z"}),
    ]
    assert len(read_csv(data, skip_predating=True)) == 7  # no `since`, nothing skipped


# --- CSV: the native skip-ahead ---------------------------------------------------


def _instant(moment: datetime) -> tuple[int, int, int, int, int, int, int]:
    m = moment.astimezone(UTC)
    return (m.year, m.month, m.day, m.hour, m.minute, m.second, m.microsecond)


def _native_skips(cell: str, since: datetime) -> bool:
    line = f"x,{cell},y\n".encode()
    consumed, skipped = _native.skip_predating(line, 0, ord(","), 3, 1, 1000, _instant(since))
    assert consumed == (len(line) if skipped else 0)
    return skipped == 1


_MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23))
_SHAPES = st.sampled_from(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.{ms}"])
_SUFFIXES = st.sampled_from(["", "Z", "+00:00", "+01:00", "-00:00", "z", " "])


@given(moment=_MOMENTS, since=_MOMENTS, shape=_SHAPES, suffix=_SUFFIXES)
def test_native_skip_agrees_with_predates_on_timestamps(
    moment: datetime, since: datetime, shape: str, suffix: str
) -> None:
    cell = moment.strftime(shape).replace("{ms}", f"{moment.microsecond // 1000:03d}") + suffix
    since = since.replace(tzinfo=UTC)
    skips = _native_skips(cell, since)
    if skips:  # never more than Python ...
        assert predates(cell, since)
    if suffix in ("", "Z", "+00:00") and moment.year >= 1000:  # ... and all of its own shape
        assert skips == predates(cell, since)


@given(cell=st.text(max_size=40), since=_MOMENTS)
def test_native_skip_never_skips_what_predates_keeps(cell: str, since: datetime) -> None:
    since = since.replace(tzinfo=UTC)
    if "\n" not in cell and "," not in cell and _native_skips(cell, since):
        assert predates(cell, since)


@given(data=_timed_csv(), cut=st.integers(0, 2000))
def test_native_skip_ahead_skips_a_subset_of_what_python_skips(data: bytes, cut: int) -> None:
    """Line by line, whatever the native scan consumes, the Python reader skips too."""
    header, _, body = data.partition(b"\n")
    names = header.decode("utf-8", "replace").split(",")
    if "updatedAt" not in names:
        return
    width, column = len(names), names.index("updatedAt")
    chunk = body[:cut]
    consumed, skipped = _native.skip_predating(
        chunk, 0, ord(","), width, column, 64 * 1024, _instant(_SINCE)
    )
    lines = chunk[:consumed].splitlines(keepends=True)
    assert all(line.endswith(b"\n") for line in lines)
    python_skip = _predating(",", width, column, _SINCE)
    counted = 0
    for line in lines:
        if line in (b"\n", b"\r\n"):
            continue
        assert b'"' not in line
        assert python_skip(line.decode("utf-8"))
        counted += 1
    assert counted == skipped


def test_native_skip_ahead_skips_a_whole_run_of_old_lines() -> None:
    old = b"".join(b"id%d,2024-01-01T00:00:00.123Z\n" % n for n in range(1000))
    data = old + b"new,2024-07-01T00:00:00Z\n" + old
    consumed, skipped = _native.skip_predating(data, 0, ord(","), 2, 1, 1000, _instant(_SINCE))
    assert (consumed, skipped) == (len(old), 1000)
    source = CsvSource(_opener(b"externalId,updatedAt\n" + data), skip_predating=True)
    [batch] = source.batches(since=_SINCE, batch_size=10)
    assert _summary(batch) == [(1001, {"externalId": "new", "updatedAt": "2024-07-01T00:00:00Z"})]


# --- CSV: plain lines, split where the batch is read ----------------------------------


class _PythonOnly:
    """The native module as the CSV source sees it, taking and skipping no line:
    every record then comes from the Python reader."""

    @staticmethod
    def plain_lines(*_: object) -> tuple[int, int]:
        return 0, 0

    @staticmethod
    def plain_lines_since(*_: object) -> tuple[int, int, list[tuple[int, int, int]]]:
        return 0, 0, []

    @staticmethod
    def skip_predating(*_: object) -> tuple[int, int]:
        return 0, 0


def _by_python_reader(
    data: bytes, since: datetime | None = None, **options: object
) -> list[RawRecord]:
    source = CsvSource(_opener(data), skip_predating=True, **options)  # type: ignore[arg-type]
    with mock.patch.object(files, "_native", _PythonOnly):
        batches = list(source.batches(since=since, batch_size=4))
    return [record for batch in batches for record in batch]


# Blocks of a few bytes put block ends inside lines, cells and line ends.
_BLOCKS = st.sampled_from([files._CHUNK_BYTES, 1, 3, 16])


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=_damaged_csv() | _timed_csv(),
    limits=st.sampled_from([{}, {"max_field_bytes": 8, "max_record_bytes": 40}]),
    batch_size=st.integers(1, 5),
    block=_BLOCKS,
)
def test_plain_lines_read_as_the_python_reader_reads(
    data: bytes, limits: dict[str, int], batch_size: int, block: int
) -> None:
    source = CsvSource(_opener(data), **limits)  # type: ignore[arg-type]
    try:
        expected = _by_python_reader(data, **limits)
    except CsvHeaderError:
        with pytest.raises(CsvHeaderError):
            list(source.batches(since=None, batch_size=batch_size))
        return
    with mock.patch.object(files, "_CHUNK_BYTES", block):
        batches = list(source.batches(since=None, batch_size=batch_size))
    assert all(isinstance(batch, CsvLines) for batch in batches)
    assert all(len(batch) == batch_size for batch in batches[:-1])
    assert [record for batch in batches for record in batch] == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=_timed_csv(),
    batch_size=st.integers(1, 5),
    since=st.sampled_from([_SINCE, None]),
    block=_BLOCKS,
)
def test_plain_lines_of_an_incremental_read_are_the_python_readers(
    data: bytes, batch_size: int, since: datetime | None, block: int
) -> None:
    """With `since`, plain lines are skipped or taken natively: the records are
    those the Python reader, skipping line by line, returns."""
    source = CsvSource(_opener(data), delimiter=",", skip_predating=True)
    with mock.patch.object(files, "_CHUNK_BYTES", block):
        batches = list(source.batches(since=since, batch_size=batch_size))
    assert all(len(batch) == batch_size for batch in batches[:-1])
    expected = _by_python_reader(data, since, delimiter=",")
    assert [record for batch in batches for record in batch] == expected


@settings(deadline=None)
@given(
    data=st.binary(max_size=200) | _damaged_csv(),
    limits=st.lists(st.integers(1, 50), min_size=1, max_size=5),
    block=_BLOCKS,
)
def test_the_window_reads_lines_as_a_buffered_reader_does(
    data: bytes, limits: list[int], block: int
) -> None:
    data = data.removeprefix(codecs.BOM_UTF8)  # which the window's stream drops
    reference = io.BufferedReader(io.BytesIO(data))
    with mock.patch.object(files, "_CHUNK_BYTES", block):
        window = files._Window(files._open_utf8(io.BytesIO(data), "utf-8"))
        for limit in (limits * len(data))[: len(data) + 1]:
            assert window.readline(limit) == reference.readline(limit)
        assert window.readline(limits[0]) == b""


def test_plain_lines_travel_as_bytes_and_read_back_the_same() -> None:
    data = (
        b"externalId,email,notes\r\n"
        b"crm-1,a@example.com,plain\r\n"
        b"\r\n"
        b'crm-2,b@example.com,"quoted, with a comma"\r\n'
        b"crm-3,c@example.com,\xc3\xa9t\xc3\xa9\n"
        b"crm-4,too,many,cells\n"
        b"crm-5,e@example.com,last"
    )
    [batch] = CsvSource(_opener(data)).batches(since=None, batch_size=10)
    assert isinstance(batch, CsvLines)
    shipped = pickle.dumps(batch)
    assert b"crm-1,a@example.com,plain\r\n" in shipped  # the line itself, not parsed
    expected = _by_python_reader(data)
    assert [record.position for record in expected] == [1, 2, 3, 4, 5]
    assert list(pickle.loads(shipped)) == expected == list(batch)
    assert batch[2].fields["notes"] == "été"


def test_native_plain_lines_take_only_plain_lines_of_the_width() -> None:
    def take(data: bytes, limit: int = 100) -> tuple[int, int]:
        return _native.plain_lines(data, 0, ord(","), 2, 20, limit)

    assert take(b"a,b\n\r\nc,d\r\n") == (11, 2)  # blank lines pass, uncounted
    assert take(b"a,b\nc,d") == (4, 1)  # a line without its end waits for more
    assert take(b"a,b\nc,d\n", limit=1) == (4, 1)
    for stop in (
        b'"c",d\n',
        b"c\0,d\n",
        b"c\r,d\n",
        b"c,d,e\n",
        b"cd\n",
        b"c,\xff\n",
        b"c," + b"d" * 20 + b"\n",  # over the length limit
    ):
        assert take(b"a,b\n" + stop + b"e,f\n") == (4, 1), stop
