"""A REST API as a source: pages of JSON records, read through the secure client.

Pages are fetched one at a time and re-chunked into batches; a page's records
are only handed out once the whole page has arrived, so a page that fails
half-way yields nothing of itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from ..http import SecureClient, location, read_json, require_https
from . import RawRecord

MALFORMED = "record.malformed"


@dataclass(frozen=True, slots=True, kw_only=True)
class NextLinkPagination:
    """Follow a next-page URL found at `path` in the body, else in a `Link: <…>; rel="next"`
    header. The URL must stay on the source's origin (and so on https)."""

    path: str | None = "links.next"
    link_header: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class CursorPagination:
    """Send back the cursor found at `path` in the body as the `param` query parameter."""

    path: str = "next_cursor"
    param: str = "cursor"


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetPagination:
    """Ask for `limit` records from an offset, until a page comes back short or empty."""

    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be at least 1")


Pagination = NextLinkPagination | CursorPagination | OffsetPagination


class RestSourceError(Exception):
    """The API's responses cannot be read as pages of records."""


class PaginationError(RestSourceError):
    """Pagination would loop forever, run past `max_pages`, or leave the source's origin."""


class RestSource:
    """Contacts from a paginated JSON API.

    `records_path` is a dotted path to the records array in each page ("data",
    "result.items"; "" for a body that is the array). With `since`, the
    `since_param` query parameter carries it as ISO-8601 in UTC.
    """

    def __init__(
        self,
        url: str,
        client: SecureClient,
        *,
        pagination: Pagination | None = None,
        records_path: str = "data",
        since_param: str | None = "updated_since",
        params: Mapping[str, str] | None = None,
        max_pages: int = 10_000,
    ) -> None:
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self._url = require_https(url, "the source URL")
        self._client = client
        self._pagination = pagination or NextLinkPagination()
        self._records_path = records_path
        self._since_param = since_param
        self._params = dict(params or {})
        self._max_pages = max_pages

    def __repr__(self) -> str:
        return f"RestSource({location(self._url)}, {type(self._pagination).__name__})"

    def batches(self, *, since: datetime | None, batch_size: int) -> Iterator[list[RawRecord]]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        query = dict(self._params)
        if since is not None:
            if self._since_param is None:
                raise ValueError("this source has no since_param, so it cannot read incrementally")
            query[self._since_param] = _iso8601(since)
        batch: list[RawRecord] = []
        position = 0
        for items in self._pages(query):
            for item in items:
                position += 1
                if isinstance(item, dict):
                    batch.append(RawRecord(position, item))
                else:
                    batch.append(RawRecord(position, {}, error=MALFORMED))
                if len(batch) == batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def _pages(self, query: dict[str, str]) -> Iterator[list[object]]:
        pagination = self._pagination
        if isinstance(pagination, NextLinkPagination):
            return self._next_link_pages(pagination, query)
        if isinstance(pagination, CursorPagination):
            return self._cursor_pages(pagination, query)
        return self._offset_pages(pagination, query)

    def _next_link_pages(
        self, pagination: NextLinkPagination, query: dict[str, str]
    ) -> Iterator[list[object]]:
        url = self._url
        params: dict[str, str] | None = query
        visited: set[httpx.URL] = set()
        for page in range(1, self._max_pages + 1):
            response = self._client.request("GET", url, params=params)
            visited.add(response.request.url)
            body = read_json(response)
            items = self._records(body)
            link = _next_link(body, response, pagination)
            if link is None:
                yield items
                return
            # Resolved against the page it came from; it must stay on this origin,
            # because the client sends credentials with it.
            following = require_https(response.request.url.join(link), "the next-page link")
            if _origin(following) != _origin(self._url):
                raise PaginationError(
                    f"page {page} links to another origin ({following.host}); refusing to follow"
                )
            if following in visited:
                raise PaginationError(
                    f"page {page} links to a page already read; stopping an endless loop"
                )
            yield items
            # The link carries its own query, `since` included.
            url, params = following, None
        raise self._too_many_pages()

    def _cursor_pages(
        self, pagination: CursorPagination, query: dict[str, str]
    ) -> Iterator[list[object]]:
        cursor: str | None = None
        seen: set[str] = set()
        for page in range(1, self._max_pages + 1):
            params = dict(query)
            if cursor is not None:
                params[pagination.param] = cursor
            body = self._client.get_json(self._url, params)
            items = self._records(body)
            cursor = _cursor(_lookup(body, pagination.path), page)
            if cursor is None:
                yield items
                return
            if cursor in seen:
                raise PaginationError(
                    f"page {page} repeats an earlier cursor; stopping an endless loop"
                )
            seen.add(cursor)
            yield items
        raise self._too_many_pages()

    def _offset_pages(
        self, pagination: OffsetPagination, query: dict[str, str]
    ) -> Iterator[list[object]]:
        offset = 0
        for _ in range(self._max_pages):
            params = {
                **query,
                pagination.offset_param: str(offset),
                pagination.limit_param: str(pagination.limit),
            }
            items = self._records(self._client.get_json(self._url, params))
            yield items
            if len(items) < pagination.limit:
                return
            offset += len(items)
        raise self._too_many_pages()

    def _records(self, body: object) -> list[object]:
        items = _lookup(body, self._records_path)
        if not isinstance(items, list):
            where = f"at {self._records_path!r}" if self._records_path else "as the body"
            raise RestSourceError(f"a page from {self._url.path} has no records array {where}")
        return items

    def _too_many_pages(self) -> PaginationError:
        return PaginationError(
            f"stopped after max_pages={self._max_pages} pages and the API offered more; "
            "raise max_pages if that is expected"
        )


def _iso8601(since: datetime) -> str:
    if since.tzinfo is None or since.utcoffset() is None:
        # A naive time means a different instant on every server's clock.
        raise ValueError("since must be timezone-aware")
    return since.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _lookup(body: object, path: str | None) -> object:
    """The value at a dotted path in nested JSON objects; None where the path is absent."""
    node = body
    for name in path.split(".") if path else ():
        if not isinstance(node, dict):
            return None
        node = node.get(name)
    return node


def _next_link(
    body: object, response: httpx.Response, pagination: NextLinkPagination
) -> str | None:
    link = _lookup(body, pagination.path) if pagination.path else None
    if link is None and pagination.link_header:
        link = response.links.get("next", {}).get("url")
    if link is None or link == "":
        return None
    if not isinstance(link, str):
        raise RestSourceError(f"the next-page link at {pagination.path!r} is not a string")
    return link


def _cursor(value: object, page: int) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RestSourceError(f"page {page} has a cursor that is neither a string nor a number")
    return str(value)


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or 443
