"""The hot path: one batch of raw records in, rows ready for the destination out.

Validation, normalisation, encryption, blind indexes and the content digest
all happen here, in worker processes, so the parent only reads the source and
streams bytes to the destination. Nothing here does I/O or logs: the output is
counts, reason codes and ciphertext.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from contactsync import _native

from .audit import records_digest, records_digest_key
from .crypto import BlindIndex, FieldCipher
from .keyring import Keyring
from .records import Contact, validate_records
from .sources import RawRecord

# ContactSync field name -> destination column name.
COLUMNS = {
    "email": "email",
    "phone": "phone",
    "firstName": "first_name",
    "lastName": "last_name",
    "company": "company",
    "jobTitle": "job_title",
}
MAX_ID_LENGTH = 128


@dataclass(frozen=True)
class PrepareSettings:
    table: str
    encrypted_fields: frozenset[str]  # ContactSync field names
    default_region: str
    run_id: str


class PreparedRow(NamedTuple):
    """One valid contact as destination values: ciphertext for encrypted fields."""

    external_id: str
    values: dict[str, str | bytes | None]  # column -> plaintext or envelope
    email_bidx: bytes | None
    phone_bidx: bytes | None
    attributes: dict[str, str]
    updated_at: datetime
    deleted: bool
    digest: bytes
    position: int


@dataclass(slots=True)
class Rejected:
    position: int
    reasons: list[str]
    envelope: bytes  # the raw record, encrypted; never kept or shown in clear
    # The source id when one was readable: a full run must not delete the
    # stored row of a record that was merely rejected this time.
    external_id: str | None


@dataclass(slots=True)
class Prepared:
    """A prepared batch. Valid rows are kept by column, the way they are built
    (a batch call per encrypted column) and encoded: an object per row would
    cost more than the rest of building it."""

    external_ids: list[str] = field(default_factory=list)
    values: dict[str, Sequence[str | bytes | None]] = field(default_factory=dict)  # every column
    email_bidx: list[bytes | None] = field(default_factory=list)
    phone_bidx: list[bytes | None] = field(default_factory=list)
    attributes: list[dict[str, str]] = field(default_factory=list)
    updated_at: list[datetime] = field(default_factory=list)
    deleted: list[bool] = field(default_factory=list)
    digests: list[bytes] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    max_updated_at: datetime | None = None
    ids_digest: str = ""  # keyed digest of the ids of the valid records, for the audit log

    @property
    def valid(self) -> int:
        return len(self.external_ids)

    def rows(self) -> Iterator[PreparedRow]:
        values = self.values
        for i, external_id in enumerate(self.external_ids):
            yield PreparedRow(
                external_id,
                {column: values[column][i] for column in COLUMNS.values()},
                self.email_bidx[i],
                self.phone_bidx[i],
                self.attributes[i],
                self.updated_at[i],
                self.deleted[i],
                self.digests[i],
                self.positions[i],
            )

    @classmethod
    def of(cls, rows: list[PreparedRow]) -> Prepared:
        """A batch of the given rows (and no rejects)."""
        return cls(
            external_ids=[row.external_id for row in rows],
            values={c: [row.values.get(c) for row in rows] for c in COLUMNS.values()},
            email_bidx=[row.email_bidx for row in rows],
            phone_bidx=[row.phone_bidx for row in rows],
            attributes=[row.attributes for row in rows],
            updated_at=[row.updated_at for row in rows],
            deleted=[row.deleted for row in rows],
            digests=[row.digest for row in rows],
            positions=[row.position for row in rows],
        )


class Preparer:
    def __init__(self, keyring: Keyring, settings: PrepareSettings) -> None:
        self.settings = settings
        self.cipher = FieldCipher(keyring)
        self.index = BlindIndex(keyring)
        self._digest_key = records_digest_key(keyring)
        # Change detection only needs a keyed PRF over the content; keyed BLAKE2b is one
        # and costs a fraction of HMAC-SHA256 (blind indexes stay HMAC-SHA256).
        self._content_key = keyring.derive_key("content-digest")
        self._encrypted = [
            (name, column) for name, column in COLUMNS.items() if name in settings.encrypted_fields
        ]
        self._plain = [
            (name, column)
            for name, column in COLUMNS.items()
            if name not in settings.encrypted_fields
        ]

    def prepare(self, batch: Sequence[RawRecord]) -> Prepared:
        out = Prepared()
        contacts: list[tuple[Contact, int]] = []
        readable = [raw.fields for raw in batch if raw.error is None]
        results = iter(validate_records(readable, default_region=self.settings.default_region))
        for raw in batch:
            if raw.error is not None:
                self._reject(out, raw, [raw.error])
                continue
            result = next(results)
            if isinstance(result, Contact):
                contacts.append((result, raw.position))
                if out.max_updated_at is None or result.updated_at > out.max_updated_at:
                    out.max_updated_at = result.updated_at
            else:
                self._reject(out, raw, [str(reason) for reason in result])
        self._columns(out, contacts)
        out.ids_digest = records_digest(self._digest_key, out.external_ids)
        return out

    def _columns(self, out: Prepared, contacts: list[tuple[Contact, int]]) -> None:
        """Encrypt and index a batch column by column, a batch call each."""
        found = [contact for contact, _ in contacts]
        # One transpose in C instead of a loop per field: fields[i] is Contact
        # field i (an empty tuple each when every record was rejected).
        fields: list[tuple[Any, ...]] = list(zip(*found, strict=True))
        fields = fields or [()] * len(Contact._fields)
        ids = out.external_ids = list(fields[0])
        for name, column in self._encrypted:
            out.values[column] = self.cipher.encrypt_many(
                list(fields[_FIELD[name]]),
                table=self.settings.table,
                column=column,
                record_ids=ids,
            )
        for name, column in self._plain:
            out.values[column] = list(fields[_FIELD[name]])
        # Matching ignores the case of the local part, which the stored value keeps.
        emails = [email and email.lower() for email in fields[_FIELD["email"]]]
        out.email_bidx = self.index.digest_many("email", emails)
        out.phone_bidx = self.index.digest_many("phone", list(fields[_FIELD["phone"]]))
        out.updated_at = list(fields[_UPDATED_AT])
        out.deleted = list(fields[_DELETED])
        out.attributes = [dict(attributes) for attributes in fields[_ATTRIBUTES]]
        out.digests = _native.content_digests(self._content_key, found)
        out.positions = [position for _, position in contacts]

    def _reject(self, out: Prepared, raw: RawRecord, reasons: list[str]) -> None:
        out.reasons.update(reasons)
        document = json.dumps(raw.fields, default=str, ensure_ascii=False, sort_keys=True)
        envelope = self.cipher.encrypt(
            document,
            table=f"{self.settings.table}_quarantine",
            column="record",
            record_id=f"{self.settings.run_id}:{raw.position}",
        )
        source_id = raw.fields.get("externalId")
        if not isinstance(source_id, str) or not 0 < len(source_id) <= MAX_ID_LENGTH:
            source_id = None
        out.rejected.append(Rejected(raw.position, reasons, envelope, source_id))


def content_digest_by_python(key: bytes, contact: Contact) -> bytes:
    """The reference for ``_native.content_digests``: keyed BLAKE2b-128 of the
    contact's content (not its timestamp), written unambiguously: cleaned text
    holds no control characters, so the separators U+001E and U+001F cannot
    occur in it."""
    values = (
        contact.email,
        contact.phone,
        contact.first_name,
        contact.last_name,
        contact.company,
        contact.job_title,
    )
    parts = ["\x1e" if value is None else value for value in values]
    parts.append("1" if contact.deleted else "0")
    parts.extend(f"{name}\x1e{value}" for name, value in contact.attributes)
    return hashlib.blake2b("\x1f".join(parts).encode(), key=key, digest_size=16).digest()


# ContactSync field name -> index in a Contact (whose fields are named as the columns).
_FIELD: dict[str, int] = {name: Contact._fields.index(column) for name, column in COLUMNS.items()}
_UPDATED_AT = Contact._fields.index("updated_at")
_DELETED = Contact._fields.index("deleted")
_ATTRIBUTES = Contact._fields.index("attributes")
