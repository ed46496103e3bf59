"""RestSource against the real API: every pagination style, incremental reads, guards."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone

import pytest

from contactsync.engine.http import InsecureUrlError, TransportError
from contactsync.engine.sources import RawRecord
from contactsync.engine.sources.rest import (
    CursorPagination,
    NextLinkPagination,
    OffsetPagination,
    Pagination,
    PaginationError,
    RestSource,
    RestSourceError,
)

from .conftest import MakeClient
from .contacts_api import CONTACTS_PATH, ContactsApi, encode_cursor

STYLES: list[tuple[str, Pagination]] = [
    ("offset", OffsetPagination()),
    ("cursor", CursorPagination()),
    ("next_link", NextLinkPagination()),
]


def records(batches: Iterable[list[RawRecord]]) -> list[RawRecord]:
    return [record for batch in batches for record in batch]


def ids(batches: Iterable[list[RawRecord]]) -> list[object]:
    return [record.fields["id"] for record in records(batches)]


def source_for(
    api: ContactsApi, client: MakeClient, style: str, pagination: Pagination, page_size: int = 7
) -> RestSource:
    """A source reading `api` with `style` pagination, in pages of `page_size`."""
    api.pagination = style  # type: ignore[assignment]
    api.page_size = page_size
    if isinstance(pagination, OffsetPagination):
        pagination = dataclasses.replace(pagination, limit=page_size)
    return RestSource(api.contacts_url, client(), pagination=pagination)


@pytest.mark.parametrize(("style", "pagination"), STYLES, ids=[s for s, _ in STYLES])
def test_reads_every_page_and_rechunks_into_batches(
    contacts_api: ContactsApi, make_client: MakeClient, style: str, pagination: Pagination
) -> None:
    source = source_for(contacts_api, make_client, style, pagination)

    batches = list(source.batches(since=None, batch_size=10))

    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert [r.position for r in records(batches)] == list(range(1, 26))
    assert ids(batches) == [f"c{n}" for n in range(1, 26)]
    assert all(r.error is None for r in records(batches))
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 4  # pages of 7, 7, 7, 4


def test_next_link_from_a_link_header(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    contacts_api.link_in = "header"
    source = source_for(contacts_api, make_client, "next_link", NextLinkPagination())

    assert ids(source.batches(since=None, batch_size=100)) == [f"c{n}" for n in range(1, 26)]


def test_relative_next_links_are_resolved(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.absolute_links = False
    source = source_for(contacts_api, make_client, "next_link", NextLinkPagination())

    assert len(ids(source.batches(since=None, batch_size=100))) == 25


@pytest.mark.parametrize(("style", "pagination"), STYLES, ids=[s for s, _ in STYLES])
def test_since_reads_only_newer_records_on_every_page(
    contacts_api: ContactsApi, make_client: MakeClient, style: str, pagination: Pagination
) -> None:
    source = source_for(contacts_api, make_client, style, pagination, page_size=2)
    # 21:00 at +01:00 is 20:00 UTC: contacts c21..c25 were updated at or after it.
    since = datetime(2024, 1, 1, 21, tzinfo=timezone(timedelta(hours=1)))

    batches = list(source.batches(since=since, batch_size=100))

    assert ids(batches) == ["c21", "c22", "c23", "c24", "c25"]
    assert [r.position for r in records(batches)] == [1, 2, 3, 4, 5]
    requests = contacts_api.requests_to(CONTACTS_PATH)
    assert len(requests) == 3
    assert {r.query["updated_since"] for r in requests} == {"2024-01-01T20:00:00Z"}


def test_since_must_be_timezone_aware(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    source = RestSource(contacts_api.contacts_url, make_client())

    with pytest.raises(ValueError, match="timezone-aware"):
        list(source.batches(since=datetime(2024, 1, 1), batch_size=10))


def test_non_object_items_become_malformed_records(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.contacts = [{"id": "a"}, 42, "text", None, {"id": "b"}, ["x"]]
    contacts_api.page_size = 4
    source = RestSource(
        contacts_api.contacts_url, make_client(), pagination=OffsetPagination(limit=4)
    )

    got = records(source.batches(since=None, batch_size=3))

    assert [(r.position, r.error) for r in got] == [
        (1, None),
        (2, "record.malformed"),
        (3, "record.malformed"),
        (4, "record.malformed"),
        (5, None),
        (6, "record.malformed"),
    ]
    assert got[1].fields == {}
    assert got[4].fields == {"id": "b"}


def test_records_at_a_nested_path(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    contacts_api.records_path = "result.items"
    client = make_client()
    nested = RestSource(
        contacts_api.contacts_url,
        client,
        pagination=OffsetPagination(),
        records_path="result.items",
    )
    assert len(ids(nested.batches(since=None, batch_size=100))) == 25

    default = RestSource(contacts_api.contacts_url, client, pagination=OffsetPagination())
    with pytest.raises(RestSourceError, match="no records array at 'data'"):
        list(default.batches(since=None, batch_size=100))


def test_a_repeated_cursor_stops_pagination(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.pagination = "cursor"
    contacts_api.cursor_override = encode_cursor(0)  # always "the first page again"
    source = RestSource(contacts_api.contacts_url, make_client(), pagination=CursorPagination())

    with pytest.raises(PaginationError, match="page 2 repeats an earlier cursor"):
        list(source.batches(since=None, batch_size=100))
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 2


def test_a_repeated_next_link_stops_pagination(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.pagination = "next_link"
    contacts_api.next_link_override = contacts_api.contacts_url + "?page=2"
    source = RestSource(contacts_api.contacts_url, make_client())

    with pytest.raises(PaginationError, match="page 2 links to a page already read"):
        list(source.batches(since=None, batch_size=100))
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 2


def test_a_next_link_to_another_origin_is_not_followed(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    # localhost is in the server's certificate, so only the origin check stops it.
    contacts_api.pagination = "next_link"
    contacts_api.next_link_override = f"https://localhost:{contacts_api.port}/contacts?page=2"
    source = RestSource(contacts_api.contacts_url, make_client())

    with pytest.raises(PaginationError, match=r"links to another origin \(localhost\)"):
        list(source.batches(since=None, batch_size=100))
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 1


def test_an_http_next_link_is_refused(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    contacts_api.pagination = "next_link"
    contacts_api.next_link_override = f"http://127.0.0.1:{contacts_api.port}/contacts?page=2"
    source = RestSource(contacts_api.contacts_url, make_client())

    with pytest.raises(InsecureUrlError, match="next-page link must use https://"):
        list(source.batches(since=None, batch_size=100))
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 1


def test_max_pages_stops_an_endless_offset_listing(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.ignore_offset = True  # always a full first page
    source = RestSource(
        contacts_api.contacts_url, make_client(), pagination=OffsetPagination(limit=5), max_pages=4
    )

    with pytest.raises(PaginationError, match="stopped after max_pages=4 pages"):
        list(source.batches(since=None, batch_size=100))
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 4


def test_a_page_dropped_mid_stream_yields_nothing_of_itself(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.drop_after_page(1)  # page 2, on every attempt
    source = RestSource(
        contacts_api.contacts_url,
        make_client(max_attempts=2),
        pagination=OffsetPagination(limit=10),
    )
    batches = source.batches(since=None, batch_size=10)

    first = next(batches)
    with pytest.raises(TransportError, match="peer closed connection without sending complete"):
        next(batches)

    assert ids([first]) == [f"c{n}" for n in range(1, 11)]


def test_a_page_dropped_once_is_fetched_again(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.drop_after_page(1, times=1)
    source = RestSource(
        contacts_api.contacts_url, make_client(), pagination=OffsetPagination(limit=10)
    )

    assert ids(source.batches(since=None, batch_size=10)) == [f"c{n}" for n in range(1, 26)]


def test_batch_size_must_be_positive(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    source = RestSource(contacts_api.contacts_url, make_client())

    with pytest.raises(ValueError, match="batch_size"):
        next(source.batches(since=None, batch_size=0))
