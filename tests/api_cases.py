"""ContactSync manifests that both validation layers must agree on.

The unit tests run every case through pydantic, the integration tests through
the real API server with the generated CRD; each invalid case names the field
and the key part of the message both layers must report.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).parents[1] / "examples" / "contactsync.yaml"

# A change that removes a key rather than setting it.
DELETE = object()


def example() -> dict[str, Any]:
    """The committed example manifest, freshly parsed."""
    manifest: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return manifest


def changed(manifest: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of `manifest` with dotted paths set to values (or DELETEd)."""
    result = copy.deepcopy(manifest)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = result
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return result


@dataclass(frozen=True)
class Case:
    id: str
    changes: dict[str, Any] = field(default_factory=dict)
    # pydantic rewrites some values (a URL's scheme to lower case); the server
    # stores them as sent, so the stored object is not pydantic's dump.
    rewritten: bool = False

    def manifest(self) -> dict[str, Any]:
        return changed(example(), self.changes)


@dataclass(frozen=True)
class Invalid(Case):
    field: str = ""  # the path the API server names, e.g. spec.source.url
    server: str = ""  # key part of the API server's message
    pydantic: str = ""  # key part of pydantic's message


SECRET = {"name": "db", "key": "dsn"}
CSV_FILE = {"type": "csv", "path": "/data/contacts.csv"}
JSONL_OUT = {"type": "jsonl", "path": "/data/out.jsonl"}
API_KEY = {"secretRef": {"name": "crm-key", "key": "token"}}

VALID = [
    Case("example"),
    Case("csv file to jsonl file", {"spec.source": CSV_FILE, "spec.destination": JSONL_OUT}),
    Case("jsonl over https", {"spec.source": {"type": "jsonl", "url": "https://files.example/c"}}),
    Case(
        "postgres to rest with an api key",
        {
            "spec.source": {"type": "postgres", "dsnSecretRef": SECRET, "table": "people"},
            "spec.destination": {
                "type": "rest",
                "url": "https://crm.example/import",
                "auth": {"apiKey": API_KEY},
            },
        },
    ),
    Case("interval schedule", {"spec.schedule": {"intervalSeconds": 3600}}),
    Case(
        "no schedule, window or settings", {"spec": {"source": CSV_FILE, "destination": JSONL_OUT}}
    ),
    Case("window across midnight", {"spec.window": {"start": "23:30", "end": "00:30"}}),
    Case("encrypt nothing", {"spec.encryption.fields": []}),
    Case("upper-case https scheme", {"spec.source.url": "HTTPS://crm.example.com/api"}, True),
    Case(
        "ratios at their bounds",
        {"spec.validation.maxRejectRatio": 1, "spec.safety.maxDeleteRatio": 0},
    ),
]

INVALID = [
    Invalid(
        "http source url",
        {"spec.source.url": "http://crm.example.com/api/v2/contacts"},
        field="spec.source.url",
        server="must be an https:// URL",
        pydantic="must be an https:// URL",
    ),
    Invalid(
        "http token url",
        {"spec.source.auth.oauth2.tokenUrl": "http://login.example.com/oauth2/token"},
        field="spec.source.auth.oauth2.tokenUrl",
        server="must be an https:// URL",
        pydantic="must be an https:// URL",
    ),
    Invalid(
        "http destination url",
        {"spec.destination": {"type": "rest", "url": "http://crm.example/import"}},
        field="spec.destination.url",
        server="must be an https:// URL",
        pydantic="must be an https:// URL",
    ),
    Invalid(
        "url without a host",
        {"spec.source.url": "https://"},
        field="spec.source.url",
        server="must be an https:// URL",
        pydantic="empty host",
    ),
    Invalid(
        "both cron and interval",
        {"spec.schedule.intervalSeconds": 900},
        field="spec.schedule",
        server="set exactly one of cron or intervalSeconds",
        pydantic="set exactly one of cron or intervalSeconds",
    ),
    Invalid(
        "neither cron nor interval",
        {"spec.schedule.cron": DELETE},
        field="spec.schedule",
        server="set exactly one of cron or intervalSeconds",
        pydantic="set exactly one of cron or intervalSeconds",
    ),
    Invalid(
        "interval under a minute",
        {"spec.schedule": {"intervalSeconds": 30}},
        field="spec.schedule.intervalSeconds",
        server="greater than or equal to 60",
        pydantic="greater than or equal to 60",
    ),
    Invalid(
        "window hour 25",
        {"spec.window.start": "25:00"},
        field="spec.window.start",
        server="should match",
        pydantic="should match pattern",
    ),
    Invalid(
        "window without leading zero",
        {"spec.window.end": "9:00"},
        field="spec.window.end",
        server="should match",
        pydantic="should match pattern",
    ),
    Invalid(
        "reject ratio above 1",
        {"spec.validation.maxRejectRatio": 1.5},
        field="spec.validation.maxRejectRatio",
        server="less than or equal to 1",
        pydantic="less than or equal to 1",
    ),
    Invalid(
        "negative delete ratio",
        {"spec.safety.maxDeleteRatio": -0.1},
        field="spec.safety.maxDeleteRatio",
        server="greater than or equal to 0",
        pydantic="greater than or equal to 0",
    ),
    Invalid(
        "unknown source type",
        {"spec.source.type": "ftp"},
        field="spec.source.type",
        server='Unsupported value: "ftp"',
        pydantic="Input should be 'csv', 'jsonl', 'rest' or 'postgres'",
    ),
    Invalid(
        "unknown mode",
        {"spec.mode": "sometimes"},
        field="spec.mode",
        server='Unsupported value: "sometimes"',
        pydantic="Input should be 'full' or 'incremental'",
    ),
    Invalid(
        "rest source without url",
        {"spec.source.url": DELETE},
        field="spec.source.url",
        server="Required value: a rest source needs url",
        pydantic="a rest source needs url",
    ),
    Invalid(
        "csv source with url and path",
        {"spec.source": {**CSV_FILE, "url": "https://files.example/c.csv"}},
        field="spec.source",
        server="a csv source needs exactly one of url or path",
        pydantic="a csv source needs exactly one of url or path",
    ),
    Invalid(
        "jsonl source with neither url nor path",
        {"spec.source": {"type": "jsonl"}},
        field="spec.source",
        server="a jsonl source needs exactly one of url or path",
        pydantic="a jsonl source needs exactly one of url or path",
    ),
    Invalid(
        "postgres source without table or query",
        {"spec.source": {"type": "postgres", "dsnSecretRef": SECRET}},
        field="spec.source.table",
        server="a postgres source needs exactly one of table or query",
        pydantic="a postgres source needs exactly one of table or query",
    ),
    Invalid(
        "postgres source with both table and query",
        {
            "spec.source": {
                "type": "postgres",
                "dsnSecretRef": SECRET,
                "table": "crm",
                "query": "SELECT * FROM crm",
            }
        },
        field="spec.source.table",
        server="a postgres source needs exactly one of table or query",
        pydantic="a postgres source needs exactly one of table or query",
    ),
    Invalid(
        "postgres source without dsn",
        {"spec.source": {"type": "postgres", "query": "SELECT * FROM crm"}},
        field="spec.source.dsnSecretRef",
        server="Required value: a postgres source needs dsnSecretRef",
        pydantic="a postgres source needs dsnSecretRef",
    ),
    Invalid(
        "postgres destination without table",
        {"spec.destination.table": DELETE},
        field="spec.destination.table",
        server="Required value: a postgres destination needs dsnSecretRef and table",
        pydantic="a postgres destination needs dsnSecretRef and table",
    ),
    Invalid(
        "postgres destination without dsn",
        {"spec.destination.dsnSecretRef": DELETE},
        field="spec.destination.dsnSecretRef",
        server="Required value: a postgres destination needs dsnSecretRef and table",
        pydantic="a postgres destination needs dsnSecretRef and table",
    ),
    Invalid(
        "jsonl destination without path",
        {"spec.destination": {"type": "jsonl"}},
        field="spec.destination.path",
        server="Required value: a jsonl destination needs path",
        pydantic="a jsonl destination needs path",
    ),
    Invalid(
        "oauth2 and api key both",
        {"spec.source.auth.apiKey": API_KEY},
        field="spec.source.auth",
        server="set exactly one of oauth2 or apiKey",
        pydantic="set exactly one of oauth2 or apiKey",
    ),
    Invalid(
        "auth with neither oauth2 nor api key",
        {"spec.source.auth": {}},
        field="spec.source.auth",
        server="set exactly one of oauth2 or apiKey",
        pydantic="set exactly one of oauth2 or apiKey",
    ),
    Invalid(
        "concurrency limit 0",
        {"spec.prefect.workPool.concurrencyLimit": 0},
        field="spec.prefect.workPool.concurrencyLimit",
        server="greater than or equal to 1",
        pydantic="greater than or equal to 1",
    ),
    Invalid(
        "encrypting an unknown field",
        {"spec.encryption.fields": ["email", "ssn"]},
        field="spec.encryption.fields[1]",
        server='Unsupported value: "ssn"',
        pydantic="Input should be 'email', 'phone'",
    ),
    Invalid(
        "encrypting a field twice",
        {"spec.encryption.fields": ["email", "email"]},
        field="spec.encryption.fields[1]",
        server='Duplicate value: "email"',
        pydantic="must not name a field twice",
    ),
    Invalid(
        "three-letter region",
        {"spec.validation.defaultRegion": "usa"},
        field="spec.validation.defaultRegion",
        server="Too long: may not be more than 2",
        pydantic="at most 2 characters",
    ),
    Invalid(
        "lower-case region",
        {"spec.validation.defaultRegion": "us"},
        field="spec.validation.defaultRegion",
        server="should match",
        pydantic="should match pattern",
    ),
    Invalid(
        "name longer than a DNS label",
        {"metadata.name": "c" * 64},
        field="metadata.name",
        server="Too long: may not be more than 63",
        pydantic="at most 63 characters",
    ),
    Invalid(
        "table name with a quote",
        {"spec.destination.table": 'crm"; drop table x; --'},
        field="spec.destination.table",
        server="should match '^[a-z_][a-z0-9_]*$'",
        pydantic="should match pattern '^[a-z_][a-z0-9_]*$'",
    ),
    Invalid(
        "table name in upper case",
        {"spec.destination.table": "Contacts"},
        field="spec.destination.table",
        server="should match '^[a-z_][a-z0-9_]*$'",
        pydantic="should match pattern '^[a-z_][a-z0-9_]*$'",
    ),
    Invalid(
        "secret name that is no DNS label",
        {"spec.destination.dsnSecretRef.name": "Contacts_DB"},
        field="spec.destination.dsnSecretRef.name",
        server="should match",
        pydantic="should match pattern",
    ),
    Invalid(
        "postgres ssl mode disable",
        {"spec.destination.tls.sslMode": "disable"},
        field="spec.destination.tls.sslMode",
        server='Unsupported value: "disable"',
        pydantic="Input should be 'verify-full', 'verify-ca' or 'require'",
    ),
    Invalid(
        "tls 1.1",
        {"spec.source.tls.minVersion": "1.1"},
        field="spec.source.tls.minVersion",
        server='Unsupported value: "1.1"',
        pydantic="Input should be '1.2' or '1.3'",
    ),
    Invalid(
        "too many scopes",
        {"spec.source.auth.oauth2.scopes": [f"s{n}" for n in range(17)]},
        field="spec.source.auth.oauth2.scopes",
        server="must have at most 16 items",
        pydantic="at most 16 items",
    ),
    Invalid(
        "page size 0",
        {"spec.source.pagination.pageSize": 0},
        field="spec.source.pagination.pageSize",
        server="greater than or equal to 1",
        pydantic="greater than or equal to 1",
    ),
    Invalid(
        "missing destination",
        {"spec.destination": DELETE},
        field="spec.destination",
        server="Required value",
        pydantic="Field required",
    ),
]
