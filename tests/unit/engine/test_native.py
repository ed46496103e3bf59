"""Errors of the native hot loops name an index, never a value."""

from __future__ import annotations

import pytest

from contactsync import _native


def test_copy_text_encodes_each_kind_of_cell() -> None:
    assert _native.copy_text([("a\tb\\c\nd\re", b"\x01\xab", True, False, None)]) == (
        b"a\\tb\\\\c\\nd\\re\t\\\\x01ab\tt\tf\t\\N\n"
    )
    assert _native.copy_text([]) == b""


def test_copy_text_refuses_other_types_and_lone_surrogates_without_echo() -> None:
    with pytest.raises(ValueError, match=r"row #1, cell #0: not None, str, bytes or bool"):
        _native.copy_text([("ok",), (12,)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"value #0") as caught:
        _native.copy_text([("secret\ud800",)])
    assert "secret" not in str(caught.value)
