from __future__ import annotations

import logging
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from contactsync.api.spec import SecretKeyRef, Tls
from contactsync.engine.pg import secure_conninfo
from contactsync.engine.secrets import SecretMissingError, SecretStore


def test_the_spec_not_the_dsn_decides_tls(tmp_path: Path) -> None:
    params = conninfo_to_dict(
        secure_conninfo("postgresql://u:p@db/x?sslmode=disable", Tls(), SecretStore(tmp_path))
    )
    assert params["sslmode"] == "verify-full"
    assert params["sslrootcert"] == "system"


def test_ca_from_a_secret(tmp_path: Path) -> None:
    (tmp_path / "db-ca").mkdir()
    (tmp_path / "db-ca" / "ca.crt").write_text("pem")
    tls = Tls(ca_secret_ref=SecretKeyRef(name="db-ca", key="ca.crt"))
    params = conninfo_to_dict(secure_conninfo("host=db", tls, SecretStore(tmp_path)))
    assert params["sslrootcert"] == str(tmp_path / "db-ca" / "ca.crt")


def test_a_weaker_mode_is_explicit_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="contactsync.engine.postgres"):
        params = conninfo_to_dict(
            secure_conninfo(
                "host=db password=hunter2", Tls(ssl_mode="require"), SecretStore(tmp_path)
            )
        )
    assert params["sslmode"] == "require"
    assert "TLS weakened by spec: sslmode=require" in caplog.text
    assert "hunter2" not in caplog.text


def test_missing_secret_names_it_without_a_value(tmp_path: Path) -> None:
    with pytest.raises(SecretMissingError, match=r"Secret 'db-ca' key 'ca\.crt' is not mounted"):
        SecretStore(tmp_path).read(SecretKeyRef(name="db-ca", key="ca.crt"))
