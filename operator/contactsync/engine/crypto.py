"""Field-level encryption (AES-256-GCM envelopes) and blind indexes.

Envelope, version 1 (all lengths in bytes)::

    0x01 | n (1) | key id (n, ASCII) | nonce (12) | ciphertext (len(plaintext)) | tag (16)

* The nonce is random per value, from the operating system's generator. With
  random 96-bit nonces a key must not encrypt more than about 2**32 values
  (NIST SP 800-38D); rotate well before that.
* The associated data binds the value to where it belongs, so an envelope
  copied to another row, column or table fails to decrypt::

      header (0x01 | n | key id) | u32be len | table | u32be len | column | u32be len | record id

  Each name is UTF-8 with a 4-byte big-endian length prefix, which makes the
  encoding unambiguous for any text (no separator that could occur in a name).
  The header is part of it too, so the version and key id are authenticated.
* GCM hides content, not length: an envelope is 30 + len(key id) bytes longer
  than the UTF-8 plaintext.

Blind index: ``HMAC-SHA256(K_kind, UTF-8 value)`` where ``K_kind`` is derived
from the keyring's blind-index key with HKDF per kind (``blind-index/email``,
``blind-index/phone``, ...), so equal values of different kinds never share a
digest. The full 32 bytes are kept: truncation would save a few bytes per row
at the price of collisions in a lookup index, and it would not hide any more
(a blind index reveals equality by design; its key keeps it from being
brute-forced). Values must be normalised by the caller first.

Errors never contain plaintext, record ids or key material.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
from collections.abc import Collection, Sequence
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contactsync import _native

from .keyring import Keyring

__all__ = [
    "ENVELOPE_VERSION",
    "BlindIndex",
    "CryptoError",
    "DecryptError",
    "FieldCipher",
    "envelope_key_id",
    "reencrypt",
]

ENVELOPE_VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
_KEY_ID = re.compile(rb"[a-z0-9][a-z0-9-]{0,31}")
_AUTHENTICATION_FAILED = (
    "envelope failed authentication: altered, moved to another table, column or record, "
    "or sealed under a different key with the same id"
)


class CryptoError(ValueError):
    """A value could not be encrypted or hashed (e.g. text that is not valid Unicode)."""


class DecryptError(CryptoError):
    """An envelope could not be decrypted. ``index`` is its position in a batch call."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message if index is None else f"value #{index}: {message}")
        self.index = index


def _utf8(text: str, what: str) -> bytes:
    # Raise outside the except block: a UnicodeEncodeError holds the whole string
    # (plaintext or record id) and must not become the new error's __context__.
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    raise CryptoError(f"{what} is not valid Unicode text (lone surrogate)")


def _length_prefixed(text: str, what: str) -> bytes:
    data = _utf8(text, what)
    return len(data).to_bytes(4, "big") + data


@functools.lru_cache(maxsize=256)
def _context(table: str, column: str) -> bytes:
    # Constant per column, so a batch or a hot loop pays for it once.
    return _length_prefixed(table, "table") + _length_prefixed(column, "column")


def _shown_key_id(kid: bytes) -> str:
    return repr(kid.decode("ascii")) if _KEY_ID.fullmatch(kid) else "(malformed)"


def _check_batch(values: Sequence[object], record_ids: Sequence[str]) -> None:
    if len(values) != len(record_ids):
        raise ValueError(f"{len(values)} values but {len(record_ids)} record ids")


def _header(envelope: bytes) -> bytes:
    """The envelope's header (version, key id length, key id), after checking its shape."""
    if len(envelope) < 2 or envelope[0] != ENVELOPE_VERSION:
        raise DecryptError(f"not a version-{ENVELOPE_VERSION} envelope")
    end = 2 + envelope[1]
    if len(envelope) < end + NONCE_BYTES + TAG_BYTES:
        raise DecryptError("envelope is truncated")
    return envelope[:end]


def envelope_key_id(envelope: bytes) -> str:
    """The id of the key an envelope was encrypted with, without decrypting it."""
    header = _header(envelope)
    kid = header[2:]
    if not _KEY_ID.fullmatch(kid):
        raise DecryptError("envelope has a malformed key id")
    return kid.decode("ascii")


class FieldCipher:
    """Encrypts with the keyring's primary key; decrypts with whichever key an envelope names.

    One ``AESGCM`` object per key, built once: construction costs more than
    sealing a short value.
    """

    __slots__ = ("_aeads", "_header", "_primary", "_primary_id", "_primary_key")

    def __init__(self, keyring: Keyring) -> None:
        self._aeads = {
            kid.encode("ascii"): AESGCM(keyring.data_key(kid)) for kid in keyring.key_ids
        }
        self._primary_id = keyring.primary_id
        kid = self._primary_id.encode("ascii")
        self._header = bytes((ENVELOPE_VERSION, len(kid))) + kid
        self._primary = self._aeads[kid]
        self._primary_key = keyring.data_key(self._primary_id)

    @property
    def primary_id(self) -> str:
        return self._primary_id

    def encrypt(self, plaintext: str, *, table: str, column: str, record_id: str) -> bytes:
        """Seal one value for (table, column, record_id) under the primary key."""
        nonce = os.urandom(NONCE_BYTES)
        aad = self._header + _context(table, column) + _length_prefixed(record_id, "record id")
        ciphertext = self._primary.encrypt(nonce, _utf8(plaintext, "plaintext"), aad)
        return self._header + nonce + ciphertext

    def encrypt_many(
        self,
        plaintexts: Sequence[str | None],
        *,
        table: str,
        column: str,
        record_ids: Sequence[str],
    ) -> list[bytes | None]:
        """``encrypt`` for one column of a batch (None, an absent value, stays
        None): the same envelopes, sealed in native
        code (``contactsync._native``) at a sixth of ``encrypt``'s cost per value
        and half that of the bare ``cryptography`` call (benchmarks/crypto.py),
        whose per-call setup outweighs sealing a short value. The tests open its
        envelopes with ``cryptography``.
        """
        _check_batch(plaintexts, record_ids)
        try:
            return _native.seal_many(
                self._primary_key,
                self._header,
                self._header + _context(table, column),
                list(plaintexts),
                list(record_ids),
            )
        except ValueError as exc:  # names the value's index, never its text
            message = str(exc)
        raise CryptoError(f"{message} (plaintext or record id)")

    def decrypt(self, envelope: bytes, *, table: str, column: str, record_id: str) -> str:
        """Open one envelope; ``DecryptError`` if it was altered, moved or its key is unknown."""
        return self._open(envelope, _context(table, column), record_id)

    def decrypt_many(
        self, envelopes: Sequence[bytes], *, table: str, column: str, record_ids: Sequence[str]
    ) -> list[str]:
        """``decrypt`` for one column of a batch; a failure names the value's index."""
        _check_batch(envelopes, record_ids)
        context = _context(table, column)
        plaintexts: list[str] = []
        for index, (envelope, record_id) in enumerate(zip(envelopes, record_ids, strict=True)):
            try:
                plaintexts.append(self._open(envelope, context, record_id))
            except DecryptError as exc:
                raise DecryptError(str(exc), index=index) from None
        return plaintexts

    def is_current(self, envelope: bytes) -> bool:
        """Whether the envelope is already under the primary key (checks the header only)."""
        return envelope.startswith(self._header)

    def _open(self, envelope: bytes, context: bytes, record_id: str) -> str:
        # Fast path first; any failure is re-examined step by step by _diagnose,
        # which raises the precise DecryptError. Every exception caught here is
        # dropped before raising, since a UnicodeDecodeError would carry the plaintext.
        try:
            end = 2 + envelope[1]
            aead = self._aeads.get(envelope[2:end])
            if aead is not None and envelope[0] == ENVELOPE_VERSION:
                rid = record_id.encode("utf-8")
                aad = envelope[:end] + context + len(rid).to_bytes(4, "big") + rid
                nonce = envelope[end : end + NONCE_BYTES]
                return aead.decrypt(nonce, envelope[end + NONCE_BYTES :], aad).decode("utf-8")
        except (IndexError, ValueError, InvalidTag):
            pass
        _diagnose(envelope, self._aeads.keys(), record_id)

    def __repr__(self) -> str:
        return f"FieldCipher(primary={self._primary_id!r}, keys={len(self._aeads)})"


def _diagnose(envelope: bytes, key_ids: Collection[bytes], record_id: str) -> NoReturn:
    """Raise the DecryptError that explains why the fast path of ``_open`` failed."""
    header = _header(envelope)
    if header[2:] not in key_ids:
        raise DecryptError(f"unknown key id {_shown_key_id(header[2:])}")
    _utf8(record_id, "record id")
    # What is left is a failed tag check, or output that is not UTF-8, which only
    # bytes sealed by someone else holding our key can produce: tampering either way.
    raise DecryptError(_AUTHENTICATION_FAILED)


def reencrypt(
    envelope: bytes, *, table: str, column: str, record_id: str, target: FieldCipher
) -> bytes:
    """Re-encrypt under ``target``'s primary key, for key rotation.

    ``target`` is a cipher over the new keyring, which still holds the old keys
    (``Keyring.rotated()`` keeps them). An envelope already under the primary
    is returned as is, without decrypting, so ``new is envelope`` tells the
    caller there is nothing to write back.
    """
    if target.is_current(envelope):
        return envelope
    plaintext = target.decrypt(envelope, table=table, column=column, record_id=record_id)
    return target.encrypt(plaintext, table=table, column=column, record_id=record_id)


class BlindIndex:
    """Deterministic keyed digests of normalised values, for equality lookups."""

    __slots__ = ("_keyring", "_keys")

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._keys: dict[str, bytes] = {}

    @property
    def key_id(self) -> str:
        """The blind-index key id: store it beside indexes to know which key made them."""
        return self._keyring.blind_index_id

    def digest(self, kind: str, normalized_value: str) -> bytes:
        """32-byte HMAC-SHA256 of the value under the key for ``kind``."""
        key = self._keys.get(kind) or self._derive(kind)
        return hmac.digest(key, _utf8(normalized_value, "value"), "sha256")

    def digest_many(self, kind: str, normalized_values: Sequence[str | None]) -> list[bytes | None]:
        """``digest`` for many values of one kind (None, an absent value, stays
        None), in native code with the key schedule done once:
        ``hmac.digest`` redoes it for every value, which costs more than
        hashing a short value.
        """
        key = self._keys.get(kind) or self._derive(kind)
        try:
            return _native.hmac_sha256_many(key, list(normalized_values))
        except ValueError as exc:  # names the value's index, never its text
            message = str(exc)
        raise CryptoError(message)

    def _derive(self, kind: str) -> bytes:
        if not _KIND.fullmatch(kind):
            raise CryptoError("kind must be 1-32 characters [a-z0-9_], starting with a letter")
        key = self._keys[kind] = self._keyring.derive_key(f"blind-index/{kind}")
        return key

    def __repr__(self) -> str:
        return f"BlindIndex(key_id={self.key_id!r})"
