"""From a ContactSync spec to connector objects, with credentials resolved
from Secret-mounted files. The one place that knows every connector type:
adding one is a module under sources/ or destinations/ plus a branch here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pydantic import SecretStr

from contactsync.api.spec import Destination, HttpAuth, Source, Tls

from .destinations import Destination as DestinationConnector
from .destinations.jsonl import JsonlDestination
from .destinations.postgres import PostgresDestination
from .pg import secure_conninfo
from .secrets import SecretStore
from .sources import Source as SourceConnector
from .sources.files import CsvSource, JsonlSource, open_path
from .sources.postgres import PostgresSource

# The HTTP stack (httpx and what it pulls in) is imported by the connectors
# that use it: a file-to-database run, and the fork server that starts the
# worker processes, start a fifth of a second sooner without it.
if TYPE_CHECKING:
    from .http import AuthConfig, HttpSettings, SecureClient


def http_settings(tls: Tls, secrets: SecretStore) -> HttpSettings:
    from .http import HttpSettings

    client_cert = client_key = None
    if tls.client_cert_secret_ref is not None:
        directory = secrets.directory(tls.client_cert_secret_ref)
        client_cert, client_key = directory / "tls.crt", directory / "tls.key"
    return HttpSettings(
        ca_file=secrets.path(tls.ca_secret_ref) if tls.ca_secret_ref else None,
        min_tls=tls.min_version,
        client_cert=client_cert,
        client_key=client_key,
    )


def http_auth(auth: HttpAuth | None, secrets: SecretStore) -> AuthConfig | None:
    from .http import ApiKey, OAuth2ClientCredentials

    if auth is None:
        return None
    if auth.oauth2 is not None:
        oauth = auth.oauth2
        return OAuth2ClientCredentials(
            token_url=str(oauth.token_url),
            client_id=oauth.client_id,
            client_secret=SecretStr(secrets.read(oauth.client_secret_ref)),
            scopes=tuple(oauth.scopes),
            audience=oauth.audience,
        )
    assert auth.api_key is not None
    return ApiKey(
        header=auth.api_key.header,
        value=SecretStr(secrets.read(auth.api_key.secret_ref)),
        prefix=auth.api_key.prefix,
    )


def _client(tls: Tls, auth: HttpAuth | None, secrets: SecretStore) -> SecureClient:
    from .http import SecureClient

    return SecureClient(http_settings(tls, secrets), http_auth(auth, secrets))


def build_source(spec: Source, secrets: SecretStore) -> SourceConnector:
    if spec.type in ("csv", "jsonl"):
        opener: Callable[[], BinaryIO]
        if spec.path is not None:
            opener = open_path(Path(spec.path))
        else:
            client = _client(spec.tls, spec.auth, secrets)
            url = str(spec.url)
            opener = lambda: client.open_stream(url)  # noqa: E731
        if spec.type == "csv":
            # The engine filters on `since` anyway; the source may skip building
            # records it would drop (the bulk of an incremental run's file).
            return CsvSource(
                opener, encoding=spec.encoding, delimiter=spec.delimiter, skip_predating=True
            )
        return JsonlSource(opener, encoding=spec.encoding)
    if spec.type == "rest":
        from .sources.rest import (
            CursorPagination,
            NextLinkPagination,
            OffsetPagination,
            RestSource,
        )

        paging = spec.pagination
        pagination: NextLinkPagination | CursorPagination | OffsetPagination
        if paging.type == "nextLink":
            pagination = NextLinkPagination(path=paging.next_link_path)
        elif paging.type == "cursor":
            pagination = CursorPagination(path=paging.cursor_path, param=paging.cursor_param)
        else:
            pagination = OffsetPagination(limit=paging.page_size)
        return RestSource(
            str(spec.url),
            _client(spec.tls, spec.auth, secrets),
            pagination=pagination,
            records_path=spec.records_path,
            since_param=spec.since_param,
        )
    assert spec.dsn_secret_ref is not None
    conninfo = secure_conninfo(secrets.read(spec.dsn_secret_ref), spec.tls, secrets)
    return PostgresSource(
        conninfo, table=spec.table, query=spec.query, cursor_column=spec.cursor_column
    )


def build_destination(
    spec: Destination,
    secrets: SecretStore,
    *,
    encrypted_columns: frozenset[str],
    sync_key: str,
    key_id: str,
) -> DestinationConnector:
    if spec.type == "postgres":
        assert spec.dsn_secret_ref is not None
        assert spec.table is not None
        return PostgresDestination(
            secure_conninfo(secrets.read(spec.dsn_secret_ref), spec.tls, secrets),
            table=spec.table,
            encrypted_columns=encrypted_columns,
            sync_key=sync_key,
            key_id=key_id,
        )
    if spec.type == "jsonl":
        assert spec.path is not None
        return JsonlDestination(Path(spec.path))
    from .destinations.rest import RestDestination, SpooledRestDestination

    assert spec.url is not None
    rest = RestDestination(str(spec.url), _client(spec.tls, spec.auth, secrets))
    return SpooledRestDestination(rest, batch_size=spec.batch_size)
