"""TLS: verification is always on, and each way it can fail is refused with a clear error."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from contactsync.engine.destinations.rest import RestDestination
from contactsync.engine.http import HttpSettings, InsecureUrlError, SecureClient, TlsError
from contactsync.engine.sources.rest import RestSource
from tests.testbed.pki import CertificateAuthority, KeyPair

from .conftest import MakeClient, api_key_for, oauth_for
from .contacts_api import ContactsApi, FakeClock


def test_trusts_a_server_signed_by_the_configured_ca(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    body = make_client(api_key_for(contacts_api)).get_json(contacts_api.contacts_url)

    assert isinstance(body, dict)
    assert len(body["data"]) == 10
    assert contacts_api.requests[-1].tls_version == "TLSv1.3"


def test_refuses_a_certificate_from_another_ca(
    tmp_path: Path, make_client: MakeClient, clock: FakeClock
) -> None:
    impostor = CertificateAuthority(tmp_path, "impostor-ca").issue("contacts-api")
    with ContactsApi(impostor) as api:
        client = make_client(api_key_for(api))
        with pytest.raises(TlsError, match="certificate verify failed: unable to get local issuer"):
            client.get_json(api.contacts_url)

    assert api.requests == []
    assert clock.sleeps == []  # a trust failure is not retried


def test_system_cas_do_not_trust_a_private_ca(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    client = make_client(api_key_for(contacts_api), ca_file=None)

    with pytest.raises(TlsError, match="certificate verify failed"):
        client.get_json(contacts_api.contacts_url)
    assert contacts_api.requests == []


def test_refuses_a_certificate_for_another_host(
    pki: CertificateAuthority, make_client: MakeClient
) -> None:
    with ContactsApi(pki.issue("localhost-only", hosts=("localhost",))) as api:
        client = make_client(api_key_for(api))
        # The same server is fine under the name its certificate carries...
        client.get_json(f"https://localhost:{api.port}/contacts")
        # ...and refused under another one.
        with pytest.raises(
            TlsError, match=r"mismatch, certificate is not valid for '127\.0\.0\.1'"
        ):
            client.get_json(api.contacts_url)

    assert len(api.requests) == 1


def test_refuses_http_for_the_api(contacts_api: ContactsApi, make_client: MakeClient) -> None:
    client = make_client()
    plain = f"http://127.0.0.1:{contacts_api.port}/contacts"

    with pytest.raises(InsecureUrlError, match=r"request URL must use https:// \(got http://\)"):
        client.get_json(plain)
    with pytest.raises(InsecureUrlError, match="must use https://"):
        client.post_json(plain.replace("/contacts", "/contacts:batchUpsert"), {"records": []})
    with pytest.raises(InsecureUrlError, match="source URL must use https://"):
        RestSource(plain, client)
    with pytest.raises(InsecureUrlError, match="destination URL must use https://"):
        RestDestination(plain, client)
    assert contacts_api.requests == []  # not even a token was fetched


def test_refuses_http_for_the_token_url(
    contacts_api: ContactsApi, pki: CertificateAuthority
) -> None:
    auth = oauth_for(contacts_api, token_url=f"http://127.0.0.1:{contacts_api.port}/oauth/token")

    with pytest.raises(InsecureUrlError, match="OAuth token URL must use https://"):
        SecureClient(HttpSettings(ca_file=pki.cert_path), auth)
    assert contacts_api.requests == []


def test_refuses_credentials_embedded_in_a_url(
    contacts_api: ContactsApi, make_client: MakeClient
) -> None:
    url = f"https://user:pass@127.0.0.1:{contacts_api.port}/contacts"

    with pytest.raises(InsecureUrlError, match="must not embed credentials") as info:
        make_client().get_json(url)
    assert "pass" not in str(info.value)


@pytest.fixture
def tls12_api(server_tls: KeyPair) -> Iterator[ContactsApi]:
    """A server that speaks at most TLS 1.2."""
    with ContactsApi(server_tls, max_tls=ssl.TLSVersion.TLSv1_2) as api:
        yield api


def test_min_tls_1_3_refuses_a_tls_1_2_server(
    tls12_api: ContactsApi, make_client: MakeClient
) -> None:
    client = make_client(api_key_for(tls12_api), min_tls="1.3")

    with pytest.raises(TlsError, match="no TLS version that both sides allow"):
        client.get_json(tls12_api.contacts_url)
    assert tls12_api.requests == []


def test_min_tls_1_2_accepts_a_tls_1_2_server(
    tls12_api: ContactsApi, make_client: MakeClient
) -> None:
    make_client(api_key_for(tls12_api), min_tls="1.2").get_json(tls12_api.contacts_url)

    assert tls12_api.requests[-1].tls_version == "TLSv1.2"


def test_mtls_server_rejects_a_client_without_certificate_and_accepts_one_with_it(
    pki: CertificateAuthority, server_tls: KeyPair, make_client: MakeClient
) -> None:
    pair = pki.issue("contactsync-client", hosts=(), client=True)
    with ContactsApi(server_tls, client_ca=pki.cert_path) as api:
        key = api_key_for(api)
        with pytest.raises(TlsError, match="requires a client certificate"):
            make_client(key).get_json(api.contacts_url)
        assert api.requests == []

        make_client(key, client_cert=pair.cert, client_key=pair.key).get_json(api.contacts_url)

    assert [r.client_cert_subject for r in api.requests] == ["contactsync-client"]


def test_mtls_server_rejects_a_client_certificate_from_another_ca(
    pki: CertificateAuthority, server_tls: KeyPair, tmp_path: Path, make_client: MakeClient
) -> None:
    stranger = CertificateAuthority(tmp_path, "stranger-ca").issue("stranger", client=True)
    with ContactsApi(server_tls, client_ca=pki.cert_path) as api:
        client = make_client(api_key_for(api), client_cert=stranger.cert, client_key=stranger.key)
        with pytest.raises(TlsError, match="does not trust the client certificate"):
            client.get_json(api.contacts_url)

    assert api.requests == []


def test_client_certificate_and_key_go_together(pki: CertificateAuthority) -> None:
    with pytest.raises(ValidationError, match="client_cert and client_key must be given together"):
        HttpSettings(ca_file=pki.cert_path, client_cert=pki.cert_path)


def test_unreadable_ca_file_is_a_clear_error(tmp_path: Path, contacts_api: ContactsApi) -> None:
    with pytest.raises(TlsError, match="cannot load TLS files"):
        SecureClient(HttpSettings(ca_file=tmp_path / "missing.crt"), oauth_for(contacts_api))
