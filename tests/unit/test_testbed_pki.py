"""The bed's CA issues certificates that standard TLS verification accepts
for the names they were issued for, and only those."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest

from tests.testbed.pki import CertificateAuthority


def handshake(ca: Path, cert: Path, key: Path, server_hostname: str) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(ca))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(outgoing.read())
        incoming.write(s_out.read())
    client.do_handshake()


def test_issued_certificate_verifies_for_its_names(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    pair = ca.issue("svc", hosts=("localhost", "127.0.0.1"))
    handshake(ca.cert_path, pair.cert, pair.key, "localhost")
    handshake(ca.cert_path, pair.cert, pair.key, "127.0.0.1")
    assert pair.key.stat().st_mode & 0o077 == 0


def test_issued_certificate_fails_for_other_names_and_other_cas(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    other = CertificateAuthority(tmp_path, "other-ca")
    pair = ca.issue("svc", hosts=("localhost",))
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(ca.cert_path, pair.cert, pair.key, "example.com")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(other.cert_path, pair.cert, pair.key, "localhost")
