"""Benchmark: the engine's normalisation, fast paths against the libraries.

    PYTHONPATH=operator python benchmarks/normalize.py [--n 200000] [--seed 1]

Generates N realistic inputs of each kind (mixed-case emails, phone numbers
of several regions in the formats people type, CSV-shaped contact rows),
about 5% of them invalid, and prints records per CPU second on one core
for the library-only path and the fast path, with the ratio. It also checks,
on every generated input, that both paths gave the same answer. The
figures are for comparing the two paths in one run; they are not asserted
anywhere.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import string
import sys
import time
from collections.abc import Callable, Sequence
from importlib.metadata import version
from unittest import mock

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from contactsync.engine import records
from contactsync.engine.normalize import (
    NormalizeError,
    email_by_library,
    fast_normalize_email,
    fast_normalize_phone,
    normalize_email,
    normalize_phone,
    phone_by_library,
)

DEFAULT_REGION = "US"
INVALID_SHARE = 0.05
FIRST = ["Jane", "John", "María", "Zoë", "Li", "Ahmed", "Olga", "Sean", "Aiko", "Luca", "Priya"]
LAST = ["Doe", "O'Brien", "García", "Müller", "Wang", "Smith-Jones", "Kowalski", "Nguyen", "Rossi"]
DOMAINS = [
    "gmail.com",
    "Example.COM",
    "outlook.com",
    "acme-corp.co.uk",
    "mail.Company.de",
    "yahoo.fr",
    "uni.edu.au",
    "startup.io",
    "GMX.net",
]
UNICODE_EMAILS = ["jürgen@müller.de", "用户@例子.公司", "josé@café.fr"]  # valid, library path
BAD_EMAILS = [
    "jane.doe@",
    "@example.com",
    "jane..doe@example.com",
    "jane doe@example.com",
    "jane@localhost",
    "jane@example.local",
    "jane@-example.com",
    "Jane Doe <jane@example.com>",
    "jane@example..com",
    "jane@exa_mple.com",
]
# Regions by share of the contacts; the default region's numbers are often national.
REGIONS = ["US", "US", "US", "CA", "GB", "DE", "FR", "IN", "BR", "MX", "JP", "AU", "ES", "IT", "NL"]
BAD_PHONES = ["12345", "call me", "+999 123 456", "555-0100", "000000000000000000", "+1 123"]
TITLES = ["Head of Sales", "CTO", "Account Manager", "Software Engineer", "", "VP, R&D"]


def email(rng: random.Random, invalid: float = INVALID_SHARE) -> str:
    if rng.random() < invalid:
        return rng.choice(BAD_EMAILS)
    if rng.random() < 0.01:
        return rng.choice(UNICODE_EMAILS)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    first = first.encode("ascii", "ignore").decode() or "x"
    last = last.encode("ascii", "ignore").decode().replace("'", "") or "y"
    local = rng.choice(
        [f"{first}.{last}", f"{first[0]}{last}", f"{first}{rng.randint(1, 9999)}", f"{last}+news"]
    )
    if rng.random() < 0.5:
        local = local.lower()
    return f"{local}@{rng.choice(DOMAINS)}"


def _number(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    """A fresh number of a real shape: an example number with new last digits."""
    kind = rng.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(
        region
    )
    assert example is not None
    nsn = phonenumbers.national_significant_number(example)
    tail = "".join(rng.choice(string.digits) for _ in range(4))
    return phonenumbers.parse("+" + str(example.country_code) + nsn[:-4] + tail)


def phone(rng: random.Random, invalid: float = INVALID_SHARE) -> str:
    if rng.random() < invalid:
        return rng.choice(BAD_PHONES)
    region = rng.choice(REGIONS)
    number = _number(rng, region)
    if region == DEFAULT_REGION and rng.random() < 0.7:
        text = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    else:
        text = phonenumbers.format_number(
            number, rng.choice([PhoneNumberFormat.E164, PhoneNumberFormat.INTERNATIONAL])
        )
    return text.replace(" ", rng.choice([" ", " ", "-", ".", ""]))


def row(rng: random.Random) -> dict[str, object]:
    """A CSV row; about INVALID_SHARE of rows have a bad email, phone or other field."""
    fields: dict[str, object] = {
        "externalId": f"crm-{rng.randrange(10**9):09d}",
        "email": email(rng, INVALID_SHARE * 0.4),
        "phone": phone(rng, INVALID_SHARE * 0.4),
        "firstName": rng.choice(FIRST),
        "lastName": rng.choice(LAST),
        "company": rng.choice(["Acme Corp", "Globex GmbH", "Initech", "", "Umbrella plc"]),
        "jobTitle": rng.choice(TITLES),
        "updatedAt": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z",
        "deleted": rng.choice(["", "", "", "false", "true"]),
        "attr.tier": rng.choice(["gold", "silver", ""]),
        "attr.source": rng.choice(["web", "import", "event"]),
    }
    if rng.random() < INVALID_SHARE * 0.2:
        fields[rng.choice(["firstName", "updatedAt", "externalId"])] = rng.choice(
            ["<script>x</script>", "", "not a date"]
        )
    return fields


def run(
    function: Callable[[object], object], inputs: Sequence[object], repeat: int
) -> tuple[float, list[object]]:
    """Records per CPU second (the best of `repeat` runs), and what each call
    returned (exceptions as reason codes). CPU time, not wall time, so that
    other processes on a shared machine do not count against the code. The
    cyclic GC is off while timing, as timeit does: the hundreds of thousands
    of inputs and results held here would otherwise make each collection
    scan them all, a cost of this harness and not of the code."""
    best = 0.0
    results: list[object] = []
    for _ in range(repeat):
        results = []
        append = results.append
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            for value in inputs:
                try:
                    append(function(value))
                except NormalizeError as exc:
                    append(exc.reason)
            best = max(best, len(inputs) / (time.process_time() - start))
        finally:
            gc.enable()
    return best, results


def answered(fast: Callable[[object], object], inputs: Sequence[object]) -> float:
    """Share of the inputs the fast path decided without the library."""
    count = 0
    for value in inputs:
        try:
            count += fast(value) is not None
        except NormalizeError:
            count += 1
    return count / len(inputs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="inputs of each kind")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="report the best of this many runs")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    emails = [email(rng) for _ in range(args.n)]
    phones = [phone(rng) for _ in range(args.n)]
    rows = [row(rng) for _ in range(args.n)]

    def record(fields: object) -> object:
        return records.validate_record(fields, default_region=DEFAULT_REGION)  # type: ignore[arg-type]

    def python_record(fields: object) -> object:
        # The Python path alone, without the native pass validate_record runs first.
        return records._validate(fields, DEFAULT_REGION, fast=True)  # type: ignore[arg-type]

    cases: list[tuple[str, Sequence[object], Callable[..., object], Callable[..., object]]] = [
        ("email", emails, email_by_library, normalize_email),
        (
            "phone",
            phones,
            lambda v: phone_by_library(v, DEFAULT_REGION),
            lambda v: normalize_phone(v, DEFAULT_REGION),
        ),
    ]
    print(
        f"normalize benchmark: {args.n:,} inputs each, seed {args.seed}, best of {args.repeat}, "
        "per CPU second on one core, "
        f"Python {platform.python_version()}, phonenumbers {version('phonenumbers')}, "
        f"email-validator {version('email-validator')}, pydantic {version('pydantic')}"
    )
    print(f"{'':16}{'library/s':>12}{'fast/s':>12}{'ratio':>8}{'fast answers':>14}{'agree':>8}")
    share = {
        "email": answered(fast_normalize_email, emails),
        "phone": answered(lambda v: fast_normalize_phone(v, DEFAULT_REGION), phones),
    }
    ok = True
    for name, inputs, library, fast in cases:
        slow_rate, slow = run(library, inputs, args.repeat)
        fast_rate, quick = run(fast, inputs, args.repeat)
        agree = slow == quick
        ok &= agree
        print(
            f"{name:16}{slow_rate:>12,.0f}{fast_rate:>12,.0f}{fast_rate / slow_rate:>7.1f}x"
            f"{share[name]:>13.1%}{'yes' if agree else 'NO':>8}"
        )
    with (
        mock.patch.object(records, "normalize_email", email_by_library),
        mock.patch.object(records, "normalize_phone", phone_by_library),
    ):
        slow_rate, slow = run(python_record, rows, args.repeat)
    fast_rate, quick = run(record, rows, args.repeat)
    agree = slow == quick
    ok &= agree
    rejected = sum(isinstance(result, list) for result in quick) / len(rows)
    print(
        f"{'validate_record':16}{slow_rate:>12,.0f}{fast_rate:>12,.0f}"
        f"{fast_rate / slow_rate:>7.1f}x{'':>13}{'yes' if agree else 'NO':>8}"
        f"   ({rejected:.1%} of rows rejected)"
    )
    # What the engine calls: a batch at a time, so the native pass runs once per batch.
    batch_rate, batched = run_batches(rows, args.repeat)
    agree = batched == quick
    ok &= agree
    print(
        f"{'validate_records':16}{slow_rate:>12,.0f}{batch_rate:>12,.0f}"
        f"{batch_rate / slow_rate:>7.1f}x{'':>13}{'yes' if agree else 'NO':>8}"
        f"   (batches of {BATCH})"
    )
    return 0 if ok else 1


BATCH = 5_000  # the engine's batch size


def run_batches(rows: Sequence[dict[str, object]], repeat: int) -> tuple[float, list[object]]:
    """`run` for records.validate_records, a batch of rows per call."""
    best = 0.0
    results: list[object] = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            results = [
                result
                for at in range(0, len(rows), BATCH)
                for result in records.validate_records(
                    rows[at : at + BATCH], default_region=DEFAULT_REGION
                )
            ]
            best = max(best, len(rows) / (time.process_time() - start))
        finally:
            gc.enable()
    return best, results


if __name__ == "__main__":
    sys.exit(main())
