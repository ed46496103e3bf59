"""No secret (client secret, token, API key) in logs, exception messages or reprs."""

from __future__ import annotations

import base64
import logging

import pytest
from pydantic import SecretStr, ValidationError

from contactsync.engine.destinations.rest import RestDestination
from contactsync.engine.http import ApiKey, AuthError, HttpError, OAuth2ClientCredentials
from contactsync.engine.sources.rest import OffsetPagination, RestSource

from .conftest import MakeClient, oauth_for
from .contacts_api import ContactsApi

CLIENT_SECRET = "client-secret-DO-NOT-LOG-1"
WRONG_SECRET = "wrong-secret-DO-NOT-LOG-2"
API_KEY = "api-key-DO-NOT-LOG-3"
WRONG_KEY = "api-key-DO-NOT-LOG-4"


def test_secrets_never_reach_logs_errors_or_reprs(
    contacts_api: ContactsApi, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx's and httpcore's
    contacts_api.client_secret = CLIENT_SECRET
    contacts_api.page_size = 10
    auth = oauth_for(contacts_api, client_auth="client_secret_post")
    basic_auth = oauth_for(contacts_api)
    client = make_client(auth)
    errors: list[HttpError] = []

    # Token fetch, paging with a query string, retry, renewal after revocation, upsert.
    source = RestSource(contacts_api.contacts_url, client, pagination=OffsetPagination(limit=10))
    contacts_api.fail_next(503)
    list(source.batches(since=None, batch_size=10))
    contacts_api.revoke_tokens()
    RestDestination(contacts_api.upsert_url, client).write_batch(
        [{"id": "x"}], idempotency_key="k1"
    )
    make_client(basic_auth).get_json(contacts_api.contacts_url)
    # Failures: token rejected after renewal, wrong client secret, wrong API key.
    contacts_api.reject_all_tokens = True
    with pytest.raises(AuthError) as rejected:
        client.get_json(contacts_api.contacts_url)
    errors.append(rejected.value)
    with pytest.raises(AuthError) as refused:
        make_client(oauth_for(contacts_api, client_secret=WRONG_SECRET)).get_json(
            contacts_api.contacts_url
        )
    errors.append(refused.value)
    contacts_api.api_key = ("X-API-Key", API_KEY)
    key_auth = ApiKey(header="X-API-Key", value=SecretStr(API_KEY))
    make_client(key_auth).get_json(contacts_api.contacts_url)
    with pytest.raises(AuthError) as wrong_key:
        make_client(ApiKey(header="X-API-Key", value=SecretStr(WRONG_KEY))).get_json(
            contacts_api.contacts_url
        )
    errors.append(wrong_key.value)

    assert len(contacts_api.issued_tokens) >= 3
    basic = base64.b64encode(f"{contacts_api.client_id}:{CLIENT_SECRET}".encode()).decode()
    secrets = [CLIENT_SECRET, WRONG_SECRET, API_KEY, WRONG_KEY, basic]
    secrets += contacts_api.issued_tokens
    formatter = logging.Formatter("%(name)s %(message)s")
    texts = [formatter.format(record) for record in caplog.records]
    texts += [str(error) for error in errors] + [repr(error) for error in errors]
    texts += [repr(x) for x in (auth, basic_auth, key_auth, client, source)]
    texts += [str(x) for x in (auth, key_auth)]
    for secret in secrets:
        leaks = [text for text in texts if secret in text]
        assert leaks == [], f"a secret leaked into: {leaks}"


def test_log_lines_carry_method_host_path_status_attempt_duration_only(
    contacts_api: ContactsApi, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="contactsync.engine.http")
    contacts_api.fail_next(503)

    make_client().get_json(contacts_api.contacts_url, {"updated_since": "2024-01-01T00:00:00Z"})

    ours = [r.getMessage() for r in caplog.records if r.name == "contactsync.engine.http"]
    host = f"127.0.0.1:{contacts_api.port}"
    assert ours[0].startswith(f"POST {host} /oauth/token status=200 attempt=1 duration=")
    assert ours[1].startswith(f"GET {host} /contacts status=503 attempt=1 duration=")
    assert ours[2] == f"GET {host} /contacts retrying attempt=2 in 0.50s"
    assert ours[3].startswith(f"GET {host} /contacts status=200 attempt=2 duration=")
    assert not any("updated_since" in line or "?" in line for line in ours)


def test_invalid_credentials_are_not_echoed_by_validation_errors(
    contacts_api: ContactsApi,
) -> None:
    with pytest.raises(ValidationError) as bad_key:
        ApiKey(header="X-API-Key", value=SecretStr("leaky-key\r\nX-Injected: 1"))
    with pytest.raises(ValidationError) as extra:
        OAuth2ClientCredentials.model_validate(
            {
                "token_url": contacts_api.token_url,
                "client_id": "id",
                "client_secret": "s",
                "password": "leaky-password",
            }
        )

    assert "leaky" not in str(bad_key.value)
    assert "leaky" not in str(extra.value)
