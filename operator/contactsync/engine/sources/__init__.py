"""Sources: readers that yield raw contact records as plain iterators of batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(slots=True)
class RawRecord:
    """One record as read, before any validation."""

    position: int  # 1-based record number in the source
    fields: dict[str, object]
    # A reason code when the reader could not decode the record:
    # "record.malformed", "encoding.invalid".
    error: str | None = None


class Source(Protocol):
    def batches(self, *, since: datetime | None, batch_size: int) -> Iterator[list[RawRecord]]: ...
