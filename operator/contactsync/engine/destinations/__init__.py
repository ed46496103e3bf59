"""Destinations: take prepared batches and commit a run atomically.

Each destination module provides an encoder (a picklable callable that turns a
`Prepared` batch into the bytes it stores, run in worker processes) and a
`Destination` whose `open_run` context writes everything of one run or nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from contactsync.engine.prepare import Prepared


@dataclass(slots=True)
class EncodedBatch:
    rows: bytes
    quarantine: bytes
    seen_ids: list[str]  # ids of rejected records, kept out of full-mode deletes
    valid: int
    rejected: int
    flagged_deleted: int = 0  # valid records carrying the source's deletion flag
    reasons: Counter[str] = field(default_factory=Counter)
    max_updated_at: datetime | None = None
    ids_digest: str = ""


@dataclass(frozen=True)
class WriteCounts:
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    merged: int = 0  # valid records folded into another of the same run (same contact)


Encoder = Callable[[Prepared], EncodedBatch]


class DestinationRun(Protocol):
    def cursor(self) -> datetime | None: ...
    def write(self, batch: EncodedBatch) -> None: ...
    def finish(
        self, *, full: bool, max_delete_ratio: float, cursor: datetime | None
    ) -> WriteCounts: ...


class Destination(Protocol):
    encoder: Encoder

    def open_run(self, run_id: str) -> AbstractContextManager[DestinationRun]: ...
