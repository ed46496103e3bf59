"""Sources: plain iterators of record batches.

A new system (HubSpot, Salesforce, ...) is one new module here that yields
`RawRecord` batches; the engine never changes for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


@dataclass(slots=True)
class RawRecord:
    position: int  # 1-based record number in the source
    fields: dict[str, object]
    error: str | None = None  # a reason code when the reader could not decode the record


class Source(Protocol):
    def batches(
        self, *, since: datetime | None, batch_size: int
    ) -> Iterator[Sequence[RawRecord]]: ...


def predates(value: object, since: datetime) -> bool:
    """Whether an `updatedAt` value is certainly older than `since` (aware).

    The engine drops such records in incremental runs. A naive time is UTC; an
    unparsable value is not older: validation rejects it with a reason code.
    """
    try:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)) < since
    except ValueError:
        pass
    return False
