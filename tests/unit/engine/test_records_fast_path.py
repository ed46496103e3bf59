"""validate_record's fast path answers exactly as the pydantic model does.

`validate_record` calls the model's validator functions directly for plain
records and leaves everything unusual to the model; `validate_record_by_model`
always goes through the model. Both must give the same Contact (compared by
repr, so time zones count) or the same reason codes, on generated records and
on the benchmark's records; and the fast path must really answer the common
case (otherwise it would be agreeing by never running).
"""

from __future__ import annotations

import importlib.util
import unicodedata
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from contactsync.engine import normalize, records
from contactsync.engine.records import (
    SCALAR_FIELDS,
    validate_record,
    validate_record_by_model,
    validate_records,
)

BENCHMARKS = Path(__file__).parents[3] / "benchmarks"


def benchmark_records(n: int, changed: float = 0.0) -> Iterator[dict[str, str]]:
    """The records benchmarks/engine.py generates."""
    spec = importlib.util.spec_from_file_location("engine_benchmark", BENCHMARKS / "engine.py")
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    generated: Iterator[dict[str, str]] = bench.records(n, changed=changed)
    return generated


def agree(fields: Mapping[str, object], region: str = "US") -> None:
    fast = validate_record(fields, default_region=region)
    reference = validate_record_by_model(fields, default_region=region)
    assert repr(fast) == repr(reference)


KEYS = [*SCALAR_FIELDS, "attributes", "attr.x", "attr.y", "first_name"]
TEXT = st.text(max_size=12) | st.text(
    st.sampled_from(" \t\n\u00a0\u200b\u0301\ufffdaA1<>&:;@.+-()é李\ud800"), max_size=12
)
EMAILS = st.sampled_from(
    [
        "jane@example.com",
        "Jane.Doe@Example.COM",
        "POSTMASTER@example.org",
        "x@localhost",
        "a@b.invalid",
        "two@@example.com",
        "no-at.example.com",
        'quoted"@example.com',
        "üser@exämple.de",
        "a..b@example.com",
        "a@xn--bcher-kva.example",
        " padded@example.com ",
        "x" * 250 + "@example.com",
    ]
)
PHONES = st.sampled_from(
    [
        "+1 650-253-0000",
        "(650) 253-0000",
        "650.253.0000",
        "+44 7911 123456",
        "+49 1512 3456789",
        "+33 6 12 34 56 78",
        "12345",
        "+1 800 FLOWERS",
        "011 44 20 7946 0958",
        "+999 123",
        "  +1 (650) 253 0000  ",
        "٠١٢٣",
    ]
)
TIMES = st.sampled_from(
    [
        "2024-05-01T12:34:56Z",
        "2024-05-01T12:34:56",
        "2024-05-01T12:34:56+02:00",
        "2024-05-01",
        "0001-01-01T00:00+01:00",
        "tuesday",
        " 2024-05-01T12:34:56Z ",
        "",
    ]
)
DELETED = st.sampled_from(["", "true", "FALSE", "yes", "n", "1", "0", "maybe", " on "])
SCALARS = st.none() | st.booleans() | st.integers(-2, 2) | st.floats(allow_nan=False)
ANY = SCALARS | TEXT | st.dictionaries(st.text(max_size=4), SCALARS | TEXT, max_size=3)


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), ANY, max_size=12))
def test_any_mapping(fields: dict[str, object]) -> None:
    agree(fields)


@settings(max_examples=600, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "externalId": st.sampled_from(["crm-1", " crm-2 ", "", "x" * 129]) | TEXT,
            "email": EMAILS | TEXT | st.none(),
            "phone": PHONES | TEXT | st.none(),
            "firstName": st.sampled_from(["Zoë", "<b>x</b>", "O'Brien", "x" * 101]) | TEXT,
            "lastName": TEXT,
            "company": st.sampled_from(["AT&T", "&lt;x", "javascript:x"]) | TEXT,
            "jobTitle": TEXT | st.none(),
            "updatedAt": TIMES | TEXT,
            "deleted": DELETED | st.none() | TEXT,
            "attr.tier": st.sampled_from(["gold", "", " "]) | TEXT,
            "attributes": st.none()
            | st.just("")
            | st.dictionaries(st.text(max_size=3), TEXT | st.none(), max_size=3),
        },
    ),
    st.sampled_from(["US", "GB", "DE", "BR"]),
)
def test_contact_like_records(fields: dict[str, object], region: str) -> None:
    agree(fields, region)


def test_the_benchmark_records_agree_and_take_the_fast_path() -> None:
    answered = 0
    for record in benchmark_records(3_000, changed=0.01):
        agree(record)
        answered += records._validate_fast(dict(record), "US") is not None
    assert answered == 3_000


# --- the native path ---------------------------------------------------------------

# Spaces where clean_text would change the text: doubled, leading, trailing.
ASCII = st.text(st.sampled_from("aZ09 .-_'<:&@+!#/=?~`|{}^%*$\\\"()[],;x"), max_size=14) | (
    st.sampled_from(["a  b", " a", "a ", "  ", "x@a  .com", "\x7f", "a\tb"])
)
# Latin letters the native path keeps as written, their neighbours just
# outside that range, and characters clean_text or NFC would change.
LATIN = st.text(
    st.sampled_from("aZ0 .-'&:<éÀßÿĀğſ\u00bf\u00d7\u00f7\u0180\u0301\u00a0\u00adİ"), max_size=12
)
ATEXT = st.text(st.sampled_from("aZ09!#$%&'*+/=?^_`{|}~-"), min_size=1, max_size=6)
LATIN_ATEXT = st.text(st.sampled_from("aZ0!#-éÀßÿğſ\u00d7\u0180\u0301"), min_size=1, max_size=6)
LABEL = st.text(st.sampled_from("aZ09-"), min_size=1, max_size=8) | st.just("x" * 64)
ASCII_EMAILS = st.builds(
    lambda local, labels, tld: f"{'.'.join(local)}@{'.'.join([*labels, tld])}",
    st.lists(ATEXT | LATIN_ATEXT, min_size=1, max_size=3),
    st.lists(LABEL, max_size=3),
    st.sampled_from(["com", "ORG", "x1", "1", "a-b", "co-", "invalid", "localhost", "b"]),
)
CANONICAL_TIMES = st.builds(
    lambda moment, fraction, suffix: moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + suffix,
    st.datetimes(min_value=datetime(1000, 1, 1)),
    st.sampled_from(["", ".123", ".123456", ".1"]),
    st.sampled_from(["", "Z", "+00:00", "+01:00"]),
)


@settings(max_examples=800, deadline=None)
@given(
    st.fixed_dictionaries(
        {"externalId": ASCII | st.just("crm-1"), "updatedAt": CANONICAL_TIMES | ASCII},
        optional={
            "email": ASCII_EMAILS | ASCII | st.none(),
            "phone": PHONES | ASCII | st.none(),
            "firstName": ASCII | LATIN | st.just("x" * 101) | st.just("é" * 101),
            "lastName": ASCII | LATIN | st.none(),
            "company": ASCII | LATIN | st.just("AT&T"),
            "jobTitle": ASCII | LATIN | st.just("y" * 201) | st.just("ÿ" * 200),
            "deleted": DELETED | ASCII | st.none(),
            "notes": ASCII | st.integers(),
        },
    ),
    st.sampled_from(["US", "GB", "DE"]),
)
def test_plain_records_agree(fields: dict[str, object], region: str) -> None:
    """Records shaped like the ones the native path decides, mostly."""
    agree(fields, region)


def native_check(record: dict[str, object], region: str = "US") -> tuple[list[object], int] | None:
    """The native pass's answer for one record: None (Python's), or its values
    with the mask of the fields still pending (none for a finished Contact)."""
    (answer,), _ = records._PREVALIDATOR.check([record], region)
    return (list(answer), 0) if isinstance(answer, records.Contact) else answer


@settings(max_examples=800, deadline=None)
@given(ASCII_EMAILS | ASCII | LATIN)
def test_native_emails_are_the_email_fast_paths(email: str) -> None:
    checked = native_check({"externalId": "a", "updatedAt": "2024-01-01T00:00:00Z", "email": email})
    assert checked is not None
    values, pending = checked
    if not pending & 1 and values[1] is not None:  # decided natively
        assert values[1] == normalize.email_by_library(email)
        assert normalize.fast_normalize_email(email) in (None, values[1])  # Unicode: None


@settings(max_examples=800, deadline=None)
@given(LATIN | ASCII, st.sampled_from(["firstName", "lastName", "company", "jobTitle"]))
def test_native_names_are_the_models(name: str, key: str) -> None:
    agree({"externalId": "a", "updatedAt": "2024-01-01T00:00:00Z", key: name})


def test_latin_letters_are_kept_as_written() -> None:
    """What the native path assumes of the Latin letters it keeps (U+00C0 to
    U+017F but the signs), checked with Python's Unicode tables: alone or next
    to each other or to printable ASCII, they are NFC, clean_text keeps them,
    they combine with nothing and email-validator counts them as letters."""
    letters = [chr(c) for c in range(0xC0, 0x180) if c not in (0xD7, 0xF7)]
    ascii_printable = [chr(c) for c in range(0x20, 0x7F)]
    for letter in letters:
        assert unicodedata.category(letter)[0] == "L"
        assert unicodedata.combining(letter) == 0
        assert normalize.clean_text(f"a{letter}b", 10) == f"a{letter}b"
    for first in letters + ascii_printable:
        for second in letters:
            for pair in (first + second, second + first):
                assert unicodedata.is_normalized("NFC", pair), pair


def test_the_native_path_keeps_latin_names_and_leaves_the_rest() -> None:
    record = {"externalId": "a", "updatedAt": "2024-01-01T00:00:00Z"}
    kept = [{**record, "firstName": "Zoë", "lastName": "Ğür", "company": "Société Générale"}]
    (contact,), undecided = records._PREVALIDATOR.check(kept, "US")
    assert isinstance(contact, records.Contact)
    assert undecided == []
    assert contact[3:6] == ("Zoë", "Ğür", "Société Générale")
    for name in ("Zoe\u0301", "Ƃ", "a\u00a0b", "é & <b>", "Łódź\u200b"):
        (pair,), undecided = records._PREVALIDATOR.check([{**record, "firstName": name}], "US")
        assert pair[1] == 0b100, name
        assert undecided == [0]


@settings(max_examples=800, deadline=None)
@given(
    PHONES | ASCII | st.text("0123456789 +-().", max_size=20), st.sampled_from(["US", "GB", "DE"])
)
def test_native_phones_are_the_librarys(phone: str, region: str) -> None:
    checked = native_check(
        {"externalId": "a", "updatedAt": "2024-01-01T00:00:00Z", "phone": phone}, region
    )
    assert checked is not None
    values, pending = checked
    if not pending & 0b10 and values[2] is not None:  # decided natively
        assert values[2] == normalize.phone_by_library(phone, region)


def test_the_native_path_decides_the_benchmark_records() -> None:
    batch = list(benchmark_records(3_000))
    checked, undecided = records._PREVALIDATOR.check(batch, "US")
    assert all(answer is not None for answer in checked)  # every record, at record level
    # Only the records left with pending fields are for Python to visit.
    contacts = [isinstance(answer, records.Contact) for answer in checked]
    assert undecided == [index for index, contact in enumerate(contacts) if not contact]
    pending = [answer[1] for answer in checked if not isinstance(answer, records.Contact)]
    # Emails, names and phones are left to Python only when unusual (accents, invalid).
    assert sum(contacts) > 1_500
    assert sum(1 for mask in pending if mask & 0b10) < 100
    assert validate_records(batch, default_region="US") == [
        validate_record_by_model(record, default_region="US") for record in batch
    ]
