"""Why a run refused to commit, as stable machine-readable codes.

The code travels to the flow's summary artifact, the operator's status and
the `contactsync_last_run_failed` metric; the message stays in the run's log.
"""

from __future__ import annotations


class SyncFailedError(RuntimeError):
    """The run did not commit; `code` says why."""

    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient  # another attempt may succeed (network, locks)


class DeleteGuardError(SyncFailedError):
    """A run would delete more than `safety.maxDeleteRatio` of the destination."""

    def __init__(self, message: str) -> None:
        super().__init__("DeleteRatioExceeded", message)


def failure_code(exc: BaseException) -> str:
    """A refused run's code; anything else is named by its exception type (never its message,
    which may quote a value)."""
    return exc.code if isinstance(exc, SyncFailedError) else type(exc).__name__
