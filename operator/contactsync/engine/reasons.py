"""Stable reason codes for rejected contact records.

The codes are API: quarantine tables, metrics labels and dashboards key on
them, so a code is never renamed or reused. New codes may be added. A reason
names a rule, never a value, so reasons can be logged and exported without
leaking personal data.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a record was rejected. The value is the stable code."""

    EMAIL_INVALID = "email.invalid"
    PHONE_INVALID = "phone.invalid"
    FIELD_TOO_LONG = "field.too_long"
    FIELD_MISSING = "field.missing"
    FIELD_INVALID = "field.invalid"
    NAME_MARKUP = "name.markup"
    RECORD_MALFORMED = "record.malformed"
    RECORD_TOO_LARGE = "record.too_large"
    ENCODING_INVALID = "encoding.invalid"
    ATTRIBUTES_TOO_MANY = "attributes.too_many"
    UPDATED_AT_INVALID = "updated_at.invalid"

    @property
    def description(self) -> str:
        """One line for the docs: what the code means."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS: dict[Reason, str] = {
    Reason.EMAIL_INVALID: "The email address is not a valid, globally deliverable address.",
    Reason.PHONE_INVALID: "The phone number is not a valid number for its country.",
    Reason.FIELD_TOO_LONG: "A text field, attribute key or attribute value exceeds its length "
    "limit after cleaning.",
    Reason.FIELD_MISSING: "A required field (externalId, updatedAt) is absent or empty.",
    Reason.FIELD_INVALID: "A field has the wrong type or cannot be parsed.",
    Reason.NAME_MARKUP: "A name, company or job title contains markup or a script payload.",
    Reason.RECORD_MALFORMED: "The record is not a mapping of column names to values, "
    "or its columns conflict.",
    Reason.RECORD_TOO_LARGE: "The record's text content exceeds 16 KiB.",
    Reason.ENCODING_INVALID: "A value holds surrogates or U+FFFD, the marks of a bad decode.",
    Reason.ATTRIBUTES_TOO_MANY: "The record has more than 32 non-empty attributes.",
    Reason.UPDATED_AT_INVALID: "updatedAt is not an ISO-8601 date-time in the supported range.",
}
