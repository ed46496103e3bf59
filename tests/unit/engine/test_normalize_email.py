"""normalize_email agrees with email-validator, and its fast path answers."""

from __future__ import annotations

import email_validator
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from contactsync.engine.normalize import (
    EmailInvalid,
    fast_normalize_email,
    normalize_email,
)

from .oracle import REJECTED, library_cases, library_email, outcome

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
LDH = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"


def assert_agrees(value: str) -> None:
    expected = library_email(value)
    assert outcome(normalize_email, value) == expected
    assert outcome(fast_normalize_email, value) in (None, expected)


@pytest.mark.parametrize("value", library_cases()["emails"])
def test_agrees_on_the_library_test_suite(value: str) -> None:
    assert_agrees(value)


def test_the_library_test_suite_is_all_there() -> None:
    # The fixture must not silently shrink: it holds valid and invalid inputs.
    outcomes = [library_email(value) for value in library_cases()["emails"]]
    assert len(outcomes) >= 300
    assert sum(o != REJECTED for o in outcomes) >= 30
    assert sum(o == REJECTED for o in outcomes) >= 200


COMMON = [
    ("Jane.Doe@Example.COM", "Jane.Doe@example.com"),
    ("a@b.co", "a@b.co"),
    ("first.last+tag@sub.domain.example.org", "first.last+tag@sub.domain.example.org"),
    ("x_y-z@mail-server.co.uk", "x_y-z@mail-server.co.uk"),
    ("POSTMASTER@Example.com", "postmaster@example.com"),  # RFC 2142 role mailbox
    ("Info@EXAMPLE.com", "info@example.com"),
    ("user@123.example.com", "user@123.example.com"),
    ("o'brien@example.ie", "o'brien@example.ie"),
]


@pytest.mark.parametrize(("value", "expected"), COMMON)
def test_the_fast_path_answers_the_common_shapes(value: str, expected: str) -> None:
    assert library_email(value) == expected
    assert fast_normalize_email(value) == expected
    assert normalize_email(value) == expected


DEFERRED = [
    "jeff@臺網中心.tw",  # IDNA
    "me@xn--fiqq24b10vi0d.tw",  # Punycode: the library decodes it
    "me@yy--0.tld",  # an R-LDH label
    "ñoñó@example.tld",  # internationalised local part
    "me@example.com\u200b",  # a Unicode character where none belongs
    '"quoted"@example.org',  # rejected by default, decided by the library
    "me@[127.0.0.1]",  # domain literal
    "My Name <me@example.org>",  # display name
]


@pytest.mark.parametrize("value", DEFERRED)
def test_the_fast_path_defers_what_it_does_not_model(value: str) -> None:
    assert fast_normalize_email(value) is None
    assert_agrees(value)


REJECTED_FAST = [
    "me@example.local",  # special-use
    "me@sub.test",
    "me@localhost",  # no dot
    "me@example.com.",
    "me@example.co1",  # a TLD must end with a letter
    "me@-example.com",
    "me@exa_mple.com",
    "me..you@example.com",
    ".me@example.com",
    "me@example..com",
    "me@" + "a" * 64 + ".com",  # a label over 63 characters
    "me@@example.com",
    "me@example.com ",
    " me@example.com",
    "(comment)me@example.com",
    "not an email",
    "",
    "a" * 250 + "@example.com",  # over the length limit
]


@pytest.mark.parametrize("value", REJECTED_FAST)
def test_the_fast_path_rejects_plain_ascii_mistakes(value: str) -> None:
    assert library_email(value) == REJECTED
    with pytest.raises(EmailInvalid):
        fast_normalize_email(value)


@pytest.mark.parametrize("secret", ["jane.secret@localhost", "jäne.secret@localhost"])
def test_rejection_is_email_invalid_without_the_value(secret: str) -> None:
    with pytest.raises(EmailInvalid) as info:
        normalize_email(secret)
    assert "secret" not in str(info.value)
    assert info.value.reason == "email.invalid"
    # The library's own error names the address: it must not be chained.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_special_use_domains_come_from_the_library() -> None:
    for name in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        for domain in (f"example.{name}", f"a.b.{name}"):
            assert library_email(f"me@{domain}") == REJECTED
            assert outcome(fast_normalize_email, f"me@{domain}") == REJECTED
        # The name alone is not a suffix match for a longer label.
        assert fast_normalize_email(f"me@not{name}.com") == f"me@not{name}.com"


def test_length_limit_is_the_librarys() -> None:
    label = "a" * 63
    domain = ".".join([label, label, label, "b" * 56]) + ".com"
    at_limit = "x@" + domain
    assert len(at_limit) == 254
    assert fast_normalize_email(at_limit) == library_email(at_limit) == at_limit
    # A 65-character local part passes: the library checks 64 only when strict.
    long_local = "l" * 65 + "@example.com"
    assert fast_normalize_email(long_local) == library_email(long_local) == long_local
    over = "xy@" + domain
    assert outcome(fast_normalize_email, over) == library_email(over) == REJECTED
    long_label = "me@" + "a" * 64 + ".com"
    assert outcome(normalize_email, long_label) == library_email(long_label) == REJECTED


# --- properties ---------------------------------------------------------------

atoms = st.text(ATEXT, min_size=1, max_size=12)
labels = st.text(LDH, min_size=1, max_size=12) | st.sampled_from(
    ["a" * 63, "b" * 64, "xn--fiqq24b10vi0d", "ab--cd", "-a", "a-", "EXAMPLE", "123"]
)
tlds = st.sampled_from(
    [
        *["com", "ORG", "co.uk", "io", "museum", "a1", "1a", "x", "local", "test", "invalid"],
        *["arpa", "localhost", "onion", "example", "tld", "123", "c-m", "com-"],
    ]
)
noise = st.sampled_from(["", " ", ".", "..", "@", '"', "\u00e9", "\u200b", "\n", "<", ">"])


@st.composite
def near_valid_emails(draw: st.DrawFn) -> str:
    local = ".".join(draw(st.lists(atoms, min_size=1, max_size=4)))
    domain = ".".join([*draw(st.lists(labels, min_size=0, max_size=3)), draw(tlds)])
    address = f"{local}@{domain}"
    if draw(st.booleans()):
        # Break it somewhere: the realistic typos and attacks.
        at = draw(st.integers(0, len(address)))
        address = address[:at] + draw(noise) + address[at:]
    return address


@settings(max_examples=300)
@given(near_valid_emails())
@example("Test@Example.com")
@example("a@b.c-m")
@example("a..b@example.com")
@example("a@-b.com")
def test_fast_path_agrees_on_near_valid_addresses(value: str) -> None:
    assert_agrees(value)


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_agrees_on_arbitrary_text(value: str) -> None:
    assert_agrees(value)


@settings(max_examples=200)
@given(st.text(st.characters(codec="ascii"), max_size=40).map(lambda s: s + "@example.com"))
def test_agrees_on_arbitrary_ascii_local_parts(value: str) -> None:
    assert_agrees(value)
