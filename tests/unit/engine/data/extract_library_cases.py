"""Extract the test INPUTS of the reference libraries into library_cases.json.

Run by hand when the pinned library versions change:

    pip download --no-binary :all: --no-deps \\
        phonenumbers==9.0.43 email-validator==2.4.0 -d /tmp/sdists
    (cd /tmp/sdists && tar xzf phonenumbers-9.0.43.tar.gz && tar xzf email_validator-2.4.0.tar.gz)
    python tests/unit/engine/data/extract_library_cases.py /tmp/sdists

Only inputs are kept (addresses, phone strings, region codes), never the
libraries' code or expectations: the engine's tests compare our fast paths
against the installed library itself. The inputs come from
email-validator's tests/test_syntax.py (Unlicense, public domain) and
phonenumbers' tests/phonenumberutiltest.py (Apache-2.0, a port of
libphonenumber's PhoneNumberUtilTest).
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

EMAIL_TESTS = "email_validator-2.4.0/tests/test_syntax.py"
PHONE_TESTS = "phonenumbers-9.0.43/tests/phonenumberutiltest.py"
MAX_PHONE_INPUT = 250


def _first_str(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def email_inputs(tree: ast.Module) -> list[str]:
    """First element of every parametrize row, and every literal validate_email argument."""
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if name.endswith("parametrize") and len(node.args) >= 2:
            rows = node.args[1]
            if isinstance(rows, ast.List):
                for row in rows.elts:
                    first = row.elts[0] if isinstance(row, ast.Tuple | ast.List) else row
                    value = _first_str(first)
                    if value is not None:
                        found.append(value)
        elif name == "validate_email" and node.args:
            value = _first_str(node.args[0])
            if value is not None:
                found.append(value)
    return sorted(set(found))


def phone_inputs(tree: ast.Module) -> tuple[list[str], list[str]]:
    """Every literal with three or more digits, the numbers the test builds
    with FrozenPhoneNumber(country_code=..., national_number=...) in E.164,
    and the region codes the tests parse with."""
    strings: set[str] = set()
    regions: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if sum(c.isdecimal() for c in text) >= 3 and len(text) <= MAX_PHONE_INPUT:
                strings.add(text)
            if len(text) == 2 and text.isupper() and text.isalpha():
                regions.add(text)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("PhoneNumber"):
            kw = {k.arg: k.value for k in node.keywords}
            cc, nn = kw.get("country_code"), kw.get("national_number")
            if isinstance(cc, ast.Constant) and isinstance(nn, ast.Constant):
                zero = "0" if "italian_leading_zero" in kw else ""
                strings.add(f"+{cc.value}{zero}{nn.value}")
    return sorted(strings), sorted(regions)


def main(sdists: Path) -> None:
    emails = email_inputs(ast.parse((sdists / EMAIL_TESTS).read_text("utf-8")))
    phones, regions = phone_inputs(ast.parse((sdists / PHONE_TESTS).read_text("utf-8")))
    out = {
        "origin": {
            "emails": f"inputs of email-validator 2.4.0 {EMAIL_TESTS.split('/', 1)[1]} (Unlicense)",
            "phones": f"inputs of phonenumbers 9.0.43 {PHONE_TESTS.split('/', 1)[1]}"
            " (Apache-2.0, (C) 2009 The Libphonenumber Authors)",
            "generator": "tests/unit/engine/data/extract_library_cases.py",
        },
        "emails": emails,
        "phones": phones,
        "phone_regions": regions,
    }
    target = Path(__file__).with_name("library_cases.json")
    target.write_text(json.dumps(out, ensure_ascii=True, indent=0) + "\n", "utf-8")
    print(f"{len(emails)} emails, {len(phones)} phones, {len(regions)} regions -> {target}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
