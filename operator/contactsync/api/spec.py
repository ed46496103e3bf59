"""`contactsync.dev/v1alpha1` ContactSync spec.

Secure settings are the defaults. Weakening one (PostgreSQL below
`verify-full`) takes an explicitly named value that the engine logs as a
warning. Credentials are only ever *references* to Secrets in the same
namespace, never values: a reference has a name (and a key) but no namespace
field at all.

These models are the one source of truth: `contactsync.api.crd` generates the
CRD's OpenAPI schema from them. Field docstrings become the CRD's field
descriptions (`kubectl explain`), and each cross-field validator below has a
CEL rule (`x-kubernetes-validations`) next to it that says the same thing, so
the API server rejects what pydantic rejects.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict, JsonValue

API_VERSION = "contactsync.dev/v1alpha1"
KIND = "ContactSync"

DnsName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
SecretKey = Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]
Identifier = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
# max_length adds nothing to the pattern for pydantic, but the CRD needs every
# string bounded: the API server estimates the cost of CEL rules from it.
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", max_length=5)]
EncryptableField = Literal["email", "phone", "firstName", "lastName", "company", "jobTitle"]


def cel(
    rule: str,
    message: str,
    *,
    field_path: str | None = None,
    reason: str | None = None,
    message_expression: str | None = None,
) -> JsonDict:
    """One `x-kubernetes-validations` entry: a CEL rule the API server enforces."""
    entry: JsonDict = {"rule": rule, "message": message}
    if message_expression is not None:
        entry["messageExpression"] = message_expression
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def validations(*rules: JsonDict) -> JsonDict:
    """`json_schema_extra` carrying CEL rules into the generated CRD."""
    entries: list[JsonValue] = list(rules)
    return {"x-kubernetes-validations": entries}


_HTTPS_MESSAGE = "must be an https:// URL: contact data never travels unencrypted"
# Mirrors `_require_https`: pydantic compares the parsed, lower-cased scheme,
# and so does `url(...).getScheme()`; a URL also needs a host in both layers.
_HTTPS_URL = validations(
    cel(
        "isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",
        _HTTPS_MESSAGE,
    )
)


def _immutable(what: str) -> JsonDict:
    return cel(
        "self == oldSelf",
        f"{what} is immutable: create a new ContactSync to write elsewhere",
    )


class Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class SecretKeyRef(Model):
    """A key of a Secret in the ContactSync's own namespace (there is no namespace field)."""

    name: DnsName
    """Name of a Secret in the ContactSync's own namespace."""
    key: SecretKey
    """Key inside the Secret's data."""


class SecretRef(Model):
    """A whole Secret in the ContactSync's own namespace (there is no namespace field)."""

    name: DnsName
    """Name of a Secret in the ContactSync's own namespace."""


def _require_https(url: HttpUrl) -> HttpUrl:
    if url.scheme != "https":
        raise ValueError(_HTTPS_MESSAGE)
    return url


class Tls(Model):
    """TLS towards a source or destination; verification is always on."""

    ca_secret_ref: SecretKeyRef | None = None
    """PEM CA bundle to trust instead of the system trust store."""
    min_version: Literal["1.2", "1.3"] = "1.2"
    """Lowest TLS version accepted."""
    client_cert_secret_ref: SecretRef | None = None
    """A kubernetes.io/tls Secret with a client certificate, for mutual TLS."""
    ssl_mode: Literal["verify-full", "verify-ca", "require"] = "verify-full"
    """PostgreSQL only. Anything below verify-full is a named weakening the engine logs."""


class OAuth2ClientCredentials(Model):
    """OAuth 2.0 client-credentials grant; tokens are fetched and refreshed by the engine."""

    token_url: HttpUrl = Field(json_schema_extra=_HTTPS_URL)
    """Token endpoint; https:// only."""
    client_id: Annotated[str, Field(min_length=1, max_length=256)]
    """OAuth 2.0 client id (not a secret)."""
    client_secret_ref: SecretKeyRef
    """Secret key holding the client secret."""
    scopes: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=16)
    """Scopes to request."""
    audience: Annotated[str, Field(max_length=256)] | None = None
    """Audience parameter, for providers that need one."""

    _https = field_validator("token_url")(_require_https)


class ApiKey(Model):
    """A static key sent in a request header."""

    header: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]+$", max_length=64)] = "Authorization"
    """Header that carries the key."""
    prefix: Annotated[str, Field(max_length=32)] | None = None
    """Text put before the key, such as "Bearer"."""
    secret_ref: SecretKeyRef
    """Secret key holding the API key."""


class HttpAuth(Model):
    """How to authenticate to an HTTP endpoint: exactly one of oauth2 or apiKey."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("has(self.oauth2) != has(self.apiKey)", "set exactly one of oauth2 or apiKey")
        )
    )

    oauth2: OAuth2ClientCredentials | None = None
    """OAuth 2.0 client credentials."""
    api_key: ApiKey | None = None
    """A static API key."""

    @model_validator(mode="after")
    def _exactly_one(self) -> HttpAuth:
        if (self.oauth2 is None) == (self.api_key is None):
            raise ValueError("set exactly one of oauth2 or apiKey")
        return self


class Pagination(Model):
    """How a REST source pages through its records."""

    type: Literal["nextLink", "cursor", "offset"] = "nextLink"
    """nextLink: follow a URL in the body; cursor: send a cursor back; offset: page by offset."""
    next_link_path: Annotated[str, Field(max_length=128)] = "links.next"
    """nextLink: dotted path of the next page's URL in the response body."""
    cursor_path: Annotated[str, Field(max_length=128)] = "next_cursor"
    """cursor: dotted path of the next cursor in the response body."""
    cursor_param: Annotated[str, Field(max_length=64)] = "cursor"
    """cursor: query parameter that sends the cursor."""
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    """Records asked for per page."""


class Source(Model):
    """Where contact records come from."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!(self.type in ['csv', 'jsonl']) || has(self.url) != has(self.path)",
                "a csv or jsonl source needs exactly one of url or path",
                message_expression="'a ' + self.type + ' source needs exactly one of url or path'",
            ),
            cel(
                "self.type != 'rest' || has(self.url)",
                "a rest source needs url",
                field_path=".url",
                reason="FieldValueRequired",
            ),
            cel(
                "self.type != 'postgres' || has(self.dsnSecretRef)",
                "a postgres source needs dsnSecretRef",
                field_path=".dsnSecretRef",
                reason="FieldValueRequired",
            ),
            cel(
                "self.type != 'postgres' || has(self.table) != has(self.query)",
                "a postgres source needs exactly one of table or query",
                field_path=".table",
            ),
        )
    )

    type: Literal["csv", "jsonl", "rest", "postgres"]
    """Kind of source; it decides which other fields apply."""
    url: HttpUrl | None = Field(default=None, json_schema_extra=_HTTPS_URL)
    """csv, jsonl, rest: https:// URL to read from."""
    path: Annotated[str, Field(max_length=4096)] | None = None
    """csv, jsonl: path of a mounted file, instead of url."""
    auth: HttpAuth | None = None
    """csv, jsonl, rest over https: credentials."""
    tls: Tls = Field(default_factory=Tls)
    """TLS towards the source."""
    records_path: Annotated[str, Field(max_length=128)] = "data"
    """rest: dotted path of the record list in each response body."""
    since_param: Annotated[str, Field(max_length=64)] = "updated_since"
    """rest: query parameter that asks for records changed since the last run (incremental)."""
    pagination: Pagination = Field(default_factory=Pagination)
    """rest: paging."""
    delimiter: Literal[",", ";", "\t", "|"] | None = None
    """csv: field delimiter; sniffed from the data when unset."""
    encoding: Annotated[str, Field(max_length=32)] | None = None
    """csv, jsonl: codec of the file; when unset a byte order mark decides, else UTF-8."""
    dsn_secret_ref: SecretKeyRef | None = None
    """postgres: Secret key holding the connection URI."""
    table: Identifier | None = None
    """postgres: table to read, instead of query."""
    query: Annotated[str, Field(min_length=1, max_length=16_384)] | None = None
    """postgres: one SELECT to read from, instead of table. It runs in a read-only
    transaction; its columns are matched by name (external_id, email, phone,
    first_name, last_name, company, job_title, updated_at, deleted), and it must
    return cursorColumn."""
    cursor_column: Identifier = "updated_at"
    """postgres: timestamp column that drives incremental reads."""

    _https = field_validator("url")(lambda url: url if url is None else _require_https(url))

    @model_validator(mode="after")
    def _fields_for_type(self) -> Source:
        if self.type in ("csv", "jsonl") and (self.url is None) == (self.path is None):
            raise ValueError(f"a {self.type} source needs exactly one of url or path")
        if self.type == "rest" and self.url is None:
            raise ValueError("a rest source needs url")
        if self.type == "postgres" and self.dsn_secret_ref is None:
            raise ValueError("a postgres source needs dsnSecretRef")
        if self.type == "postgres" and (self.table is None) == (self.query is None):
            raise ValueError("a postgres source needs exactly one of table or query")
        return self


class Destination(Model):
    """Where clean contact records are written."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type != 'postgres' || has(self.dsnSecretRef)",
                "a postgres destination needs dsnSecretRef and table",
                field_path=".dsnSecretRef",
                reason="FieldValueRequired",
            ),
            cel(
                "self.type != 'postgres' || has(self.table)",
                "a postgres destination needs dsnSecretRef and table",
                field_path=".table",
                reason="FieldValueRequired",
            ),
            cel(
                "self.type != 'rest' || has(self.url)",
                "a rest destination needs url",
                field_path=".url",
                reason="FieldValueRequired",
            ),
            cel(
                "self.type != 'jsonl' || has(self.path)",
                "a jsonl destination needs path",
                field_path=".path",
                reason="FieldValueRequired",
            ),
            # On the parent rather than on `table` itself: a rule on an optional
            # field only runs when old and new both have it, which would let an
            # update add or remove the table unchecked.
            cel(
                "has(self.table) == has(oldSelf.table)"
                " && (!has(self.table) || self.table == oldSelf.table)",
                "destination.table is immutable: create a new ContactSync to write elsewhere",
                field_path=".table",
            ),
        )
    )

    type: Literal["postgres", "rest", "jsonl"] = Field(
        json_schema_extra=validations(_immutable("destination.type"))
    )
    """Kind of destination; it decides which other fields apply. Immutable."""
    dsn_secret_ref: SecretKeyRef | None = None
    """postgres: Secret key holding the connection URI."""
    table: Identifier | None = None
    """postgres: table to write. Immutable."""
    tls: Tls = Field(default_factory=Tls)
    """TLS towards the destination."""
    url: HttpUrl | None = Field(default=None, json_schema_extra=_HTTPS_URL)
    """rest: https:// URL records are sent to."""
    auth: HttpAuth | None = None
    """rest: credentials."""
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    """rest: records per request."""
    path: Annotated[str, Field(max_length=4096)] | None = None
    """jsonl: path of the file written, on a mounted volume."""

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
    """When runs start: exactly one of cron or intervalSeconds."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.cron) != has(self.intervalSeconds)",
                "set exactly one of cron or intervalSeconds",
            )
        )
    )

    cron: Annotated[str, Field(max_length=128)] | None = None
    """Cron expression, evaluated in timezone."""
    interval_seconds: Annotated[int, Field(ge=60, le=31 * 86400)] | None = None
    """Seconds between runs, from 60 (a minute) to 2678400 (31 days)."""
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    """IANA time zone of cron."""

    @model_validator(mode="after")
    def _cron_or_interval(self) -> Schedule:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("set exactly one of cron or intervalSeconds")
        return self


class Window(Model):
    """Runs only sync inside [start, end) in `timezone`; end < start wraps midnight."""

    start: ClockTime
    """Start of the window, HH:MM (24-hour clock)."""
    end: ClockTime
    """End of the window, HH:MM (24-hour clock), exclusive."""
    timezone: Annotated[str, Field(max_length=64)] = "UTC"
    """IANA time zone of start and end."""


def _default_encrypted_fields() -> list[EncryptableField]:
    return ["email", "phone", "firstName", "lastName"]


class Encryption(Model):
    """Field-level encryption at rest in the destination."""

    key_secret_ref: SecretRef | None = None
    """Secret holding the keyring; the operator generates <name>-keys when unset."""
    fields: list[EncryptableField] = Field(
        default_factory=_default_encrypted_fields,
        max_length=6,
        json_schema_extra={
            # A set: order carries no meaning, so reordering is not a change.
            "x-kubernetes-list-type": "set",
            **validations(_immutable("encryption.fields")),
        },
    )
    """Contact fields stored encrypted. Immutable: rows would mix plaintext and ciphertext."""

    @field_validator("fields")
    @classmethod
    def _no_repeats(cls, fields: list[EncryptableField]) -> list[EncryptableField]:
        # The API server rejects duplicates in a set-typed list; agree with it.
        if len(set(fields)) != len(fields):
            raise ValueError("must not name a field twice")
        return fields


class Validation(Model):
    """What happens to records that fail validation."""

    on_invalid: Literal["quarantine"] = "quarantine"
    """Invalid records are kept in a quarantine table, never written to the destination."""
    max_reject_ratio: Ratio = 0.05
    """A run fails when more than this share of records (0 to 1) is rejected."""
    default_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$", max_length=2)] = "US"
    """ISO 3166-1 alpha-2 region for phone numbers without a country code."""


class Safety(Model):
    """Guards against a broken source wiping the destination."""

    max_delete_ratio: Ratio = 0.10
    """A full run refuses to delete more than this share (0 to 1) of destination rows."""


class WorkPool(Model):
    """The Prefect work pool runs execute in."""

    name: DnsName | None = None
    """Work pool name; contactsync-<namespace> when unset."""
    concurrency_limit: Annotated[int, Field(ge=1, le=100)] = 1
    """Runs of the pool that may execute at once."""


class PrefectSettings(Model):
    """How the operator deploys the sync to Prefect."""

    work_pool: WorkPool = Field(default_factory=WorkPool)
    """Work pool."""
    image: Annotated[str, Field(max_length=512)] | None = None
    """Container image the flow runs in."""


class ServiceAccountSettings(Model):
    """The sync Job's ServiceAccount."""

    # Keys are checked by the API server when the operator writes the ServiceAccount
    # (CRD schemas cannot constrain map keys); a bad key surfaces in status.
    annotations: Annotated[
        dict[str, Annotated[str, Field(max_length=1024)]], Field(max_length=16)
    ] = Field(default_factory=dict)
    """Passed through to the ServiceAccount, e.g. for workload identity (IAM roles)."""


class ContactSyncSpec(Model):
    """The desired sync."""

    source: Source
    """Where records come from."""
    destination: Destination
    """Where records go."""
    mode: Literal["full", "incremental"] = "incremental"
    """full: read everything and delete what disappeared; incremental: read changes only."""
    schedule: Schedule | None = None
    """When to run; runs only on demand when unset."""
    window: Window | None = None
    """Runs that start outside this daily window are skipped."""
    suspend: bool = False
    """Pause scheduled runs."""
    encryption: Encryption = Field(default_factory=Encryption)
    """Field-level encryption."""
    validation: Validation = Field(default_factory=Validation)
    """Record validation."""
    safety: Safety = Field(default_factory=Safety)
    """Safety limits."""
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    """Prefect deployment settings."""
    service_account: ServiceAccountSettings = Field(default_factory=ServiceAccountSettings)
    """The sync Job's identity: no Kubernetes permissions, no token; annotations only."""


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: DnsName
    namespace: DnsName = "default"
    uid: str | None = None


class ContactSync(Model):
    """A scheduled, encrypted, validated sync of contact records, run by Prefect."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    api_version: Literal["contactsync.dev/v1alpha1"]
    kind: Literal["ContactSync"]
    metadata: ObjectMeta
    spec: ContactSyncSpec
