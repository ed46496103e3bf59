"""Reason codes are API: this freezes them."""

from __future__ import annotations

from contactsync.engine.reasons import Reason

FROZEN = {
    "EMAIL_INVALID": "email.invalid",
    "PHONE_INVALID": "phone.invalid",
    "FIELD_TOO_LONG": "field.too_long",
    "FIELD_MISSING": "field.missing",
    "FIELD_INVALID": "field.invalid",
    "NAME_MARKUP": "name.markup",
    "RECORD_MALFORMED": "record.malformed",
    "RECORD_TOO_LARGE": "record.too_large",
    "ENCODING_INVALID": "encoding.invalid",
    "ATTRIBUTES_TOO_MANY": "attributes.too_many",
    "UPDATED_AT_INVALID": "updated_at.invalid",
}


def test_codes_are_never_renamed() -> None:
    # New codes may be added; existing ones keep their name and value.
    current = {reason.name: reason.value for reason in Reason}
    assert {name: current.get(name) for name in FROZEN} == FROZEN


def test_codes_are_strings() -> None:
    assert Reason.EMAIL_INVALID == "email.invalid"
    assert f"{Reason.PHONE_INVALID}" == "phone.invalid"


def test_every_code_has_a_one_line_description() -> None:
    for reason in Reason:
        assert reason.description
        assert "\n" not in reason.description
        assert reason.description.endswith(".")
