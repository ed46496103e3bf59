"""A REST API as a destination: batches POSTed as JSON with an Idempotency-Key."""

from __future__ import annotations

import re

from ..http import SecureClient, location, require_https

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
