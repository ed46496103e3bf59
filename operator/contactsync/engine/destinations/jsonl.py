"""Encrypted JSON Lines destination: one file per run in a directory.

Each committed run adds `<UTC time>-<run id>.jsonl` (and a `.quarantine.jsonl`
beside it when records were rejected): written under a temporary name,
fsynced, then renamed, so a reader never sees half a run. Encrypted fields
hold base64 envelopes bound to the file's logical table name, the column and
the record id, exactly as in PostgreSQL. There is no merge with earlier runs:
this is an export, so full-mode soft deletes of absent records do not apply.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from contactsync.engine.prepare import Prepared

from . import EncodedBatch, Encoder, WriteCounts

STATE_FILE = "state.json"


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(value).decode()


def encode(prepared: Prepared) -> EncodedBatch:
    lines = []
    for row in prepared.rows():
        document: dict[str, object] = {"externalId": row.external_id}
        for column, value in row.values.items():
            document[column] = _b64(value) if isinstance(value, bytes) else value
        document |= {
            "emailBidx": _b64(row.email_bidx),
            "phoneBidx": _b64(row.phone_bidx),
            "attributes": row.attributes,
            "updatedAt": row.updated_at.isoformat(),
            "deleted": row.deleted,
            "contentDigest": _b64(row.digest),
        }
        lines.append(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
    quarantine = [
        json.dumps({"position": r.position, "reasons": r.reasons, "record": _b64(r.envelope)})
        for r in prepared.rejected
    ]
    return EncodedBatch(
        rows="".join(line + "\n" for line in lines).encode(),
        quarantine="".join(line + "\n" for line in quarantine).encode(),
        seen_ids=[],
        valid=prepared.valid,
        rejected=len(prepared.rejected),
        flagged_deleted=sum(prepared.deleted),
        reasons=prepared.reasons,
        max_updated_at=prepared.max_updated_at,
        ids_digest=prepared.ids_digest,
    )


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    partial.rename(path)


class JsonlRun:
    def __init__(self, directory: Path, run_id: str) -> None:
        self.directory = directory
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.final = directory / f"{stamp}-{run_id}.jsonl"
        self.quarantine_final = directory / f"{stamp}-{run_id}.quarantine.jsonl"
        self.partial = directory / f".{self.final.name}.partial"
        self.quarantine_partial = directory / f".{self.quarantine_final.name}.partial"
        self._rows = self.partial.open("wb")
        self._quarantine = self.quarantine_partial.open("wb")
        self._written = 0
        self._deleted = 0

    def cursor(self) -> datetime | None:
        state = self.directory / STATE_FILE
        if not state.exists():
            return None
        return datetime.fromisoformat(json.loads(state.read_text())["cursor"])

    def write(self, batch: EncodedBatch) -> None:
        self._rows.write(batch.rows)
        self._quarantine.write(batch.quarantine)
        self._written += batch.valid
        self._deleted += batch.flagged_deleted

    def finish(
        self, *, full: bool, max_delete_ratio: float, cursor: datetime | None
    ) -> WriteCounts:
        for handle, partial, final in (
            (self._rows, self.partial, self.final),
            (self._quarantine, self.quarantine_partial, self.quarantine_final),
        ):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            if partial.stat().st_size:
                partial.rename(final)
            else:
                partial.unlink()
        if cursor is not None:
            previous = self.cursor()
            newest = max(cursor, previous) if previous else cursor
            _write_atomically(
                self.directory / STATE_FILE, json.dumps({"cursor": newest.isoformat()}).encode()
            )
        return WriteCounts(inserted=self._written - self._deleted, deleted=self._deleted)

    def abort(self) -> None:
        for handle, partial in (
            (self._rows, self.partial),
            (self._quarantine, self.quarantine_partial),
        ):
            handle.close()
            partial.unlink(missing_ok=True)


class JsonlDestination:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.encoder: Encoder = encode

    @contextmanager
    def open_run(self, run_id: str) -> Iterator[JsonlRun]:
        self.directory.mkdir(parents=True, exist_ok=True)
        run = JsonlRun(self.directory, run_id)
        try:
            yield run
        except BaseException:
            run.abort()
            raise
