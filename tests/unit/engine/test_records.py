"""validate_record: the normalised Contact, and every reason code."""

from __future__ import annotations

import pickle
from collections import UserDict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contactsync.engine.reasons import Reason
from contactsync.engine.records import (
    MAX_ATTRIBUTE_KEY,
    MAX_ATTRIBUTE_VALUE,
    MAX_ATTRIBUTES,
    MAX_EMAIL,
    MAX_EXTERNAL_ID,
    MAX_NAME,
    MAX_ORGANISATION,
    MAX_PHONE,
    MAX_RECORD_BYTES,
    SCALAR_FIELDS,
    Contact,
    ContactIn,
    reasons_from,
    validate_record,
)

CSV_ROW: dict[str, object] = {
    "externalId": "crm-000123",
    "email": "Jane.Doe@Example.COM",
    "phone": "(650) 253-0000",
    "firstName": "  Jane ",
    "lastName": "O'Brien",
    "company": "Acme\u00a0Corp",
    "jobTitle": "Head of Sales",
    "updatedAt": "2024-05-01T12:34:56Z",
    "deleted": "",
    "attr.tier": "gold",
    "attr.region": "",
    "attr.source": "web form",
    "notes": "ignored: not a ContactIn column",
}


def validate(fields: Mapping[str, object], region: str = "US") -> Contact | list[Reason]:
    return validate_record(fields, default_region=region)


def contact(fields: Mapping[str, object]) -> Contact:
    result = validate(fields)
    assert isinstance(result, Contact), result
    return result


def reasons(fields: object) -> list[Reason]:
    result = validate_record(fields, default_region="US")  # type: ignore[arg-type]
    assert isinstance(result, list), result
    return result


def row(**changes: object) -> dict[str, object]:
    return {**CSV_ROW, **changes}


def no_attribute_columns() -> dict[str, object]:
    return {k: v for k, v in CSV_ROW.items() if not k.startswith("attr.")}


# --- the normalised record ------------------------------------------------------


def test_a_csv_row_is_normalised() -> None:
    assert contact(CSV_ROW) == Contact(
        external_id="crm-000123",
        email="Jane.Doe@example.com",
        phone="+16502530000",
        first_name="Jane",
        last_name="O'Brien",
        company="Acme Corp",
        job_title="Head of Sales",
        updated_at=datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC),
        deleted=False,
        attributes=(("source", "web form"), ("tier", "gold")),
    )


def test_a_json_record_is_normalised() -> None:
    record = {
        "externalId": "42",
        "email": None,
        "phone": "+44 20 7946 0958",
        "updatedAt": "2024-05-01T14:34:56+02:00",
        "deleted": True,
        "attributes": {"tier": "gold", "empty": "", "absent": None},
    }
    assert contact(record) == Contact(
        "42",
        None,
        "+442079460958",
        None,
        None,
        None,
        None,
        datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC),
        True,
        (("tier", "gold"),),
    )


def test_the_default_region_applies_to_national_numbers() -> None:
    result = validate(row(phone="020 7946 0958"), region="GB")
    assert isinstance(result, Contact)
    assert result.phone == "+442079460958"
    assert reasons(row(phone="020 7946 0958")) == [Reason.PHONE_INVALID]


def test_an_unknown_default_region_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="region"):
        validate_record(CSV_ROW, default_region="XX")


def test_blank_values_mean_absent() -> None:
    result = contact(row(email="", phone="   ", firstName="\u200b", company="\t"))
    assert (result.email, result.phone, result.first_name, result.company) == (None,) * 4
    assert contact(row(**{"attr.tier": " "})).attributes == (("source", "web form"),)


def test_any_mapping_is_a_record() -> None:
    assert contact(MappingProxyType(CSV_ROW)) == contact(CSV_ROW)
    assert contact(UserDict(CSV_ROW)) == contact(CSV_ROW)


def test_contact_is_frozen_hashable_and_pickles() -> None:
    result = contact(CSV_ROW)
    assert pickle.loads(pickle.dumps(result)) == result
    assert hash(result) == hash(pickle.loads(pickle.dumps(result)))
    with pytest.raises(AttributeError):
        result.email = "x@example.com"  # type: ignore[misc]


def test_the_input_model_can_be_used_on_its_own() -> None:
    model = ContactIn.model_validate(
        {"externalId": "1", "updatedAt": "2024-01-01T00:00:00", "phone": "+1 650 253 0000"}
    )
    assert model.phone == "+16502530000"  # no default region: "+" numbers only
    assert model.to_contact().updated_at.tzinfo is UTC


# --- each reason ---------------------------------------------------------------


def test_email_invalid() -> None:
    assert reasons(row(email="jane.doe@localhost")) == [Reason.EMAIL_INVALID]
    assert reasons(row(email="not an email")) == [Reason.EMAIL_INVALID]


def test_phone_invalid() -> None:
    assert reasons(row(phone="12345")) == [Reason.PHONE_INVALID]
    assert reasons(row(phone="+1 123 555 0100")) == [Reason.PHONE_INVALID]
    assert reasons(row(phone="call me")) == [Reason.PHONE_INVALID]


@pytest.mark.parametrize(
    "record",
    [
        {"updatedAt": "2024-01-01T00:00:00Z"},
        row(externalId=""),
        row(externalId="   "),
        row(externalId=None),
        row(updatedAt=""),
        row(updatedAt=None),
        {"externalId": "1"},
    ],
)
def test_field_missing(record: dict[str, object]) -> None:
    assert reasons(record) == [Reason.FIELD_MISSING]


@pytest.mark.parametrize(
    "record",
    [
        row(externalId=123),
        row(email=42),
        row(phone=6502530000),
        row(firstName=["Jane"]),
        row(company=b"Acme"),
        row(deleted="maybe"),
        row(deleted=2),
        row(deleted=[True]),
        {**no_attribute_columns(), "attributes": ["tier"]},
        row(**{"attr.tier": 5}),
        row(**{"attr.": "no name"}),
        {**row(), "attributes": {"a": "1", " a ": "2"}, "attr.tier": None},
    ],
)
def test_field_invalid(record: dict[str, object]) -> None:
    assert reasons(record) == [Reason.FIELD_INVALID]


@pytest.mark.parametrize(
    "value", ["<b>Jane</b>", "javascript:alert(1)", "<img src=x onerror=alert(1)>", "&#60;x"]
)
@pytest.mark.parametrize("field", ["firstName", "lastName", "company", "jobTitle"])
def test_name_markup(field: str, value: str) -> None:
    assert reasons(row(**{field: value})) == [Reason.NAME_MARKUP]


@pytest.mark.parametrize("value", ["O'Brien", "Zoë", "李", "Jean-Luc", "AT&T", "Smith, Jr."])
def test_legitimate_names_are_kept(value: str) -> None:
    assert contact(row(lastName=value)).last_name == value


@pytest.mark.parametrize(
    "record",
    [
        ["externalId", "1"],
        "externalId=1",
        None,
        {1: "x", "externalId": "1", "updatedAt": "2024-01-01T00:00:00Z"},
        row(attributes={"tier": "silver"}),  # also given as attr.tier
        row(attributes="tier=gold"),  # attr.* columns and an attributes column
    ],
)
def test_record_malformed(record: object) -> None:
    assert reasons(record) == [Reason.RECORD_MALFORMED]


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("firstName", "Jane\udc80"),
        ("company", "Caf\ufffd"),
        ("email", "jane\ud800@example.com"),
        ("attr.tier", "g\ufffdld"),
        ("externalId", "\udcff"),
        ("updatedAt", "2024-01-01T00:00:00\ufffd"),
        ("deleted", "\ufffd"),
    ],
)
def test_encoding_invalid(field: str, bad: str) -> None:
    assert reasons(row(**{field: bad})) == [Reason.ENCODING_INVALID]


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2024-13-01T00:00:00",
        "2024-05-01T25:00:00Z",
        "1714566896",
        "2024-05-01",  # a date alone is too coarse to order updates
        "20240501",
        "0001-01-01T00:00:00+01:00",  # before datetime.min once in UTC
        1714566896,
        True,
    ],
)
def test_updated_at_invalid(value: object) -> None:
    assert reasons(row(updatedAt=value)) == [Reason.UPDATED_AT_INVALID]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:34:56Z", datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),
        ("2024-05-01T12:34:56+00:00", datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),
        ("2024-05-01T14:34:56+02:00", datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),
        ("2024-05-01T07:04:56-05:30", datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),
        ("2024-05-01T12:34:56", datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),  # naive
        ("2024-05-01 12:34:56.123456", datetime(2024, 5, 1, 12, 34, 56, 123456, tzinfo=UTC)),
        ("20240501T123456Z", datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),
        ("  2024-05-01T12:34Z ", datetime(2024, 5, 1, 12, 34, tzinfo=UTC)),
        (datetime(2024, 5, 1, 12, 34, 56), datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)),
        (
            datetime(2024, 5, 1, 13, 34, 56, tzinfo=timezone(timedelta(hours=1))),
            datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC),
        ),
    ],
)
def test_updated_at_parsing(value: object, expected: datetime) -> None:
    parsed = contact(row(updatedAt=value)).updated_at
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(word, True) for word in ("true", "TRUE", " yes ", "y", "t", "on", "1")],
        *[(word, False) for word in ("false", "False", "no", "n", "f", "off", "0", "", "  ")],
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        (None, False),
    ],
)
def test_deleted_parsing(value: object, expected: bool) -> None:
    assert contact(row(deleted=value)).deleted is expected


def test_absent_deleted_is_false() -> None:
    record = {k: v for k, v in CSV_ROW.items() if k != "deleted"}
    assert contact(record).deleted is False


# --- limits, at and one past the boundary -----------------------------------------


def email_of_length(length: int) -> str:
    domain = ".".join(["d" * 63, "d" * 63, "d" * 63]) + ".com"  # 196 characters
    return "l" * (length - len(domain) - 1) + "@" + domain


TEXT_LIMITS = [
    ("externalId", MAX_EXTERNAL_ID, lambda n: "i" * n),
    ("firstName", MAX_NAME, lambda n: "f" * n),
    ("lastName", MAX_NAME, lambda n: "l" * n),
    ("company", MAX_ORGANISATION, lambda n: "c" * n),
    ("jobTitle", MAX_ORGANISATION, lambda n: "j" * n),
    ("email", MAX_EMAIL, email_of_length),
    # Separators count: the limit is on the number as written, after cleaning.
    ("phone", MAX_PHONE, lambda n: "+1" + "-" * (n - 12) + "6502530000"),
]


@pytest.mark.parametrize(("field", "limit", "make"), TEXT_LIMITS)
def test_text_limits(field: str, limit: int, make: object) -> None:
    assert callable(make)
    at_limit = make(limit)
    assert len(at_limit) == limit
    assert isinstance(validate(row(**{field: at_limit})), Contact)
    assert reasons(row(**{field: make(limit + 1)})) == [Reason.FIELD_TOO_LONG]


def test_limits_apply_after_cleaning() -> None:
    padded = "  " + "a" * MAX_NAME + "\u200b" * 20 + "  "
    assert contact(row(firstName=padded)).first_name == "a" * MAX_NAME
    spread = " ".join("a" * (MAX_NAME // 2 + 1))  # 101 characters once collapsed
    assert reasons(row(firstName=spread.replace(" ", "   "))) == [Reason.FIELD_TOO_LONG]


def attrs(count: int, **extra: str) -> dict[str, object]:
    record = no_attribute_columns()
    record.update({f"attr.key{i}": f"value {i}" for i in range(count)})
    record.update(extra)
    return record


def test_attribute_count() -> None:
    assert len(contact(attrs(MAX_ATTRIBUTES)).attributes) == MAX_ATTRIBUTES
    assert reasons(attrs(MAX_ATTRIBUTES + 1)) == [Reason.ATTRIBUTES_TOO_MANY]
    # Blank cells are absent attributes and do not count.
    many_blank = attrs(MAX_ATTRIBUTES, **{f"attr.blank{i}": "" for i in range(10)})
    assert len(contact(many_blank).attributes) == MAX_ATTRIBUTES
    blank_once_cleaned = attrs(MAX_ATTRIBUTES, **{"attr.a": "  ", "attr.b": "\u200b"})
    assert len(contact(blank_once_cleaned).attributes) == MAX_ATTRIBUTES


def test_attribute_key_and_value_length() -> None:
    key, value = "k" * MAX_ATTRIBUTE_KEY, "v" * MAX_ATTRIBUTE_VALUE
    assert contact(row(**{f"attr.{key}": value})).attributes[0] == (key, value)
    assert reasons(row(**{f"attr.{key}k": "v"})) == [Reason.FIELD_TOO_LONG]
    assert reasons(row(**{"attr.k": value + "v"})) == [Reason.FIELD_TOO_LONG]


def padded_to(total_bytes: int, filler: str = "x") -> dict[str, object]:
    """CSV_ROW plus an ignored column that brings the text to total_bytes."""
    record = row()
    used = sum(len(k.encode()) + len(str(v).encode()) for k, v in record.items()) + len("pad")
    room = total_bytes - used
    width = len(filler.encode())
    record["pad"] = filler * (room // width) + "x" * (room % width)
    return record


@pytest.mark.parametrize("filler", ["x", "é", "李", "😀"])
def test_record_size_limit(filler: str) -> None:
    assert isinstance(validate(padded_to(MAX_RECORD_BYTES, filler)), Contact)
    assert reasons(padded_to(MAX_RECORD_BYTES + 1, filler)) == [Reason.RECORD_TOO_LARGE]


def test_nested_attributes_count_towards_the_size() -> None:
    record = no_attribute_columns()
    record["attributes"] = {f"k{i}": "v" * 1000 for i in range(17)}
    assert reasons(record) == [Reason.RECORD_TOO_LARGE]


def test_an_oversized_record_is_rejected_before_anything_else() -> None:
    record = row(email="bad", phone="bad", pad="x" * MAX_RECORD_BYTES)
    assert reasons(record) == [Reason.RECORD_TOO_LARGE]


# --- several reasons at once, and no personal data ------------------------------------

BAD_ROW: dict[str, object] = {
    "externalId": "x" * (MAX_EXTERNAL_ID + 1),
    "email": "jane.secret@localhost",
    "phone": "555-SECRET",
    "firstName": "<script>steal('Jane')</script>",
    "lastName": "Secretary" * 20,
    "company": "Acme\ufffd",
    "updatedAt": "last tuesday",
    "deleted": "perhaps",
    **{f"attr.k{i}": f"hidden value {i}" for i in range(MAX_ATTRIBUTES + 1)},
}


def test_every_reason_is_reported_once_in_a_stable_order() -> None:
    expected = [
        Reason.EMAIL_INVALID,
        Reason.PHONE_INVALID,
        Reason.FIELD_TOO_LONG,
        Reason.FIELD_INVALID,
        Reason.NAME_MARKUP,
        Reason.ENCODING_INVALID,
        Reason.ATTRIBUTES_TOO_MANY,
        Reason.UPDATED_AT_INVALID,
    ]
    assert reasons(BAD_ROW) == expected
    assert reasons(dict(reversed(BAD_ROW.items()))) == expected


def test_one_field_can_carry_several_reasons() -> None:
    name = "<b>" + "n" * MAX_NAME
    assert reasons(row(firstName=name)) == [Reason.FIELD_TOO_LONG, Reason.NAME_MARKUP]
    too_long_attributes = {f"attr.k{i}": "v" * (MAX_ATTRIBUTE_VALUE + 1) for i in range(3)}
    result = reasons(attrs(MAX_ATTRIBUTES, **too_long_attributes))
    assert result == [Reason.FIELD_TOO_LONG, Reason.ATTRIBUTES_TOO_MANY]


def test_no_value_appears_in_a_rejection() -> None:
    result = reasons(BAD_ROW)
    rendered = repr(result) + str(result) + " ".join(r.description for r in result)
    for value in BAD_ROW.values():
        assert isinstance(value, str)
        for fragment in (value, value[:8], "secret", "Jane", "hidden"):
            assert fragment not in rendered


def test_no_value_appears_in_the_models_error() -> None:
    with pytest.raises(ValidationError) as info:
        ContactIn.model_validate(BAD_ROW, context={"default_region": "US"})
    # What gets logged: the message, and the details without the inputs.
    text = str(info.value) + repr(info.value.errors(include_input=False))
    for fragment in ("secret", "SECRET", "Jane", "tuesday", "perhaps", "Secretary"):
        assert fragment not in text
    assert reasons_from(info.value) == [
        Reason.EMAIL_INVALID,
        Reason.PHONE_INVALID,
        Reason.FIELD_TOO_LONG,
        Reason.FIELD_INVALID,
        Reason.NAME_MARKUP,
        Reason.ENCODING_INVALID,
        Reason.UPDATED_AT_INVALID,
    ]


# --- robustness ----------------------------------------------------------------------

FIELD_NAMES = [*SCALAR_FIELDS, "attributes", "attr.x"]
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), values, max_size=12))
def test_any_mapping_gives_a_contact_or_reasons(fields: dict[str, object]) -> None:
    result = validate(fields)
    if isinstance(result, list):
        assert result
        assert all(isinstance(reason, Reason) for reason in result)
        assert len(set(result)) == len(result)
    else:
        assert isinstance(result, Contact)
        assert result.updated_at.tzinfo is UTC


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {"externalId": st.text(min_size=1, max_size=10), "updatedAt": st.just("2024-01-01T00:00Z")},
        optional={name: st.text(max_size=40) for name in FIELD_NAMES[1:7]},
    )
)
def test_text_records_are_cleaned_or_rejected(fields: dict[str, object]) -> None:
    result = validate(fields)
    if isinstance(result, Contact):
        for text in (result.external_id, result.first_name, result.company, result.job_title):
            assert text is None or (text and text == text.strip() and "  " not in text)
