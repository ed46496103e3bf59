"""OAuth 2.0 client credentials and API keys against the real token endpoint."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from contactsync.engine.http import ApiKey, AuthError

from .conftest import MakeClient, api_key_for, oauth_for
from .contacts_api import CONTACTS_PATH, TOKEN_PATH, ContactsApi, FakeClock


def test_token_is_fetched_once_with_basic_auth_and_reused(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    auth = oauth_for(
        contacts_api, scopes=("contacts.read", "contacts.write"), audience="https://api.example"
    )
    client = make_client(auth)

    for _ in range(3):
        client.get_json(contacts_api.contacts_url)

    assert len(contacts_api.issued_tokens) == 1
    assert contacts_api.token_client_auth == ["basic"]
    assert contacts_api.token_forms == [
        {
            "grant_type": "client_credentials",
            "scope": "contacts.read contacts.write",
            "audience": "https://api.example",
        }
    ]
    bearer = f"Bearer {contacts_api.issued_tokens[0]}"
    assert [r.headers["authorization"] for r in contacts_api.requests_to(CONTACTS_PATH)] == [
        bearer
    ] * 3


def test_basic_auth_form_encodes_credentials(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    # A ':' in the secret would split it wrongly unless encoded (RFC 6749 2.3.1).
    contacts_api.client_id = "sync client"
    contacts_api.client_secret = "p@ss:word/+%é"

    make_client(oauth_for(contacts_api)).get_json(contacts_api.contacts_url)

    assert len(contacts_api.issued_tokens) == 1


def test_client_secret_post_sends_credentials_in_the_body(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    client = make_client(oauth_for(contacts_api, client_auth="client_secret_post"))

    client.get_json(contacts_api.contacts_url)

    assert contacts_api.token_client_auth == ["post"]
    assert contacts_api.token_forms[0]["client_id"] == contacts_api.client_id
    assert "authorization" not in contacts_api.requests_to(TOKEN_PATH)[0].headers


def test_token_is_renewed_before_it_expires(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.token_lifetime = 100.0  # refresh margin: 10% of it, 10 s
    client = make_client()

    client.get_json(contacts_api.contacts_url)
    clock.advance(50)
    client.get_json(contacts_api.contacts_url)
    assert len(contacts_api.issued_tokens) == 1

    clock.advance(45)  # 5 s before expiry: inside the margin, still valid on the server
    client.get_json(contacts_api.contacts_url)

    assert len(contacts_api.issued_tokens) == 2
    assert contacts_api.unauthorized == 0
    latest = contacts_api.requests_to(CONTACTS_PATH)[-1]
    assert latest.headers["authorization"] == f"Bearer {contacts_api.issued_tokens[1]}"


def test_revoked_token_is_renewed_once_and_the_request_retried(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client()
    client.get_json(contacts_api.contacts_url)
    contacts_api.revoke_tokens()

    body = client.get_json(contacts_api.contacts_url)

    assert isinstance(body, dict)
    assert contacts_api.unauthorized == 1
    assert len(contacts_api.issued_tokens) == 2
    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 3
    assert clock.sleeps == []  # re-authentication is not a backoff retry


def test_401_with_a_fresh_token_fails_with_auth_error(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.reject_all_tokens = True

    with pytest.raises(
        AuthError, match="401 Unauthorized even with a freshly issued token"
    ) as info:
        make_client().get_json(contacts_api.contacts_url)

    assert len(contacts_api.requests_to(CONTACTS_PATH)) == 2
    assert len(contacts_api.issued_tokens) == 2
    for token in contacts_api.issued_tokens:
        assert token not in str(info.value)


def test_wrong_client_secret_fails_at_the_token_endpoint(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    client = make_client(oauth_for(contacts_api, client_secret="not-the-secret"))

    with pytest.raises(AuthError, match=r"refused the client credentials: 401 \(invalid_client\)"):
        client.get_json(contacts_api.contacts_url)

    assert len(contacts_api.requests_to(TOKEN_PATH)) == 1
    assert contacts_api.requests_to(CONTACTS_PATH) == []
    assert clock.sleeps == []


def test_token_endpoint_outage_is_retried(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.fail_next(503, times=2, path=TOKEN_PATH)

    make_client().get_json(contacts_api.contacts_url)

    assert len(contacts_api.requests_to(TOKEN_PATH)) == 3
    assert clock.sleeps == [0.5, 1.0]


def test_api_key_in_a_custom_header(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    make_client(api_key_for(contacts_api, "k-123")).get_json(contacts_api.contacts_url)

    (request,) = contacts_api.requests
    assert request.headers["x-api-key"] == "k-123"
    assert "authorization" not in request.headers


def test_api_key_with_a_prefix_in_authorization(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    contacts_api.api_key = ("Authorization", "Bearer k-456")
    auth = ApiKey(value=SecretStr("k-456"), prefix="Bearer")

    make_client(auth).get_json(contacts_api.contacts_url)

    assert contacts_api.requests[0].headers["authorization"] == "Bearer k-456"


def test_rejected_api_key_fails_at_once(
    contacts_api: ContactsApi, make_client: MakeClient, clock: FakeClock
) -> None:
    contacts_api.api_key = ("X-API-Key", "the-right-key")
    client = make_client(ApiKey(header="X-API-Key", value=SecretStr("a-wrong-key")))

    with pytest.raises(AuthError, match="the credentials were rejected"):
        client.get_json(contacts_api.contacts_url)

    assert len(contacts_api.requests) == 1
    assert clock.sleeps == []
