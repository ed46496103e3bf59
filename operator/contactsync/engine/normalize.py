"""Pure normalisation functions for contact fields, each with a fast path.

Email addresses and phone numbers are normalised exactly as the reference
libraries do it (``email-validator`` and ``phonenumbers``): the result of
:func:`normalize_email` is ``validate_email(value, check_deliverability=False)
.normalized`` and the result of :func:`normalize_phone` is the E.164 form of
``phonenumbers.parse(value, default_region)`` for numbers that
``phonenumbers.is_valid_number`` accepts. Both reject exactly what the
libraries reject, by raising :class:`EmailInvalid` / :class:`PhoneInvalid`
(subclasses of ValueError with a stable ``reason``). The libraries are slow
(tens of microseconds a call), so each function first tries a fast path
that answers -- a result, or a rejection -- only where it provably agrees
with the library and defers to the library everywhere else. The fast paths
are exposed (:func:`fast_normalize_email`, :func:`fast_normalize_phone`:
a result, a raise, or None to defer) so tests can check the agreement and
that the fast path really answers; so are the library-only paths
(:func:`email_by_library`, :func:`phone_by_library`) for comparison.

The fast paths assume the libraries' module-level defaults
(``email_validator.SPECIAL_USE_DOMAIN_NAMES``, ``TEST_ENVIRONMENT``,
``GLOBALLY_DELIVERABLE`` and so on) are left as shipped; nothing in this
project changes them.

Text policy (:func:`clean_text`):

* a value holding a lone surrogate or U+FFFD (what a bad decode leaves
  behind) is rejected with :class:`EncodingInvalid`, not silently repaired;
* control characters (C0, DEL, C1), zero-width characters (U+200B..U+200D,
  U+2060, U+FEFF), bidirectional controls (U+061C, U+200E, U+200F,
  U+202A..U+202E, U+2066..U+2069) and other invisible format characters
  (U+00AD soft hyphen, U+180E, U+2061..U+2064) are removed;
* every run of whitespace (including tab, newline, NBSP and the other
  Unicode spaces) becomes one space, and the ends are stripped;
* the result is Unicode NFC;
* length limits apply to the cleaned text.

Markup policy (:func:`contains_markup`), applied by the record model to
names, company and job title: a value is rejected when it holds something a
browser or a templating step could act on -- a tag opener (``<`` followed by
a letter, ``/``, ``!`` or ``?``, also in the full-width and small forms that
NFKC folds to ``<``), a ``javascript:``/``vbscript:`` scheme, a ``data:``
URI or a numeric or ``&lt;``/``&gt;`` character reference. Apostrophes,
hyphens, dots, commas, ampersands, parentheses and letters of every script
are kept: ``O'Brien``, ``Zoë``, ``李``, ``AT&T`` and ``Jean-Luc`` pass.

No exception raised here carries the offending value: messages are fixed
text, so they can be logged without leaking personal data.
"""

from __future__ import annotations

import re
import unicodedata
from typing import ClassVar, Final

import email_validator
import phonenumbers
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, EMAIL_MAX_LENGTH
from phonenumbers import PhoneMetadata, PhoneNumberDesc, PhoneNumberFormat

from contactsync import _native

from .reasons import Reason

__all__ = [
    "PHONES",
    "EmailInvalid",
    "EncodingInvalid",
    "NormalizeError",
    "PhoneInvalid",
    "TextTooLong",
    "clean_text",
    "contains_markup",
    "email_by_library",
    "fast_normalize_email",
    "fast_normalize_phone",
    "normalize_email",
    "normalize_phone",
    "phone_by_library",
]


class NormalizeError(ValueError):
    """A value cannot be normalised. ``reason`` is the stable reason code.

    The message is fixed text and never contains the value.
    """

    reason: ClassVar[Reason]
    message: ClassVar[str]

    def __init__(self) -> None:
        super().__init__(self.message)


class EmailInvalid(NormalizeError):
    reason = Reason.EMAIL_INVALID
    message = "invalid email address"


class PhoneInvalid(NormalizeError):
    reason = Reason.PHONE_INVALID
    message = "invalid phone number"


class TextTooLong(NormalizeError):
    reason = Reason.FIELD_TOO_LONG
    message = "text longer than its limit after cleaning"


class EncodingInvalid(NormalizeError):
    reason = Reason.ENCODING_INVALID
    message = "text holds surrogates or U+FFFD from a bad decode"


# --- text -------------------------------------------------------------------

_BAD_DECODE_CHARS = "\ud800-\udfff\ufffd"
# Controls that are not whitespace, plus invisible format characters. The
# whitespace controls (TAB, LF, VT, FF, CR, FS..US, NEL) are left for the
# whitespace rule, so "Jane\nDoe" becomes "Jane Doe" rather than "JaneDoe".
_INVISIBLE_CHARS = (
    "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
    "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
)
# What Python counts as whitespace (str.isspace, re's \s) besides the plain
# space, spelled out so one character class can test for everything.
_OTHER_SPACE_CHARS = (
    "\t\n\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
)
_BAD_DECODE = re.compile(f"[{_BAD_DECODE_CHARS}]")
# Lone surrogates and U+FFFD; the record model's fast path looks for them too.
BAD_DECODE: Final = _BAD_DECODE
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]+")
_WHITESPACE = re.compile(r"\s+")
# Anything clean_text would change in a text with single inner spaces.
_DIRTY = re.compile(f"[{_BAD_DECODE_CHARS}{_INVISIBLE_CHARS}{_OTHER_SPACE_CHARS}]")


def clean_text(value: str, max_len: int) -> str:
    """Clean one text value (see the module docstring for the policy).

    Raises :class:`EncodingInvalid` for surrogates or U+FFFD and
    :class:`TextTooLong` when the cleaned text is longer than ``max_len``
    characters. Idempotent: cleaning a cleaned value returns it unchanged.
    """
    # Most values are already clean: printable ASCII (or NFC text free of
    # anything to remove) with single inner spaces. They skip the rewrite.
    if value.isascii():
        clean = value.isprintable()  # and ASCII is always NFC
    else:
        clean = _DIRTY.search(value) is None and unicodedata.is_normalized("NFC", value)
    if not (clean and "  " not in value and value[:1] != " " and value[-1:] != " "):
        if _BAD_DECODE.search(value):
            raise EncodingInvalid
        # Remove invisibles before NFC: a zero-width character between a
        # letter and a combining mark hides a composition NFC must see.
        value = unicodedata.normalize("NFC", _INVISIBLE.sub("", value))
        # After NFC, because NFC can turn one space character into another.
        # A plain space never composes with its neighbours, so the result
        # stays NFC.
        value = _WHITESPACE.sub(" ", value).strip(" ")
    if len(value) > max_len:
        raise TextTooLong
    return value


_MARKUP = re.compile(
    r"[<\uff1c\ufe64]\s*[a-z/!?]"  # a tag opener: <b>, </x>, <!--, <?php, < img
    r"|(?:java|vb)\s*script\s*:"  # a script scheme
    r"|\bdata\s*:\s*[a-z]+/"  # a data: URI (data:text/html,...)
    r"|&(?:#x?[0-9a-f]+|lt|gt);?",  # a character reference that may decode to markup
    re.IGNORECASE,
)
# Every markup form above holds one of these; most names hold none of them.
_MARKUP_HINT = re.compile("[<:&\uff1c\ufe64]")


def contains_markup(value: str) -> bool:
    """Whether ``value`` holds markup or a script payload (see module docstring)."""
    return _MARKUP_HINT.search(value) is not None and _MARKUP.search(value) is not None


# --- email ------------------------------------------------------------------

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Top-level domains end with a letter (email-validator's DOMAIN_NAME_REGEX).
_TLD = r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]"
# The common shape: an ASCII dot-atom local part and an ASCII host name with
# at least one dot, labels of at most 63 characters.
_EMAIL_FAST = re.compile(rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@((?:{_LABEL}\.)+{_TLD})")
# Special-use names and their subdomains are never deliverable: "." + domain
# ends with one of these exactly when the library rejects it as special-use.
_SPECIAL_USE_SUFFIXES: Final = tuple(
    "." + name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES
)
_CASE_INSENSITIVE_MAILBOXES: Final = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
# ASCII that opens syntax the pattern does not model (quoted local part,
# display name, domain literal). Any other ASCII text the pattern refuses
# breaks a rule the library enforces: bad characters, dots or hyphens out
# of place, a label over 63 characters, no dot, a TLD not ending in a
# letter, too long.
_EMAIL_UNMODELLED = re.compile(r'["<\[]')


def fast_normalize_email(value: str) -> str | None:
    """The email fast path alone: the normalised address, or None to defer.

    Raises :class:`EmailInvalid` where it is sure the library rejects. It
    decides every ASCII address except those with a quote, an angle bracket
    or a square bracket (quoted local parts, display names and domain
    literals, which the library rejects by default but in its own order)
    and those whose domain holds ``--`` (IDNA, or an R-LDH label). For the
    rest email-validator's behaviour is fully known: a plain
    ``dot-atom@host.name`` is valid unless its domain is special-use, the
    domain is lower-cased (UTS-46 on ASCII) and the local part kept, except
    the RFC 2142 role mailboxes (``POSTMASTER`` and friends), which are
    lower-cased; any other ASCII shape is invalid. Unicode goes to the
    library.
    """
    match = _EMAIL_FAST.fullmatch(value) if len(value) <= EMAIL_MAX_LENGTH else None
    if match is None:
        if value.isascii() and not _EMAIL_UNMODELLED.search(value):
            raise EmailInvalid
        return None
    local, domain = match.groups()
    # "--" in the third and fourth place of a label is IDNA or an invalid
    # R-LDH label; the library must decide those.
    if "--" in domain:
        return None
    domain = domain.lower()
    if ("." + domain).endswith(_SPECIAL_USE_SUFFIXES):
        raise EmailInvalid
    if local.lower() in _CASE_INSENSITIVE_MAILBOXES:
        local = local.lower()
    return f"{local}@{domain}"


def email_by_library(value: str) -> str:
    """The reference: email-validator's normalised form, or :class:`EmailInvalid`."""
    try:
        return email_validator.validate_email(value, check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        raise EmailInvalid from None


def normalize_email(value: str) -> str:
    """Normalise an email address exactly as email-validator does.

    Returns ``validate_email(value, check_deliverability=False).normalized``;
    raises :class:`EmailInvalid` where the library raises. No DNS lookup.
    """
    fast = fast_normalize_email(value)  # raises EmailInvalid when sure
    if fast is not None:
        return fast
    return email_by_library(value)


# --- phone ------------------------------------------------------------------

# The fast path (native code, `contactsync._native.Phones`) handles the
# common shapes: optional leading spaces or "(", an optional "+", then ASCII
# digits with spaces, dashes, dots and parentheses. For these, phonenumbers'
# extraction, extension and RFC 3966 handling are no-ops and its
# normalisation keeps exactly the digits; the rest of parse() and
# is_valid_number() is replicated from the region metadata, which this
# module reads and hands over as pattern strings, one country calling code
# at a time. Letters (vanity numbers, extensions), other separators,
# several "+" and non-ASCII digits go to the library.
_MIN_NSN: Final = 2  # phonenumbers' _MIN_LENGTH_FOR_NSN
_MAX_NSN: Final = 17  # phonenumbers' _MAX_LENGTH_FOR_NSN
_NON_GEO: Final = "001"

# phonenumbers' ValidationResult, only the outcomes parse() tells apart.
_POSSIBLE: Final = 0
_TOO_SHORT: Final = 1
_TOO_LONG: Final = 2
_LOCAL_ONLY: Final = 3
_INVALID_LENGTH: Final = 4

# One region's metadata as the native fast path takes it: region, country
# code, then the patterns (None: absent) -- international prefix, national
# prefix for parsing, its transform rule, the general description --, the
# general description's length verdict by length (0..17), the leading-digits
# pattern, and by length (0..17) the number types' patterns, joined.
_PlanSource = tuple[
    str,
    int,
    str | None,
    str | None,
    str | None,
    str | None,
    list[int],
    str | None,
    list[str | None],
]


def _valid_by_length(meta: PhoneMetadata, general: PhoneNumberDesc) -> list[str | None]:
    """is_valid_number's test, one pattern per length: the number types in
    the library's order, joined, to be fully matched after the general
    pattern. The library fully matches each pattern on its own; joining them
    is equivalent without backreferences, which the native side's regex
    engine does not have (a pattern it cannot compile goes to the library)."""
    descs = [
        meta.premium_rate,
        meta.toll_free,
        meta.shared_cost,
        meta.voip,
        meta.personal_number,
        meta.pager,
        meta.uan,
        meta.voicemail,
        meta.fixed_line,
    ]
    # With identical fixed-line and mobile patterns the library never tries
    # the mobile description on its own.
    if not meta.same_mobile_and_fixed_line_pattern:
        descs.append(meta.mobile)
    by_length: list[str | None] = [None] * (_MAX_NSN + 1)
    if not general.national_number_pattern:
        return by_length
    for length in range(_MIN_NSN, _MAX_NSN + 1):
        if length not in general.possible_length:
            continue
        types = [
            f"(?:{desc.national_number_pattern})"
            for desc in descs
            if desc is not None
            and desc.national_number_pattern
            and (not desc.possible_length or length in desc.possible_length)
        ]
        if types:
            by_length[length] = "|".join(types)
    return by_length


def _length_verdict(lengths: tuple[int, ...], local_lengths: tuple[int, ...], length: int) -> int:
    """phonenumbers' _test_number_length for the general description."""
    if length in local_lengths:
        return _LOCAL_ONLY
    if lengths[0] == length:
        return _POSSIBLE
    if lengths[0] > length:
        return _TOO_SHORT
    if lengths[-1] < length:
        return _TOO_LONG
    return _POSSIBLE if length in lengths[1:] else _INVALID_LENGTH


def _plan_source(region: str, meta: PhoneMetadata) -> _PlanSource | None:
    """The region's plan, or None for metadata the fast path does not model
    (none ships today): no general description or country code, no
    possible lengths or ones past the longest national number. The library
    decides those, and those the native side refuses: patterns its regex
    engine cannot compile, a transform rule with groups its prefix pattern
    lacks or without any (parse() would index an empty tuple)."""
    general = meta.general_desc
    cc = meta.country_code
    if (
        general is None
        or cc is None
        or not general.possible_length
        or max(general.possible_length + general.possible_length_local_only) > _MAX_NSN
    ):
        return None
    # The library treats a missing or empty number pattern as matching
    # nothing, but compiles any present prefix pattern, even an empty one.
    return (
        region,
        cc,
        meta.international_prefix,
        meta.national_prefix_for_parsing or None,
        meta.national_prefix_transform_rule or None,
        general.national_number_pattern or None,
        [
            _length_verdict(general.possible_length, general.possible_length_local_only, length)
            for length in range(_MAX_NSN + 1)
        ],
        meta.leading_digits,
        _valid_by_length(meta, general),
    )


def _country_plans(cc: int) -> list[_PlanSource] | None:
    """The plans of the regions sharing a country code, main region first;
    None when one of them is beyond the fast path. The native fast path
    calls this once per code it meets."""
    plans = []
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ()):
        if region == _NON_GEO:
            meta = PhoneMetadata.metadata_for_nongeo_region(cc)
        elif region in phonenumbers.SUPPORTED_REGIONS:
            meta = PhoneMetadata.metadata_for_region(region)
        else:
            return None
        plan = None if meta is None else _plan_source(region, meta)
        if plan is None:
            return None
        plans.append(plan)
    return plans or None


# One per process: it compiles each country's patterns on first use, and the
# record model's native pass (records._PREVALIDATOR) shares it.
PHONES: Final = _native.Phones(
    {
        region: cc
        for cc, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items()
        for region in regions
        if region in phonenumbers.SUPPORTED_REGIONS
    },
    set(phonenumbers.COUNTRY_CODE_TO_REGION_CODE),
    _country_plans,
)


def fast_normalize_phone(value: str, default_region: str) -> str | None:
    """The phone fast path alone: E.164 for a valid number, None to defer.

    Raises :class:`PhoneInvalid` where it is sure the library would parse
    the number and find it invalid. It handles ``+<cc> ...`` and national
    numbers of ``default_region`` written with digits, spaces, dashes, dots
    and parentheses, replicating phonenumbers' parse() and
    is_valid_number() from the same metadata in native code. International
    dialling prefixes (00, 011, ...), letters, extensions, unknown country
    codes and anything parse() would reject go to the library.
    """
    result = PHONES.normalize(value, default_region)
    if result is False:
        raise PhoneInvalid
    return result


def phone_by_library(value: str, default_region: str) -> str:
    """The reference: phonenumbers' E.164 for a valid number, or :class:`PhoneInvalid`."""
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise PhoneInvalid from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneInvalid
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def normalize_phone(value: str, default_region: str) -> str:
    """Normalise a phone number to E.164 exactly as phonenumbers does.

    Returns ``format_number(parse(value, default_region), E164)`` when
    ``is_valid_number`` accepts the parsed number; raises
    :class:`PhoneInvalid` otherwise (unparsable or invalid).
    """
    fast = fast_normalize_phone(value, default_region)
    if fast is not None:
        return fast
    return phone_by_library(value, default_region)
