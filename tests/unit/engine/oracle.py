"""The reference libraries called directly, as the oracle for the fast paths,
and the inputs taken from the libraries' own test suites."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypedDict

import email_validator
import phonenumbers

from contactsync.engine.normalize import NormalizeError

REJECTED = "<rejected>"


class LibraryCases(TypedDict):
    emails: list[str]
    phones: list[str]
    phone_regions: list[str]


@cache
def library_cases() -> LibraryCases:
    """Inputs of email-validator's and phonenumbers' test suites (see data/)."""
    path = Path(__file__).with_name("data") / "library_cases.json"
    data = json.loads(path.read_text("utf-8"))
    return {
        "emails": data["emails"],
        "phones": data["phones"],
        "phone_regions": data["phone_regions"],
    }


def library_email(value: str) -> str:
    try:
        return email_validator.validate_email(value, check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        return REJECTED


def library_phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return REJECTED
    if not phonenumbers.is_valid_number(number):
        return REJECTED
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def outcome(function: Callable[..., str | None], *args: str) -> str | None:
    """What one of our functions answered: the value, REJECTED, or None (deferred)."""
    try:
        return function(*args)
    except NormalizeError:
        return REJECTED
