"""The hot path: one batch of raw records in, rows ready for the destination out.

Validation, normalisation, encryption, blind indexes and the content digest
all happen here, in worker processes, so the parent only reads the source and
streams bytes to the destination. Nothing here does I/O or logs: the output is
counts, reason codes and ciphertext.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from .audit import records_digest, records_digest_key
from .crypto import BlindIndex, FieldCipher
from .keyring import Keyring
from .records import Contact, validate_record
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


@dataclass(slots=True)
class PreparedRow:
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
    rows: list[PreparedRow] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    max_updated_at: datetime | None = None
    ids_digest: str = ""  # keyed digest of the ids of the valid records, for the audit log


class Preparer:
    def __init__(self, keyring: Keyring, settings: PrepareSettings) -> None:
        self.settings = settings
        self.cipher = FieldCipher(keyring)
        self.index = BlindIndex(keyring)
        self._digest_key = records_digest_key(keyring)
        self._encrypted = [
            (name, column) for name, column in COLUMNS.items() if name in settings.encrypted_fields
        ]
        self._plain = [
            (name, column)
            for name, column in COLUMNS.items()
            if name not in settings.encrypted_fields
        ]

    def prepare(self, batch: list[RawRecord]) -> Prepared:
        out = Prepared()
        for raw in batch:
            if raw.error is not None:
                self._reject(out, raw, [raw.error])
                continue
            result = validate_record(raw.fields, default_region=self.settings.default_region)
            if isinstance(result, Contact):
                out.rows.append(self._row(result, raw.position))
                if out.max_updated_at is None or result.updated_at > out.max_updated_at:
                    out.max_updated_at = result.updated_at
            else:
                self._reject(out, raw, [str(reason) for reason in result])
        out.ids_digest = records_digest(self._digest_key, (row.external_id for row in out.rows))
        return out

    def _row(self, contact: Contact, position: int) -> PreparedRow:
        plain = {
            "email": contact.email,
            "phone": contact.phone,
            "firstName": contact.first_name,
            "lastName": contact.last_name,
            "company": contact.company,
            "jobTitle": contact.job_title,
        }
        values: dict[str, str | bytes | None] = {}
        table, record_id = self.settings.table, contact.external_id
        for name, column in self._encrypted:
            value = plain[name]
            values[column] = (
                None
                if value is None
                else self.cipher.encrypt(value, table=table, column=column, record_id=record_id)
            )
        for name, column in self._plain:
            values[column] = plain[name]
        return PreparedRow(
            external_id=contact.external_id,
            values=values,
            # Matching ignores the case of the local part, which the stored value keeps.
            email_bidx=None
            if contact.email is None
            else self.index.digest("email", contact.email.lower()),
            phone_bidx=None if contact.phone is None else self.index.digest("phone", contact.phone),
            attributes=dict(contact.attributes),
            updated_at=contact.updated_at,
            deleted=contact.deleted,
            digest=self.index.digest("content", _canonical(contact)),
            position=position,
        )

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


def _canonical(contact: Contact) -> str:
    """Everything that makes a contact's content; not its timestamp."""
    return json.dumps(
        [
            contact.email,
            contact.phone,
            contact.first_name,
            contact.last_name,
            contact.company,
            contact.job_title,
            contact.deleted,
            sorted(contact.attributes),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
