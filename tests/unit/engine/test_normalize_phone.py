"""normalize_phone agrees with phonenumbers, and its fast path answers."""

from __future__ import annotations

from functools import cache

import phonenumbers
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType

from contactsync.engine.normalize import PhoneInvalid, fast_normalize_phone, normalize_phone

from .oracle import REJECTED, library_cases, library_phone, outcome

# A handful of big regions, NANPA and shared-code members, transform rules
# (AR, BR, MX), and regions whose national prefix is part of the number (IT).
DEFAULT_REGIONS = ["US", "CA", "GB", "DE", "FR", "IN", "BR", "AR", "MX", "JP", "CN", "AU", "IT"]
NUMBER_TYPES = [
    value
    for name, value in vars(PhoneNumberType).items()
    if name.isupper() and isinstance(value, int) and name != "UNKNOWN"
]


def mismatches(values: list[str], region: str) -> list[tuple[str, str, str | None]]:
    """Inputs where normalize_phone or the fast path disagree with the library."""
    found = []
    for value in values:
        expected = library_phone(value, region)
        ours = outcome(normalize_phone, value, region)
        fast = outcome(fast_normalize_phone, value, region)
        if ours != expected or fast not in (None, expected):
            found.append((value, expected, fast))
    return found


@cache
def example_numbers() -> list[tuple[str, PhoneNumber]]:
    """Every example number phonenumbers ships: each region, each type, and
    the non-geographic codes, with the region they belong to ("001")."""
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for number_type in NUMBER_TYPES:
            number = phonenumbers.example_number_for_type(region, number_type)
            if number is not None:
                numbers.append((region, number))
        invalid = phonenumbers.invalid_example_number(region)
        if invalid is not None:
            numbers.append((region, invalid))
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(cc)
        if number is not None:
            numbers.append(("001", number))
    return numbers


def international_forms(number: PhoneNumber) -> list[str]:
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    spaced = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    return [
        e164,
        spaced,
        spaced.replace(" ", "-"),
        phonenumbers.format_number(number, PhoneNumberFormat.RFC3966),
    ]


def national_forms(number: PhoneNumber) -> list[str]:
    national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    nsn = phonenumbers.national_significant_number(number)
    cc = number.country_code
    return [
        national,
        national.replace(" ", "."),
        nsn,
        f"{cc} {nsn}",  # the country code without "+"
        f"00 {cc} {nsn}",  # international dialling prefixes
        f"011 {cc} {nsn}",
    ]


def test_there_are_many_example_numbers() -> None:
    assert len(example_numbers()) > 1500


@pytest.mark.parametrize("region", ["US", "GB"])
def test_agrees_on_every_example_number_in_international_form(region: str) -> None:
    values = [form for _, number in example_numbers() for form in international_forms(number)]
    assert mismatches(values, region) == []


@pytest.mark.parametrize("region", DEFAULT_REGIONS)
def test_agrees_on_every_example_number_in_national_forms(region: str) -> None:
    values = [form for _, number in example_numbers() for form in national_forms(number)]
    assert mismatches(values, region) == []


def test_agrees_on_example_numbers_in_their_own_region() -> None:
    values = [
        (form, home)
        for home, number in example_numbers()
        if home != "001"
        for form in national_forms(number)
    ]
    found = [m for value, home in values for m in mismatches([value], home)]
    assert found == []


def test_the_fast_path_answers_example_numbers() -> None:
    """Valid numbers in E.164 and in national form in their own region: the
    fast path must answer (and, by the tests above, agree) nearly always."""
    forms = []
    for home, number in example_numbers():
        if phonenumbers.is_valid_number(number):
            forms.append((phonenumbers.format_number(number, PhoneNumberFormat.E164), "US"))
            if home != "001":
                national = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
                forms.append((national, home))
    answered = [value for value, region in forms if fast_normalize_phone(value, region)]
    assert len(answered) / len(forms) > 0.97


@pytest.mark.parametrize("region", library_cases()["phone_regions"])
def test_agrees_on_the_library_test_suite(region: str) -> None:
    assert mismatches(library_cases()["phones"], region) == []


COMMON = [
    ("+1 650-253-0000", "US", "+16502530000"),
    ("(650) 253-0000", "US", "+16502530000"),
    ("650.253.0000", "US", "+16502530000"),
    ("1 650 253 0000", "US", "+16502530000"),  # country code without "+"
    ("+44 20 7946 0958", "US", "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("+44 (0)20 7946 0958", "DE", "+442079460958"),  # national prefix in parentheses
    ("030 123456", "DE", "+4930123456"),
    ("01 42 68 53 00", "FR", "+33142685300"),
    ("098765 43210", "IN", "+919876543210"),
    ("(11) 91234-5678", "BR", "+5511912345678"),
    ("011 15-2345-6789", "AR", "+5491123456789"),  # transform rule: 15 -> 9
    ("06 1234 5678", "IT", "+390612345678"),  # Italian leading zero kept
    ("+800 1234 5678", "US", "+80012345678"),  # non-geographic
    ("+1 242 357 0000", "US", "+12423570000"),  # NANPA member (BS)
    # 18 and 19 digits with the country code and no "+": past every possible
    # length, so parse() drops the code (international freephone, 0037...).
    ("810037241157815659", "JP", "+810037241157815659"),
    ("81 00373877840801609", "JP", "+8100373877840801609"),
]


@pytest.mark.parametrize(("value", "region", "expected"), COMMON)
def test_the_fast_path_answers_common_formats(value: str, region: str, expected: str) -> None:
    assert library_phone(value, region) == expected
    assert fast_normalize_phone(value, region) == expected
    assert normalize_phone(value, region) == expected


DEFERRED = [
    ("1-800-FLOWERS", "US"),  # letters
    ("+1 650 253 0000 ext. 123", "US"),  # extension
    ("00 44 20 7946 0958", "DE"),  # international dialling prefix
    ("011 44 20 7946 0958", "US"),
    ("++44 20 7946 0958", "GB"),
    ("+0 650 253 0000", "US"),  # no such country code: the library retries
    ("tel:+1-650-253-0000", "US"),
    ("+44 20 7946 0958", "XX"),  # unknown default region
    ("\uff0b44 20 7946 0958", "GB"),  # full-width plus
    ("١٢٣٤٥٦٧٨٩", "EG"),  # Arabic-Indic digits
    ("12", "US"),
]


@pytest.mark.parametrize(("value", "region"), DEFERRED)
def test_the_fast_path_defers_what_it_does_not_model(value: str, region: str) -> None:
    assert fast_normalize_phone(value, region) is None
    assert mismatches([value], region) == []


def test_invalid_numbers_are_rejected_on_the_fast_path() -> None:
    # Parses fine, but no US number type has a 555-01xx line in area 123.
    with pytest.raises(PhoneInvalid):
        fast_normalize_phone("+1 123 555 0100", "US")
    assert library_phone("+1 123 555 0100", "US") == REJECTED


def test_rejection_is_phone_invalid_without_the_value() -> None:
    for value in ("+1 123 555 0100", "1-800-NOPE", "5551234567890123"):
        with pytest.raises(PhoneInvalid) as info:
            normalize_phone(value, "US")
        assert "555" not in str(info.value)
        assert "NOPE" not in str(info.value)
        assert info.value.reason == "phone.invalid"


# --- properties ---------------------------------------------------------------

VALID_EXAMPLES = [
    (home, number) for home, number in example_numbers() if phonenumbers.is_valid_number(number)
]
SEPARATORS = ["", " ", "-", ".", " - ", "(", ")", "  "]


@st.composite
def near_valid_phones(draw: st.DrawFn) -> tuple[str, str]:
    """A real example number, written the ways people write numbers, then
    perhaps damaged the ways data gets damaged."""
    home, number = draw(st.sampled_from(VALID_EXAMPLES))
    style = draw(
        st.sampled_from(
            [PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.NATIONAL]
        )
    )
    text = phonenumbers.format_number(number, style)
    text = text.replace(" ", draw(st.sampled_from(SEPARATORS)))
    prefix = draw(st.sampled_from(["", "", "+", "0", "00", "1", "(", " ", "+0", "+1"]))
    text = prefix + text
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        digit = draw(st.sampled_from("0123456789"))
        if edit == "insert":
            text = text[:at] + digit + text[at:]
        elif edit == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + digit + text[at + 1 :]
    region = draw(st.sampled_from([*DEFAULT_REGIONS, home if home != "001" else "US"]))
    return text, region


@settings(max_examples=300)
@given(near_valid_phones())
@example(("+1 (650) 253-0000", "US"))
@example(("44 20 7946 0958", "GB"))
@example(("0 20 7946 0958", "GB"))
def test_fast_path_agrees_on_near_valid_numbers(case: tuple[str, str]) -> None:
    value, region = case
    assert mismatches([value], region) == []


phone_like = st.text("0123456789 +-().", max_size=24)


@settings(max_examples=300)
@given(phone_like, st.sampled_from(DEFAULT_REGIONS))
def test_agrees_on_random_digits_and_separators(value: str, region: str) -> None:
    assert mismatches([value], region) == []


@settings(max_examples=200)
@given(st.text(max_size=40), st.sampled_from(DEFAULT_REGIONS))
def test_agrees_on_arbitrary_text(value: str, region: str) -> None:
    assert mismatches([value], region) == []
