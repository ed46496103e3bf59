"""The retry policy: what is retried, how long it waits, and where it stops."""

from __future__ import annotations

import email.utils
import time

import pytest

from contactsync.engine.http import HttpStatusError, ResponseError, TransportError
from tests.testbed.net import free_port

from .conftest import MakeClient, api_key_for
from .contacts_api import CONTACTS_PATH, UPSERT_PATH, ContactsApi, FakeClock


def test_429_waits_as_long_as_retry_after_says(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    # Longer than backoff_max: the server's wish wins over the client's ceiling.
    contacts_api.fail_next(429, retry_after="45")

    make_client(backoff_max=30).get_json(contacts_api.contacts_url)

    assert len(clock.sleeps) == 1
    assert 45 <= clock.sleeps[0] < 46
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 2


def test_retry_after_as_an_http_date(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.fail_next(503, retry_after=email.utils.formatdate(time.time() + 20, usegmt=True))

    make_client().get_json(contacts_api.contacts_url)

    # HTTP dates have whole seconds, so the wait is within a second below 20.
    assert len(clock.sleeps) == 1
    assert 18 <= clock.sleeps[0] <= 20


def test_retry_after_beyond_the_time_budget_gives_up_at_once(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.fail_next(429, times=5, retry_after="120")

    with pytest.raises(
        HttpStatusError,
        match=r"failed: 429 Too Many Requests \(injected_fault\); giving up: a retry in 120\.0s "
        r"would exceed 60s",
    ) as info:
        make_client(max_retry_time=60).get_json(contacts_api.contacts_url)

    assert info.value.status == 429
    assert clock.sleeps == []
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 1


def test_5xx_is_retried_with_exponential_backoff_then_succeeds(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.fail_next(502, times=1)
    contacts_api.fail_next(503, times=1)
    contacts_api.fail_next(500, times=2)

    body = make_client(max_attempts=5, backoff_max=1.5).get_json(contacts_api.contacts_url)

    assert isinstance(body, dict)
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 5
    assert clock.sleeps == [0.5, 1.0, 1.5, 1.5]  # base 0.5 doubling, capped at 1.5


def test_backoff_is_fully_jittered(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.fail_next(503, times=2)

    make_client(jitter=lambda: 0.25).get_json(contacts_api.contacts_url)

    assert clock.sleeps == [0.125, 0.25]


def test_attempts_are_bounded(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.fail_next(503, times=100)

    with pytest.raises(
        HttpStatusError, match=r"/contacts failed after 3 attempts: 503 Service Unavailable"
    ) as info:
        make_client(max_attempts=3).get_json(contacts_api.contacts_url)

    assert (info.value.status, info.value.attempts) == (503, 3)
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 3
    assert len(clock.sleeps) == 2


def test_total_retry_time_is_bounded(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.fail_next(500, times=100)

    with pytest.raises(HttpStatusError, match="would exceed 2s"):
        make_client(max_attempts=50, max_retry_time=2).get_json(contacts_api.contacts_url)

    assert clock.sleeps == [0.5, 1.0]  # the next wait, 2.0, would pass the budget
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 3


@pytest.mark.parametrize(("status", "reason"), [(400, "Bad Request"), (403, "Forbidden")])
def test_other_4xx_fails_at_once(
    contacts_api: ContactsApi,
    make_client: MakeClient,
    clock: FakeClock,
    status: int,
    reason: str,
) -> None:
    contacts_api.fail_next(status)

    with pytest.raises(HttpStatusError) as info:
        make_client().get_json(contacts_api.contacts_url)

    assert str(info.value) == (
        f"GET 127.0.0.1:{contacts_api.port}/contacts failed: {status} {reason} (injected_fault)"
    )
    assert (info.value.status, info.value.attempts) == (status, 1)
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 1
    assert clock.sleeps == []


def test_post_without_idempotency_key_is_not_retried_on_5xx(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    # The first attempt might have been applied; only a key makes a repeat safe.
    contacts_api.fail_next(503, path=UPSERT_PATH)

    with pytest.raises(HttpStatusError, match="503"):
        make_client().post_json(contacts_api.upsert_url, {"records": [{"id": "x"}]})

    assert len(contacts_api.requests_to(UPSERT_PATH)) == 1
    assert contacts_api.applied == []
    assert clock.sleeps == []


def test_connection_dropped_mid_body_is_a_clear_error_after_retries(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.drop_after_page(0)  # the first page, every time

    with pytest.raises(TransportError, match="peer closed connection without sending complete"):
        make_client(max_attempts=3).get_json(contacts_api.contacts_url)

    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 3


def test_connection_dropped_once_is_retried(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.drop_after_page(0, times=1)

    body = make_client().get_json(contacts_api.contacts_url)

    assert isinstance(body, dict)
    assert len(body["data"]) == 10
    assert clock.sleeps == [0.5]


def test_refused_connection_is_retried_then_reported(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    url = f"https://127.0.0.1:{free_port()}/contacts"

    with pytest.raises(
        TransportError, match=r"failed after 3 attempts: .*Connection refused"
    ) as info:
        make_client(api_key_for(contacts_api), max_attempts=3).get_json(url)

    assert info.value.attempts == 3
    assert clock.sleeps == [0.5, 1.0]


def test_every_request_has_a_read_timeout(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.stall(2.0)
    client = make_client(max_attempts=1, timeout={"read": 0.2})
    started = time.monotonic()

    with pytest.raises(TransportError, match="timed out"):
        client.get_json(contacts_api.contacts_url)

    assert time.monotonic() - started < 1.5


def test_a_success_that_is_not_json_is_a_clear_error(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.fail_next(200, body=b"<html>maintenance: person1@example.com</html>")

    with pytest.raises(ResponseError, match=r"/contacts is not valid JSON") as info:
        make_client().get_json(contacts_api.contacts_url)

    assert "person1" not in str(info.value)
