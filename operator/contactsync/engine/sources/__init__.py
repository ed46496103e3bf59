"""Sources: plain iterators of record batches.

A new system (HubSpot, Salesforce, ...) is one new module here that yields
`RawRecord` batches; the engine never changes for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(slots=True)
class RawRecord:
    position: int  # 1-based record number in the source
    fields: dict[str, object]
    error: str | None = None  # a reason code when the reader could not decode the record


class Source(Protocol):
    def batches(self, *, since: datetime | None, batch_size: int) -> Iterator[list[RawRecord]]: ...
