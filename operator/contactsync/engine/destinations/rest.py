"""A REST API as a destination: batches POSTed as JSON with an Idempotency-Key."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO

from ..http import SecureClient, location, require_https
from . import EncodedBatch, Encoder, WriteCounts
from .jsonl import encode as encode_jsonl

# Visible ASCII, bounded: it goes into a header as is.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class RestDestination:
    """POSTs `{records_key: [...]}` to `url`, one request per batch.

    Each batch carries the engine's deterministic `Idempotency-Key`, so the
    client may retry a POST whose response was lost (5xx, dropped connection)
    and a server that honours the key applies the batch once. Any 2xx is
    success; failures raise the client's HttpError.
    """

    def __init__(self, url: str, client: SecureClient, *, records_key: str = "records") -> None:
        self._url = require_https(url, "the destination URL")
        self._client = client
        self._records_key = records_key

    def __repr__(self) -> str:
        return f"RestDestination({location(self._url)})"

    def write_batch(self, records: list[dict[str, object]], *, idempotency_key: str) -> None:
        if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValueError("idempotency_key must be 1-255 visible ASCII characters")
        if not records:
            return  # nothing to apply; an empty POST would only cost a round trip
        self._client.post_json(
            self._url,
            {self._records_key: records},
            headers={"Idempotency-Key": idempotency_key},
        )


class SpooledRestRun:
    """Holds a run's encoded records in a private spool file until the guards
    have passed, then POSTs them in batches; a refused run sends nothing."""

    def __init__(
        self, destination: RestDestination, run_id: str, batch_size: int, spool: IO[bytes]
    ) -> None:
        self._destination = destination
        self._run_id = run_id
        self._batch_size = batch_size
        self._spool = spool
        self._written = 0
        self._deleted = 0

    def cursor(self) -> datetime | None:
        return None  # a REST API keeps no cursor for us: every run reads what the source gives

    def write(self, batch: EncodedBatch) -> None:
        self._spool.write(batch.rows)
        self._written += batch.valid
        self._deleted += batch.flagged_deleted

    def finish(
        self, *, full: bool, max_delete_ratio: float, cursor: datetime | None
    ) -> WriteCounts:
        self._spool.seek(0)
        batch: list[dict[str, object]] = []
        number = 0
        for line in self._spool:
            batch.append(json.loads(line))
            if len(batch) == self._batch_size:
                self._post(number, batch)
                number, batch = number + 1, []
        self._post(number, batch)
        return WriteCounts(inserted=self._written - self._deleted, deleted=self._deleted)

    def _post(self, number: int, batch: list[dict[str, object]]) -> None:
        # Deterministic per run and batch: a retried run step re-sends the same keys.
        key = hashlib.sha256(f"{self._run_id}:{number}".encode()).hexdigest()
        self._destination.write_batch(batch, idempotency_key=key)


class SpooledRestDestination:
    def __init__(self, destination: RestDestination, *, batch_size: int) -> None:
        self._destination = destination
        self._batch_size = batch_size
        self.encoder: Encoder = encode_jsonl

    @contextmanager
    def open_run(self, run_id: str) -> Iterator[SpooledRestRun]:
        # Ciphertext only (the encoder ran first), in an unlinked file of this process.
        with tempfile.TemporaryFile(prefix="contactsync-spool-") as spool:
            yield SpooledRestRun(self._destination, run_id, self._batch_size, spool)
