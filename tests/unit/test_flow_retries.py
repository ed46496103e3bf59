from __future__ import annotations

import psycopg
import pytest

from contactsync.engine.destinations import DeleteGuardError
from contactsync.engine.http import AuthError, TransportError
from contactsync.engine.pipeline import SyncFailedError
from contactsync.flows.contact_sync import _transient


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TransportError("connection reset", attempts=3), True),
        (psycopg.OperationalError("server closed the connection"), True),
        (SyncFailedError("RejectRatioExceeded", "too many rejects"), False),
        (DeleteGuardError("refusing to delete"), False),
        (AuthError("401"), False),
        (ValueError("bad spec"), False),
    ],
)
def test_only_transient_errors_are_retried(error: BaseException, retried: bool) -> None:
    assert _transient(error) is retried
