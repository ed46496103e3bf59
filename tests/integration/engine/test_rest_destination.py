"""RestDestination against the real API: idempotent batch POSTs."""

from __future__ import annotations

import pytest

from contactsync.engine.destinations.rest import RestDestination
from contactsync.engine.http import HttpStatusError

from .conftest import MakeClient
from .contacts_api import UPSERT_PATH, ContactsApi, FakeClock


def batch(count: int, start: int = 1) -> list[dict[str, object]]:
    return [{"id": f"r{n}", "email": f"r{n}@example.com"} for n in range(start, start + count)]


def test_posts_the_batch_with_its_idempotency_key(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    destination = RestDestination(contacts_api.upsert_url, make_client())

    destination.write_batch(batch(3), idempotency_key="run-1:batch-1")
    destination.write_batch(batch(2, start=4), idempotency_key="run-1:batch-2")

    first, second = contacts_api.requests_to(UPSERT_PATH)
    assert first.headers["idempotency-key"] == "run-1:batch-1"
    assert second.headers["idempotency-key"] == "run-1:batch-2"
    assert first.headers["content-type"] == "application/json"
    assert contacts_api.upsert_batches == [batch(3), batch(2, start=4)]


def test_a_lost_response_is_retried_and_applied_once(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    # The server applies the batch, then answers 503 as if a proxy lost the reply.
    contacts_api.fail_after_apply(503)
    destination = RestDestination(contacts_api.upsert_url, make_client())

    destination.write_batch(batch(3), idempotency_key="run-1:batch-1")

    requests = contacts_api.requests_to(UPSERT_PATH)
    assert len(requests) == 2
    assert {r.headers["idempotency-key"] for r in requests} == {"run-1:batch-1"}
    assert contacts_api.applied == batch(3)
    assert contacts_api.replayed_keys == ["run-1:batch-1"]
    assert clock.sleeps == [0.5]


def test_a_503_before_applying_is_retried(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.fail_next(503, times=2, path=UPSERT_PATH)
    destination = RestDestination(contacts_api.upsert_url, make_client())

    destination.write_batch(batch(2), idempotency_key="k1")

    assert len(contacts_api.requests_to(UPSERT_PATH)) == 3
    assert contacts_api.applied == batch(2)


def test_a_rerun_with_the_same_key_is_not_applied_twice(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    destination = RestDestination(contacts_api.upsert_url, make_client())

    destination.write_batch(batch(2), idempotency_key="run-7:batch-3")
    destination.write_batch(batch(2), idempotency_key="run-7:batch-3")

    assert contacts_api.applied == batch(2)
    assert contacts_api.replayed_keys == ["run-7:batch-3"]


def test_a_client_error_fails_at_once(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.fail_next(422, path=UPSERT_PATH)
    destination = RestDestination(contacts_api.upsert_url, make_client())

    with pytest.raises(HttpStatusError, match=r"POST .*/contacts:batchUpsert failed: 422") as info:
        destination.write_batch(batch(1), idempotency_key="k1")

    assert info.value.status == 422
    assert len(contacts_api.requests_to(UPSERT_PATH)) == 1
    assert clock.sleeps == []


def test_retries_are_bounded(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    contacts_api.fail_next(503, times=10, path=UPSERT_PATH)
    destination = RestDestination(contacts_api.upsert_url, make_client(max_attempts=3))

    with pytest.raises(HttpStatusError, match="after 3 attempts: 503"):
        destination.write_batch(batch(1), idempotency_key="k1")

    assert len(contacts_api.requests_to(UPSERT_PATH)) == 3
    assert contacts_api.applied == []


def test_an_empty_batch_sends_nothing(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    RestDestination(contacts_api.upsert_url, make_client()).write_batch([], idempotency_key="k1")

    assert contacts_api.requests == []


@pytest.mark.parametrize("key", ["", "has space", "line\nbreak", "x" * 256])
def test_an_unusable_idempotency_key_is_refused(
    contacts_api: ContactsApi, make_client: MakeClient, key: str
) -> None:
    destination = RestDestination(contacts_api.upsert_url, make_client())

    with pytest.raises(ValueError, match="idempotency_key"):
        destination.write_batch(batch(1), idempotency_key=key)
    assert contacts_api.requests == []
