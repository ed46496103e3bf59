"""The /metrics endpoint on its own port: plain, TLS, and TLS with client certificates."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from contactsync.controller.metrics import serve
from contactsync.controller.settings import Settings
from tests.testbed.net import free_port
from tests.testbed.pki import CertificateAuthority


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path)


@contextmanager
def start(**tls: str) -> Iterator[str]:
    port = free_port()
    settings = Settings(
        prefect_api_url="http://prefect.invalid/api",
        metrics_port=port,
        metrics_address="127.0.0.1",
        **tls,  # type: ignore[arg-type]
    )
    server = serve(settings)
    assert server is not None
    try:
        yield f"{'https' if tls else 'http'}://localhost:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def test_plain_endpoint_serves_the_operator_metrics() -> None:
    with start() as url:
        body = httpx.get(url, timeout=5).text
        assert "contactsync_operator_build_info{" in body
        assert "process_resident_memory_bytes" in body


def test_tls_endpoint_verifies_against_its_ca(ca: CertificateAuthority) -> None:
    pair = ca.issue("metrics")
    with start(metrics_cert_file=str(pair.cert), metrics_key_file=str(pair.key)) as url:
        assert httpx.get(url, verify=ssl.create_default_context(cafile=ca.cert_path)).is_success
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url, verify=True)  # the system CAs do not know this one
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            httpx.get(url.replace("https://", "http://"), timeout=5)  # no plaintext


def test_client_ca_requires_a_client_certificate(ca: CertificateAuthority) -> None:
    server_pair, client_pair = ca.issue("metrics"), ca.issue("prometheus", client=True)
    with start(
        metrics_cert_file=str(server_pair.cert),
        metrics_key_file=str(server_pair.key),
        metrics_client_ca_file=str(ca.cert_path),
    ) as url:
        anonymous = ssl.create_default_context(cafile=ca.cert_path)
        with pytest.raises((httpx.ReadError, httpx.ConnectError, httpx.RemoteProtocolError)):
            httpx.get(url, verify=anonymous, timeout=5)
        known = ssl.create_default_context(cafile=ca.cert_path)
        known.load_cert_chain(client_pair.cert, client_pair.key)
        assert httpx.get(url, verify=known, timeout=5).is_success


def test_metrics_port_zero_serves_nothing() -> None:
    assert serve(Settings(prefect_api_url="http://prefect.invalid/api", metrics_port=0)) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CONTACTSYNC_METRICS_TLS_CERT_FILE": "/c"}, "set both"),
        ({"CONTACTSYNC_METRICS_TLS_CLIENT_CA_FILE": "/ca"}, "needs the TLS certificate"),
    ],
)
def test_half_a_tls_configuration_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(RuntimeError, match=message):
        Settings.from_env({"CONTACTSYNC_PREFECT_API_URL": "http://p/api", **env})
