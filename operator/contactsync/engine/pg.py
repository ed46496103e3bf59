"""PostgreSQL connections with verified TLS.

The spec, not the DSN, decides the TLS mode: a DSN that asks for less
(`sslmode=prefer`, `disable`, ...) is overridden, so a credential cannot
silently weaken transport security. Anything below `verify-full` is an
explicit spec setting and is logged as a warning.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from contactsync.api.spec import Tls

from .secrets import SecretStore

log = logging.getLogger("contactsync.engine.postgres")


def secure_conninfo(dsn: str, tls: Tls, secrets: SecretStore) -> str:
    params = conninfo_to_dict(dsn)
    params["sslmode"] = tls.ssl_mode
    if tls.ca_secret_ref is not None:
        params["sslrootcert"] = str(secrets.path(tls.ca_secret_ref))
    elif "sslrootcert" not in params:
        params["sslrootcert"] = "system"  # the OS trust store, not libpq's ~/.postgresql default
    params.setdefault("connect_timeout", 10)
    params.setdefault("application_name", "contactsync")
    if tls.ssl_mode != "verify-full":
        log.warning(
            "PostgreSQL TLS weakened by spec: sslmode=%s does not verify the server's host name%s",
            tls.ssl_mode,
            "" if tls.ssl_mode == "verify-ca" else " or certificate",
        )
    return make_conninfo("", **params)


def connect(dsn: str, tls: Tls, secrets: SecretStore) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(secure_conninfo(dsn, tls, secrets))
