"""The contact record: the input model, its validation, the normalised output.

A source (CSV file, JSON API) yields one mapping of column names to values
per record. :func:`validate_record` turns it into a :class:`Contact` or into
the list of every :class:`~contactsync.engine.reasons.Reason` that applies.

Input rules, beyond the per-field limits in :class:`ContactIn`:

* keys are the camelCase names of :class:`ContactIn`; unknown keys are
  ignored (CSV exports carry columns we do not sync);
* a column ``attr.<name>`` is the attribute ``<name>``; it merges with an
  ``attributes`` mapping, and a name given both ways is ``record.malformed``;
* every text value is cleaned with
  :func:`~contactsync.engine.normalize.clean_text` first, and length limits
  apply to the cleaned text; an empty (or blank) value means absent;
* ``null``/``None`` means absent too;
* the whole record may hold at most 16 KiB of text (UTF-8, keys and values,
  attributes included); a larger record is rejected with
  ``record.too_large`` alone, before any other work, so an oversized input
  cannot cost more than a size check;
* rejections carry reason codes only, in the declaration order of
  :class:`Reason`, without duplicates, never a value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Final, NamedTuple, NoReturn

import email_validator
import phonenumbers
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, EMAIL_MAX_LENGTH
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationError,
    ValidationInfo,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from contactsync import _native

from .normalize import (
    BAD_DECODE,
    PHONES,
    NormalizeError,
    clean_text,
    contains_markup,
    normalize_email,
    normalize_phone,
)
from .reasons import Reason

__all__ = [
    "ATTRIBUTE_PREFIX",
    "MAX_ATTRIBUTES",
    "MAX_ATTRIBUTE_KEY",
    "MAX_ATTRIBUTE_VALUE",
    "MAX_EMAIL",
    "MAX_EXTERNAL_ID",
    "MAX_NAME",
    "MAX_ORGANISATION",
    "MAX_PHONE",
    "MAX_RECORD_BYTES",
    "SCALAR_FIELDS",
    "Contact",
    "ContactIn",
    "reasons_from",
    "validate_record",
    "validate_record_by_model",
    "validate_records",
]

MAX_EXTERNAL_ID: Final = 128
MAX_EMAIL: Final = 254
MAX_PHONE: Final = 32
MAX_NAME: Final = 100
MAX_ORGANISATION: Final = 200  # company and job title
MAX_ATTRIBUTES: Final = 32
MAX_ATTRIBUTE_KEY: Final = 64
MAX_ATTRIBUTE_VALUE: Final = 1024
MAX_RECORD_BYTES: Final = 16 * 1024
ATTRIBUTE_PREFIX: Final = "attr."

# For values checked further before their length is (or that have none).
_UNBOUNDED: Final = 1 << 62
_UTF8_MAX_BYTES: Final = 4
_NO_REGION: Final = "ZZ"  # without a default region only "+<cc>" numbers are valid
_TRUE_WORDS: Final = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE_WORDS: Final = frozenset({"false", "f", "no", "n", "off", "0"})


class Contact(NamedTuple):
    """A validated, normalised contact. Immutable, hashable, cheap to pickle.

    ``email`` is email-validator's normalised form, ``phone`` is E.164,
    ``updated_at`` is an aware UTC datetime and ``attributes`` holds
    ``(key, value)`` pairs sorted by key.
    """

    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    job_title: str | None
    updated_at: datetime
    deleted: bool
    attributes: tuple[tuple[str, str], ...]


# --- errors -----------------------------------------------------------------


def _error(reason: Reason) -> PydanticCustomError:
    # The error type IS the reason code; the message is fixed text, never the value.
    return PydanticCustomError(reason.value, reason.description)


def _fail(reasons: Iterable[Reason]) -> NoReturn:
    """Raise every reason for the current field; pydantic adds the location."""
    unique = list(dict.fromkeys(reasons))
    if len(unique) == 1:
        raise _error(unique[0])
    details: list[InitErrorDetails] = [
        {"type": _error(reason), "loc": (), "input": None} for reason in unique
    ]
    raise ValidationError.from_exception_data("ContactIn", details, hide_input=True)


def _bounded(value: str, max_len: int) -> str:
    try:
        return clean_text(value, max_len)
    except NormalizeError as exc:
        _fail([exc.reason])


# --- field validators -------------------------------------------------------


def _external_id(value: object) -> str:
    if value is None:
        _fail([Reason.FIELD_MISSING])
    if not isinstance(value, str):
        _fail([Reason.FIELD_INVALID])
    try:
        text = clean_text(value, MAX_EXTERNAL_ID)
    except NormalizeError as exc:
        _fail([exc.reason])
    if not text:
        _fail([Reason.FIELD_MISSING])
    return text


def _display(max_len: int) -> AfterValidator:
    return AfterValidator(_display_check(max_len))


def _display_check(max_len: int) -> Callable[[str | None], str | None]:
    """A name, company or job title: bounded, and free of markup."""

    def validate(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            # Unbounded here so an over-long value is still checked for markup.
            text = clean_text(value, _UNBOUNDED)
        except NormalizeError as exc:
            _fail([exc.reason])
        if len(text) > max_len or contains_markup(text):
            _fail(
                reason
                for reason, found in (
                    (Reason.FIELD_TOO_LONG, len(text) > max_len),
                    (Reason.NAME_MARKUP, contains_markup(text)),
                )
                if found
            )
        return text or None

    return validate


# Email and phone clean and normalise in one try: this is the hot path.
def _email(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        text = clean_text(value, MAX_EMAIL)
        return normalize_email(text) if text else None
    except NormalizeError as exc:
        _fail([exc.reason])


def _phone(value: str | None, info: ValidationInfo) -> str | None:
    region = info.context.get("default_region", _NO_REGION) if info.context else _NO_REGION
    return _phone_in(value, region)


def _phone_in(value: str | None, region: str) -> str | None:
    if value is None:
        return None
    try:
        text = clean_text(value, MAX_PHONE)
        return normalize_phone(text, region) if text else None
    except NormalizeError as exc:
        _fail([exc.reason])


def _updated_at(value: object) -> datetime:
    if isinstance(value, str):
        text = _bounded(value, _UNBOUNDED)
        if not text:
            _fail([Reason.FIELD_MISSING])
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            _fail([Reason.UPDATED_AT_INVALID])
        # Every ISO-8601 date without a time fits in 10 characters and every
        # date-time needs more; a bare date is too coarse to order updates.
        if len(text) <= len("YYYY-MM-DD"):
            _fail([Reason.UPDATED_AT_INVALID])
    elif isinstance(value, datetime):
        parsed = value
    elif value is None:
        _fail([Reason.FIELD_MISSING])
    else:
        _fail([Reason.UPDATED_AT_INVALID])
    if parsed.tzinfo is UTC:  # the common "...Z"
        return parsed
    if parsed.utcoffset() is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before datetime.min in UTC
        _fail([Reason.UPDATED_AT_INVALID])


def _deleted(value: object) -> object:
    """CSV gives "true"/"yes"/"1"/"" and so on; absent or blank means False."""
    if value is None or value == "":
        return False
    if isinstance(value, str):
        word = _bounded(value, _UNBOUNDED).lower()
        if not word or word in _FALSE_WORDS:
            return False
        if word in _TRUE_WORDS:
            return True
        _fail([Reason.FIELD_INVALID])
    return value  # bool (and 0/1) are pydantic's to check


def _attributes(value: object) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, Mapping):
        _fail([Reason.FIELD_INVALID])
    reasons: list[Reason] = []
    out: dict[str, str] = {}
    present = 0
    for raw_key, raw_value in value.items():
        if raw_value is None or raw_value == "":
            continue  # absent: CSV has a cell for every attribute column
        if not isinstance(raw_key, str) or not isinstance(raw_value, str):
            reasons.append(Reason.FIELD_INVALID)
            present += 1
            continue
        try:
            text = clean_text(raw_value, _UNBOUNDED)
            key = clean_text(raw_key, _UNBOUNDED)
        except NormalizeError as exc:
            reasons.append(exc.reason)
            present += 1
            continue
        if not text:
            continue  # blank is absent too
        present += 1
        if not key or key in out:
            reasons.append(Reason.FIELD_INVALID)
        if len(key) > MAX_ATTRIBUTE_KEY or len(text) > MAX_ATTRIBUTE_VALUE:
            reasons.append(Reason.FIELD_TOO_LONG)
        out[key] = text
    if present > MAX_ATTRIBUTES:
        reasons.append(Reason.ATTRIBUTES_TOO_MANY)
    if reasons:
        _fail(reasons)
    return out


# --- the model --------------------------------------------------------------

_OptionalText = Annotated[str | None, Strict()]


class ContactIn(BaseModel):
    """One input record, by its camelCase JSON/CSV names.

    Text fields must be strings (``field.invalid`` otherwise), are cleaned,
    then bounded: ``externalId`` 128, ``email`` 254, ``phone`` 32 (as
    written), names 100, ``company`` and ``jobTitle`` 200 characters.
    ``email`` and ``phone`` are normalised (``phone`` against the
    ``default_region`` in the validation context; without one, only
    ``+<cc>`` numbers are valid). ``updatedAt`` is an ISO-8601 date-time; a
    naive one is taken as UTC. ``deleted`` takes booleans, 0/1 and the usual
    words (true/false, yes/no, y/n, t/f, on/off, 1/0; blank is false).
    ``attributes`` maps at most 32 keys of at most 64 characters to values of
    at most 1024; blank values are dropped. Unknown keys are ignored.
    """

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    external_id: Annotated[str, PlainValidator(_external_id)] = Field(alias="externalId")
    email: Annotated[_OptionalText, AfterValidator(_email)] = None
    phone: Annotated[_OptionalText, AfterValidator(_phone)] = None
    first_name: Annotated[_OptionalText, _display(MAX_NAME)] = Field(None, alias="firstName")
    last_name: Annotated[_OptionalText, _display(MAX_NAME)] = Field(None, alias="lastName")
    company: Annotated[_OptionalText, _display(MAX_ORGANISATION)] = None
    job_title: Annotated[_OptionalText, _display(MAX_ORGANISATION)] = Field(None, alias="jobTitle")
    updated_at: Annotated[datetime, PlainValidator(_updated_at)] = Field(alias="updatedAt")
    deleted: Annotated[bool, BeforeValidator(_deleted)] = False
    attributes: Annotated[dict[str, str], PlainValidator(_attributes)] = Field(default_factory=dict)

    def to_contact(self) -> Contact:
        return Contact(
            self.external_id,
            self.email,
            self.phone,
            self.first_name,
            self.last_name,
            self.company,
            self.job_title,
            self.updated_at,
            self.deleted,
            tuple(sorted(self.attributes.items())),
        )


# The input fields a flat file carries as columns (everything but `attributes`,
# which arrive as `attr.<name>` columns), derived from the model.
SCALAR_FIELDS: Final = tuple(
    field.alias or name for name, field in ContactIn.model_fields.items() if name != "attributes"
)


# pydantic's own error types, for what its core checks before our validators.
_BUILTIN_REASONS: Final[Mapping[str, Reason]] = {
    "missing": Reason.FIELD_MISSING,
    "string_type": Reason.FIELD_INVALID,
    "bool_type": Reason.FIELD_INVALID,
    "bool_parsing": Reason.FIELD_INVALID,
    "model_type": Reason.RECORD_MALFORMED,
}
_REASON_ORDER: Final = {reason: index for index, reason in enumerate(Reason)}
_CODES: Final = {reason.value: reason for reason in Reason}


def _in_order(found: Iterable[Reason]) -> list[Reason]:
    """Reason codes deduplicated, in :class:`Reason` order."""
    return sorted(set(found), key=_REASON_ORDER.__getitem__)


def reasons_from(error: ValidationError) -> list[Reason]:
    """The reason codes of a ContactIn validation error, deduplicated, in
    :class:`Reason` order. An unexpected error type counts as
    ``field.invalid`` rather than being lost."""
    return _in_order(
        _CODES.get(kind) or _BUILTIN_REASONS.get(kind, Reason.FIELD_INVALID)
        for kind in (detail["type"] for detail in error.errors(include_url=False))
    )


# --- the entry point ----------------------------------------------------------


def _text_size(fields: Mapping[str, object], attributes: object, key_chars: int) -> int:
    """Characters of text in the record: keys and string values, attributes included."""
    try:
        # The common CSV record is all strings: let join do the walking in C.
        size = key_chars + len("".join(fields.values()))  # type: ignore[arg-type]
    except TypeError:
        size = key_chars + sum(len(v) for v in fields.values() if isinstance(v, str))
    if isinstance(attributes, Mapping):
        size += sum(
            (len(k) if isinstance(k, str) else 0) + (len(v) if isinstance(v, str) else 0)
            for k, v in attributes.items()
        )
    return size


def _too_large(fields: Mapping[str, object], attributes: object, key_chars: int) -> bool:
    chars = _text_size(fields, attributes, key_chars)
    # A character is 1 to 4 UTF-8 bytes, so the exact size is only needed
    # for the rare record between 4 KiB and 16 KiB of characters.
    if chars * _UTF8_MAX_BYTES <= MAX_RECORD_BYTES:
        return False
    if chars > MAX_RECORD_BYTES:
        return True
    texts = [item for pair in fields.items() for item in pair if isinstance(item, str)]
    if isinstance(attributes, Mapping):
        texts += [item for pair in attributes.items() for item in pair if isinstance(item, str)]
    # surrogatepass: a lone surrogate must be measured here and rejected later.
    return sum(len(text.encode("utf-8", "surrogatepass")) for text in texts) > MAX_RECORD_BYTES


_contexts: dict[str, dict[str, str]] = {}
# ContactIn.model_validate without its per-call keyword handling: this is the hot path.
_VALIDATOR: Final = ContactIn.__pydantic_validator__


def validate_record(fields: Mapping[str, object], *, default_region: str) -> Contact | list[Reason]:
    """Validate and normalise one record.

    Returns the :class:`Contact`, or every applicable reason code (see the
    module docstring). ``default_region`` (ISO 3166 alpha-2, e.g. "US") is
    the region of phone numbers written without a country code; an unknown
    region is a configuration error and raises ValueError.
    """
    return validate_records([fields], default_region=default_region)[0]


def validate_records(
    batch: Sequence[Mapping[str, object]], *, default_region: str
) -> list[Contact | list[Reason]]:
    """:func:`validate_record` for each record of a batch, in order.

    Native code (``Prevalidator``) first decides what it can of the plain
    records in one call; the rest of each record, and every record it leaves
    alone, takes the Python path.
    """
    _context(default_region)
    answers, undecided = _PREVALIDATOR.check(list(batch), default_region)
    for index in undecided:
        checked = answers[index]  # None, or a pair: values and pending fields
        answer = None if checked is None else _finish(checked, default_region)
        answers[index] = (
            _validate(batch[index], default_region, fast=True) if answer is None else answer
        )
    return answers


def validate_record_by_model(
    fields: Mapping[str, object], *, default_region: str
) -> Contact | list[Reason]:
    """:func:`validate_record` through the pydantic model alone: the reference
    the fast path is tested against."""
    return _validate(fields, default_region, fast=False)


def _context(default_region: str) -> dict[str, str]:
    context = _contexts.get(default_region)
    if context is None:
        if default_region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("default_region is not a supported region code")
        context = _contexts.setdefault(default_region, {"default_region": default_region})
    return context


def _validate(
    fields: Mapping[str, object], default_region: str, *, fast: bool
) -> Contact | list[Reason]:
    context = _context(default_region)
    if not isinstance(fields, dict | Mapping):  # dict first: the ABC check is slower
        return [Reason.RECORD_MALFORMED]
    try:
        keys = "".join(fields)
    except TypeError:  # a key that is not a string
        return [Reason.RECORD_MALFORMED]
    attributes = fields.get("attributes")
    if _too_large(fields, attributes, len(keys)):
        return [Reason.RECORD_TOO_LARGE]
    data: Mapping[str, object] = fields
    # The joined keys hold the prefix whenever a key starts with it.
    columns = (
        {
            key[len(ATTRIBUTE_PREFIX) :]: value
            for key, value in fields.items()
            if key.startswith(ATTRIBUTE_PREFIX)
        }
        if ATTRIBUTE_PREFIX in keys
        else None
    )
    if columns:
        if isinstance(attributes, Mapping):
            if not columns.keys().isdisjoint(attributes.keys()):
                return [Reason.RECORD_MALFORMED]
            columns.update(attributes)
        elif attributes not in (None, ""):
            return [Reason.RECORD_MALFORMED]
        data = {**fields, "attributes": columns}
    if fast and type(data) is dict:
        answer = _validate_fast(data, default_region)
        if answer is not None:
            return answer
    try:
        record: ContactIn = _VALIDATOR.validate_python(data, context=context)
    except ValidationError as error:
        return reasons_from(error)
    return record.to_contact()


# --- the fast path ------------------------------------------------------------
#
# ContactIn runs the validators above through pydantic's per-field machinery,
# which costs about as much as the validators themselves. The fast path calls
# the very same validator functions directly, in the model's field order, and
# answers only where the model's own type handling is known to be a no-op:
# a plain dict whose text fields hold exact `str` (or None, or are absent) and
# whose `deleted` is a str (or None, or absent). Anything else -- numbers,
# booleans, str subclasses, text holding surrogates or U+FFFD (rare, and left
# to the model rather than reasoned about) -- goes to the model. A hypothesis
# test compares both on generated records.

_Check = Callable[[str, str], str | None]  # (value, default region) -> normalised


def _email_in(value: str, region: str) -> str | None:
    return _email(value)


def _display_in(max_len: int) -> _Check:
    check = _display_check(max_len)
    return lambda value, region: check(value)


# The strict optional text fields, by input key, in the model's order.
_TEXT_CHECKS: Final[tuple[tuple[str, _Check], ...]] = (
    ("email", _email_in),
    ("phone", _phone_in),
    ("firstName", _display_in(MAX_NAME)),
    ("lastName", _display_in(MAX_NAME)),
    ("company", _display_in(MAX_ORGANISATION)),
    ("jobTitle", _display_in(MAX_ORGANISATION)),
)


def _reasons_of(error: PydanticCustomError | ValidationError) -> list[Reason]:
    if isinstance(error, PydanticCustomError):
        return [_CODES[error.type]]
    return reasons_from(error)


def _validate_fast(data: dict[str, object], region: str) -> Contact | list[Reason] | None:
    """The model's answer without the model, or None where only the model knows."""
    texts: list[str | None] = []
    found: list[Reason] = []
    for key, check in _TEXT_CHECKS:
        value = data.get(key)
        if value is None:  # absent (the default) or None (which every check passes)
            texts.append(None)
            continue
        if type(value) is not str or (not value.isascii() and BAD_DECODE.search(value) is not None):
            return None
        try:
            texts.append(check(value, region))
        except (PydanticCustomError, ValidationError) as error:
            found += _reasons_of(error)
            texts.append(None)
    deleted: object = data.get("deleted")
    if deleted is not None and type(deleted) is not str:
        return None
    # Plain validators: they take any input, exactly as the model hands it over;
    # an absent key is pydantic's `missing`, or the field's default.
    external_id, updated_at, flag, attributes = "", _EPOCH, False, {}
    try:
        if "externalId" in data:
            external_id = _external_id(data["externalId"])
        else:
            found.append(Reason.FIELD_MISSING)
    except (PydanticCustomError, ValidationError) as error:
        found += _reasons_of(error)
    try:
        if "updatedAt" in data:
            updated_at = _updated_at(data["updatedAt"])
        else:
            found.append(Reason.FIELD_MISSING)
    except (PydanticCustomError, ValidationError) as error:
        found += _reasons_of(error)
    try:
        flag = bool(_deleted(deleted))  # None (absent) is False, like the default
    except (PydanticCustomError, ValidationError) as error:
        found += _reasons_of(error)
    try:
        if "attributes" in data:
            attributes = _attributes(data["attributes"])
    except (PydanticCustomError, ValidationError) as error:
        found += _reasons_of(error)
    if found:
        return _in_order(found)
    email, phone, first_name, last_name, company, job_title = texts
    return Contact(
        external_id,
        email,
        phone,
        first_name,
        last_name,
        company,
        job_title,
        updated_at,
        flag,
        tuple(sorted(attributes.items())),
    )


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # a placeholder, never returned


# --- the native path ------------------------------------------------------------
#
# The fast path above still costs a Python call per field. For plain records
# (an exact dict of str or None, no attributes, at most a quarter of the size
# limit in characters) `_native.Prevalidator` decides, in one call per batch,
# what needs no Unicode tables: clean ASCII ids; names, companies and titles
# of ASCII and Latin letters (without the characters markup needs); emails the
# email fast path's grammar accepts (their local part also with Latin
# letters); phones the phone fast path finds valid; timestamps in the common
# UTC shape and the `deleted` words. It leaves each other text field to
# `_finish` and any other record to `_validate`. The fast-path tests compare
# validate_record, which runs this, with the model.

_PREVALIDATOR: Final = _native.Prevalidator(
    (
        min(MAX_EMAIL, EMAIL_MAX_LENGTH),
        MAX_PHONE,
        MAX_NAME,
        MAX_NAME,
        MAX_ORGANISATION,
        MAX_ORGANISATION,
    ),
    MAX_EXTERNAL_ID,
    MAX_RECORD_BYTES // _UTF8_MAX_BYTES,
    list(email_validator.SPECIAL_USE_DOMAIN_NAMES),
    list(CASE_INSENSITIVE_MAILBOX_NAMES),
    list(_FALSE_WORDS),
    list(_TRUE_WORDS),
    UTC,
    PHONES,
    Contact,
)
_PENDING: Final = tuple(check for _, check in _TEXT_CHECKS)


def _finish(checked: tuple[list[object], int], region: str) -> Contact | list[Reason] | None:
    """The answer for a record the native path checked, once the text fields it
    left pending are checked too: the Contact, or the reasons of the pending
    fields that fail (the native path found every other field valid, so these
    are all the record's reasons); None when one of them holds what the fast
    path leaves to the model."""
    values, pending = checked
    found: list[Reason] = []
    while pending:  # the set bits only
        index = pending.bit_length() - 1
        pending ^= 1 << index
        value = values[1 + index]
        assert isinstance(value, str)
        if not value.isascii() and BAD_DECODE.search(value) is not None:
            return None
        try:
            values[1 + index] = _PENDING[index](value, region)
        except (PydanticCustomError, ValidationError) as error:
            found += _reasons_of(error)
    if found:
        return _in_order(found)
    return Contact._make(values)
