"""clean_text and the markup policy."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from contactsync.engine.normalize import (
    EncodingInvalid,
    TextTooLong,
    clean_text,
    contains_markup,
)

UNBOUNDED = 10**9
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
INVISIBLE = ZERO_WIDTH + BIDI + "\u00ad\u180e\u2061\u2062\u2063\u2064"

# Text as it arrives from exports: letters of several scripts, combining
# marks, every kind of space and control, invisibles, but no bad-decode marks.
decoded_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\ufffd")
    | st.sampled_from(list(INVISIBLE + "\t\n\r\x0b\x0c\x1c\x85\xa0\u2028\u3000 \u0301\u0308")),
    max_size=60,
)


@settings(max_examples=300)
@given(decoded_text)
@example("e\u200b\u0301")  # a zero-width space hiding a composition
@example("\u3000\u0301x")
@example("a \u2000 b")  # EN QUAD: NFC turns it into EN SPACE
@example("Jane  Doe")
def test_cleaned_text_is_clean(value: str) -> None:
    cleaned = clean_text(value, UNBOUNDED)
    assert clean_text(cleaned, UNBOUNDED) == cleaned
    assert unicodedata.is_normalized("NFC", cleaned)
    assert not any(unicodedata.category(c) == "Cc" for c in cleaned)
    assert not any(c in INVISIBLE for c in cleaned)
    assert all(c == " " for c in cleaned if c.isspace())
    assert "  " not in cleaned
    assert cleaned == cleaned.strip()


@settings(max_examples=200)
@given(decoded_text, st.integers(0, 70))
def test_the_limit_applies_to_the_cleaned_text(value: str, limit: int) -> None:
    cleaned = clean_text(value, UNBOUNDED)
    if len(cleaned) <= limit:
        assert clean_text(value, limit) == cleaned
    else:
        with pytest.raises(TextTooLong):
            clean_text(value, limit)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane", "Jane"),
        ("Jane  Doe", "Jane Doe"),
        ("Zoë  Doe", "Zoë Doe"),
        (" Jane", "Jane"),
        ("Zoë ", "Zoë"),
        ("  Jane \t Doe\n", "Jane Doe"),
        ("Jane\r\nDoe", "Jane Doe"),
        ("Jane\u00a0Doe", "Jane Doe"),
        ("Zo\u0065\u0308", "Zo\u00eb"),  # decomposed to NFC
        ("Zo\u200be\u0308", "Zo\u00eb"),  # the zero-width space goes first
        ("\u202eevil\u202c", "evil"),
        ("a\x00b\x07c\x7fd\x9be", "abcde"),
        ("O'Brien", "O'Brien"),
        ("李小龍", "李小龍"),
        ("\ufeffBOM", "BOM"),
        ("soft\u00adhyphen", "softhyphen"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_cleaning(raw: str, expected: str) -> None:
    assert clean_text(raw, 100) == expected


def test_limit_boundary_after_cleaning() -> None:
    assert clean_text("a" * 100, 100) == "a" * 100
    with pytest.raises(TextTooLong):
        clean_text("a" * 101, 100)
    # 150 characters in, 100 after cleaning: fits.
    assert clean_text("a" * 100 + "\u200b" * 50, 100) == "a" * 100
    assert clean_text("  " + "a" * 100 + "  ", 100) == "a" * 100


@pytest.mark.parametrize("bad", [chr(0xD800), "x" + chr(0xDCFF) + "y", "caf\ufffd", "\ufffd"])
def test_bad_decodes_are_rejected(bad: str) -> None:
    with pytest.raises(EncodingInvalid) as info:
        clean_text(bad, 100)
    assert info.value.reason == "encoding.invalid"
    assert bad not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        "<script>alert(1)</script>",
        "Jane<img src=x onerror=alert(1)>",
        "</b>",
        "< svg onload=alert(1)",
        "<!-- x -->",
        "<?php echo 1; ?>",
        "\uff1cscript\uff1e",  # full-width, folds to < under NFKC
        "javascript:alert(1)",
        "JavaScript :alert(1)",
        "vbscript:msgbox",
        "data:text/html;base64,PHNjcmlwdD4=",
        "&#60;script&#62;",
        "&#x3c;b",
        "&lt;b&gt;",
    ],
)
def test_markup_is_found(value: str) -> None:
    assert contains_markup(value)


@pytest.mark.parametrize(
    "value",
    [
        "O'Brien",
        "Zoë",
        "李",
        "Jean-Luc",
        "Smith, Jr.",
        "AT&T",
        "Procter & Gamble",
        "R&D: Platform",
        "Head of data: analytics",
        "3 < 4",
        "Ng (PhD)",
        "Anne-Marie d'Arc",
        "José María",
        "محمد",
        "",
    ],
)
def test_legitimate_names_pass(value: str) -> None:
    assert not contains_markup(value)


def test_every_kind_of_whitespace_becomes_a_space() -> None:
    # Also guards the fast check's spelled-out list against a Unicode update.
    spaces = [c for c in map(chr, range(0x110000)) if c.isspace() and c != " "]
    assert len(spaces) >= 25
    for space in spaces:
        assert clean_text(f"a{space}b", 10) == "a b"
        assert clean_text(f"é{space}", 10) == "é"
