"""`contactsync.dev/v1alpha1` ContactSync spec.

Secure settings are the defaults. Weakening one (PostgreSQL below
`verify-full`) takes an explicitly named value that the engine logs as a
warning. Credentials are only ever *references* to Secrets in the same
namespace, never values.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "contactsync.dev/v1alpha1"
KIND = "ContactSync"

DnsName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
SecretKey = Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]
Identifier = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
EncryptableField = Literal["email", "phone", "firstName", "lastName", "company", "jobTitle"]


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SecretKeyRef(Model):
    """A key of a Secret in the ContactSync's own namespace."""

    name: DnsName
    key: SecretKey


class SecretRef(Model):
    """A whole Secret in the ContactSync's own namespace."""

    name: DnsName


def _require_https(url: HttpUrl) -> HttpUrl:
    if url.scheme != "https":
        raise ValueError("must be an https:// URL: contact data never travels unencrypted")
    return url


class Tls(Model):
    """TLS towards a source or destination; verification is always on."""

    ca_secret_ref: SecretKeyRef | None = None  # default: the system trust store
    min_version: Literal["1.2", "1.3"] = "1.2"
    client_cert_secret_ref: SecretRef | None = None  # a kubernetes.io/tls Secret, for mTLS
    # PostgreSQL only. Anything below verify-full is a named weakening the engine logs.
    ssl_mode: Literal["verify-full", "verify-ca", "require"] = "verify-full"


class OAuth2ClientCredentials(Model):
    token_url: HttpUrl
    client_id: Annotated[str, Field(min_length=1, max_length=256)]
    client_secret_ref: SecretKeyRef
    scopes: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=16)
    audience: Annotated[str, Field(max_length=256)] | None = None

    _https = field_validator("token_url")(_require_https)


class ApiKey(Model):
    header: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]+$", max_length=64)] = "Authorization"
    prefix: Annotated[str, Field(max_length=32)] | None = None
    secret_ref: SecretKeyRef


class HttpAuth(Model):
    oauth2: OAuth2ClientCredentials | None = None
    api_key: ApiKey | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> HttpAuth:
        if (self.oauth2 is None) == (self.api_key is None):
            raise ValueError("set exactly one of oauth2 or apiKey")
        return self


class Pagination(Model):
    type: Literal["nextLink", "cursor", "offset"] = "nextLink"
    next_link_path: Annotated[str, Field(max_length=128)] = "links.next"
    cursor_path: Annotated[str, Field(max_length=128)] = "next_cursor"
    cursor_param: Annotated[str, Field(max_length=64)] = "cursor"
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 500


class Source(Model):
    type: Literal["csv", "jsonl", "rest", "postgres"]
    url: HttpUrl | None = None  # csv, jsonl, rest
    path: Annotated[str, Field(max_length=4096)] | None = None  # csv, jsonl: a mounted file
    auth: HttpAuth | None = None
    tls: Tls = Field(default_factory=Tls)
    records_path: Annotated[str, Field(max_length=128)] = "data"  # rest
    since_param: Annotated[str, Field(max_length=64)] = "updated_since"  # rest
    pagination: Pagination = Field(default_factory=Pagination)  # rest
    delimiter: Literal[",", ";", "\t", "|"] | None = None  # csv: sniffed when unset
    encoding: Annotated[str, Field(max_length=32)] | None = None  # csv, jsonl
    dsn_secret_ref: SecretKeyRef | None = None  # postgres
    table: Identifier | None = None  # postgres
    cursor_column: Identifier = "updated_at"  # postgres

    _https = field_validator("url")(lambda url: url if url is None else _require_https(url))

    @model_validator(mode="after")
    def _fields_for_type(self) -> Source:
        if self.type in ("csv", "jsonl") and (self.url is None) == (self.path is None):
            raise ValueError(f"a {self.type} source needs exactly one of url or path")
        if self.type == "rest" and self.url is None:
            raise ValueError("a rest source needs url")
        if self.type == "postgres" and (self.dsn_secret_ref is None or self.table is None):
            raise ValueError("a postgres source needs dsnSecretRef and table")
        return self


class Destination(Model):
    type: Literal["postgres", "rest", "jsonl"]
    dsn_secret_ref: SecretKeyRef | None = None  # postgres
    table: Identifier | None = None  # postgres
    tls: Tls = Field(default_factory=Tls)
    url: HttpUrl | None = None  # rest
    auth: HttpAuth | None = None  # rest
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500  # rest
    path: Annotated[str, Field(max_length=4096)] | None = None  # jsonl

    _https = field_validator("url")(lambda url: url if url is None else _require_https(url))

    @model_validator(mode="after")
    def _fields_for_type(self) -> Destination:
        if self.type == "postgres" and (self.dsn_secret_ref is None or self.table is None):
            raise ValueError("a postgres destination needs dsnSecretRef and table")
        if self.type == "rest" and self.url is None:
            raise ValueError("a rest destination needs url")
        if self.type == "jsonl" and self.path is None:
            raise ValueError("a jsonl destination needs path")
        return self


class Schedule(Model):
    cron: Annotated[str, Field(max_length=128)] | None = None
    interval_seconds: Annotated[int, Field(ge=60, le=31 * 86400)] | None = None
    timezone: Annotated[str, Field(max_length=64)] = "UTC"

    @model_validator(mode="after")
    def _cron_or_interval(self) -> Schedule:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("set exactly one of cron or intervalSeconds")
        return self


class Window(Model):
    """Runs only sync inside [start, end) in `timezone`; end < start wraps midnight."""

    start: ClockTime
    end: ClockTime
    timezone: Annotated[str, Field(max_length=64)] = "UTC"


def _default_encrypted_fields() -> list[EncryptableField]:
    return ["email", "phone", "firstName", "lastName"]


class Encryption(Model):
    key_secret_ref: SecretRef | None = None  # generated by the operator when unset
    fields: list[EncryptableField] = Field(default_factory=_default_encrypted_fields, max_length=6)


class Validation(Model):
    on_invalid: Literal["quarantine"] = "quarantine"
    max_reject_ratio: Ratio = 0.05
    default_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = "US"


class Safety(Model):
    max_delete_ratio: Ratio = 0.10


class WorkPool(Model):
    name: DnsName | None = None  # default: contactsync-<namespace>
    concurrency_limit: Annotated[int, Field(ge=1, le=100)] = 1


class PrefectSettings(Model):
    work_pool: WorkPool = Field(default_factory=WorkPool)
    image: Annotated[str, Field(max_length=512)] | None = None


class ContactSyncSpec(Model):
    source: Source
    destination: Destination
    mode: Literal["full", "incremental"] = "incremental"
    schedule: Schedule | None = None
    window: Window | None = None
    suspend: bool = False
    encryption: Encryption = Field(default_factory=Encryption)
    validation: Validation = Field(default_factory=Validation)
    safety: Safety = Field(default_factory=Safety)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: DnsName
    namespace: DnsName = "default"
    uid: str | None = None


class ContactSync(Model):
    """A whole ContactSync manifest (as `kubectl apply` and the CLI read it)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    api_version: Literal["contactsync.dev/v1alpha1"]
    kind: Literal["ContactSync"]
    metadata: ObjectMeta
    spec: ContactSyncSpec
