"""Fixtures for the engine's HTTP tests: a test CA, a fake clock, the contacts API."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from contactsync.engine.http import (
    ApiKey,
    AuthConfig,
    HttpSettings,
    OAuth2ClientCredentials,
    SecureClient,
)
from tests.testbed.pki import CertificateAuthority, KeyPair

from .contacts_api import ContactsApi, FakeClock, make_contacts

MakeClient = Callable[..., SecureClient]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def server_tls(pki: CertificateAuthority) -> KeyPair:
    return pki.issue("contacts-api", hosts=("localhost", "127.0.0.1"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def contacts_api(server_tls: KeyPair, clock: FakeClock) -> Iterator[ContactsApi]:
    """A running API with 25 contacts, offset pagination, pages of 10; tokens expire on `clock`."""
    with ContactsApi(server_tls, contacts=make_contacts(25), clock=clock.now) as api:
        yield api


def oauth_for(api: ContactsApi, **overrides: object) -> OAuth2ClientCredentials:
    fields: dict[str, object] = {
        "token_url": api.token_url,
        "client_id": api.client_id,
        "client_secret": api.client_secret,
    }
    return OAuth2ClientCredentials.model_validate({**fields, **overrides})


def api_key_for(api: ContactsApi, value: str = "key-0123456789abcdef") -> ApiKey:
    """An X-API-Key credential, registered with `api`."""
    api.api_key = ("X-API-Key", value)
    return ApiKey(header="X-API-Key", value=SecretStr(value))


@pytest.fixture
def make_client(
    pki: CertificateAuthority, contacts_api: ContactsApi, clock: FakeClock
) -> Iterator[MakeClient]:
    """Build SecureClients that trust the test CA, sleep on the fake clock, jitter at the
    ceiling (so backoff is predictable) and default to OAuth against `contacts_api`."""
    clients: list[SecureClient] = []

    def make(
        auth: AuthConfig | None = None,
        *,
        ca_file: Path | None = pki.cert_path,
        jitter: Callable[[], float] = lambda: 1.0,
        **settings: object,
    ) -> SecureClient:
        client = SecureClient(
            HttpSettings.model_validate({"ca_file": ca_file, "backoff_base": 0.5, **settings}),
            auth or oauth_for(contacts_api),
            sleep=clock.sleep,
            clock=clock.now,
            jitter=jitter,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
