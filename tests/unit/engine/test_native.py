"""The native hot loops: what they produce, and errors that name an index, never a value."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contactsync import _native
from contactsync.engine.prepare import content_digest_by_python
from contactsync.engine.records import Contact


def test_copy_text_encodes_each_kind_of_cell() -> None:
    assert _native.copy_text([("a\tb\\c\nd\re", b"\x01\xab", True, False, None)]) == (
        b"a\\tb\\\\c\\nd\\re\t\\\\x01ab\tt\tf\t\\N\n"
    )
    assert _native.copy_text([]) == b""


def test_copy_text_refuses_other_types_and_lone_surrogates_without_echo() -> None:
    with pytest.raises(ValueError, match=r"row #1, cell #0: not None, str, bytes or bool"):
        _native.copy_text([("ok",), (12,)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"value #0") as caught:
        _native.copy_text([("secret\ud800",)])
    assert "secret" not in str(caught.value)


def test_copy_binary_encodes_each_kind_of_cell() -> None:
    moment = datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC)  # one second after PostgreSQL's epoch
    assert _native.copy_binary([("é", b"\x01", True, moment, None)]) == (
        b"\x00\x05"  # five cells
        b"\x00\x00\x00\x02\xc3\xa9"
        b"\x00\x00\x00\x01\x01"
        b"\x00\x00\x00\x01\x01"
        b"\x00\x00\x00\x08" + (1_000_000).to_bytes(8, "big") + b"\xff\xff\xff\xff"
    )
    assert _native.copy_binary([]) == b""


def test_copy_binary_refuses_what_it_cannot_type_without_echo() -> None:
    refusal = r"row #1, cell #0: not None, str, bytes, bool or datetime"
    with pytest.raises(ValueError, match=refusal):
        _native.copy_binary([("ok",), (12,)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"row #0: a datetime without a time zone"):
        _native.copy_binary([(datetime(2024, 1, 1),)])
    with pytest.raises(ValueError, match=r"row #0: not a tuple"):
        _native.copy_binary([["secret"]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"value #0") as caught:
        _native.copy_binary([("secret\ud800",)])
    assert "secret" not in str(caught.value)


TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=12)
CONTACTS = st.builds(
    Contact,
    external_id=TEXT,
    email=TEXT | st.none(),
    phone=TEXT | st.none(),
    first_name=TEXT | st.none(),
    last_name=TEXT | st.none(),
    company=TEXT | st.none(),
    job_title=TEXT | st.none(),
    updated_at=st.datetimes(timezones=st.just(UTC)),
    deleted=st.booleans(),
    attributes=st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple),
)


@given(key=st.binary(min_size=1, max_size=64), contacts=st.lists(CONTACTS, max_size=5))
def test_content_digests_are_the_python_reference(key: bytes, contacts: list[Contact]) -> None:
    assert _native.content_digests(key, contacts) == [
        content_digest_by_python(key, contact) for contact in contacts
    ]


def test_content_digests_tell_fields_apart() -> None:
    base = Contact("a", "x", None, None, None, None, None, datetime.now(UTC), False, ())
    moved = base._replace(email=None, phone="x")
    deleted = base._replace(deleted=True)
    attributed = base._replace(attributes=(("k", "v"),))
    digests = _native.content_digests(b"k" * 32, [base, moved, deleted, attributed])
    assert len(set(digests)) == 4
    assert all(len(digest) == 16 for digest in digests)
