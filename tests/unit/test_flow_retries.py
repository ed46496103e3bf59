from __future__ import annotations

import psycopg
import pytest

from contactsync.engine.errors import DeleteGuardError, SyncFailedError
from contactsync.engine.http import AuthError, TransportError
from contactsync.flows.contact_sync import _transient, _withheld


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TransportError("connection reset", attempts=3), True),
        (psycopg.OperationalError("server closed the connection"), True),
        (SyncFailedError("RejectRatioExceeded", "too many rejects"), False),
        (DeleteGuardError("refusing to delete"), False),
        (AuthError("401"), False),
        (ValueError("bad spec"), False),
        (SyncFailedError("TransportError", "withheld", transient=True), True),
    ],
)
def test_only_transient_errors_are_retried(error: BaseException, retried: bool) -> None:
    assert _transient(error) is retried


def test_a_foreign_error_reaches_prefect_as_its_type_and_code_only() -> None:
    leaking = psycopg.errors.UniqueViolation("Key (email)=(jane@example.com) already exists")
    withheld = _withheld(leaking)
    assert withheld.code == "UniqueViolation"
    assert "jane@example.com" not in str(withheld)
    assert not withheld.transient


def test_the_engine_http_errors_keep_their_text_and_transience() -> None:
    withheld = _withheld(TransportError("GET https://crm.internal/… failed", attempts=5))
    assert withheld.code == "TransportError"
    assert "failed" in str(withheld)
    assert withheld.transient
