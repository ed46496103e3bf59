"""The keyring: data-encryption keys for field encryption and the blind-index key.

One format, used everywhere (a Kubernetes Secret key, a file, an environment
variable)::

    {
      "version": 1,
      "primary": "k2-5e0c1a9b",
      "keys": {"k1-0f3a77c2": "<base64 of 32 bytes>", "k2-5e0c1a9b": "<base64 of 32 bytes>"},
      "blindIndexKey": {"id": "b1-9d41e0aa", "key": "<base64 of 32 bytes>"}
    }

* ``keys`` holds AES-256 data-encryption keys by key id. ``primary`` names the
  one new values are encrypted with; the others stay so that older values still
  decrypt until they are re-encrypted.
* ``blindIndexKey`` is a separate 32-byte root key for keyed hashing (blind
  indexes, audit record digests). It is never used directly: each purpose gets
  its own key derived from it with HKDF-SHA256 (:meth:`Keyring.derive_key`).
* Key ids are 1-32 characters of ``[a-z0-9-]`` starting with a letter or digit
  (``k<N>-<8 hex>`` and ``b<N>-<8 hex>`` when generated). They are random, not
  derived from the keys, so they are safe to log and to store in every envelope.
* Base64 is the standard alphabet with padding; anything else is rejected.

In Kubernetes the keyring is a Secret with the single key ``keyring.json``,
mounted as a directory (:meth:`Keyring.from_file` accepts the directory or the
file) or exposed as the environment variable ``CONTACTSYNC_KEYRING``
(:meth:`Keyring.from_env`).

Error messages name the field and the key id, never key material: an invalid
key id or an unknown field name is not echoed either, since a misplaced key
could sit where a name is expected.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["KEYRING_ENV_VAR", "KEYRING_FILE_NAME", "KEY_BYTES", "Keyring", "KeyringError"]

KEY_BYTES = 32
KEYRING_FILE_NAME = "keyring.json"
KEYRING_ENV_VAR = "CONTACTSYNC_KEYRING"
FORMAT_VERSION = 1

# Short and without '+', '/' or '=' so that no base64 key (44 characters) can
# pass for a key id and be echoed in an error message or written to a log.
_KEY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_FIELD_NAME = re.compile(r"[A-Za-z]{1,32}")
_NUMBERED_ID = re.compile(r"k([0-9]+)-")
# A keyring is a few hundred bytes; a cap keeps a wrong mount from being read whole.
_MAX_FILE_BYTES = 1 << 20
_HKDF_INFO_PREFIX = b"contactsync/v1/"


# The Secret key (and file name) a keyring is stored under.
KEYRING_KEY = "keyring.json"


class KeyringError(ValueError):
    """The keyring is missing or invalid. The message never contains key material."""


def _fail(message: str) -> NoReturn:
    raise KeyringError(message)


def _is_key_id(value: object) -> bool:
    return isinstance(value, str) and _KEY_ID.fullmatch(value) is not None


def _shown_name(name: str) -> str:
    return repr(name) if _FIELD_NAME.fullmatch(name) else "(a name not shown)"


def _new_key_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def _decode_key(value: object, where: str) -> bytes:
    problem = f"{where}: must be {KEY_BYTES} bytes of base64"
    if not isinstance(value, str):
        _fail(problem)
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        _fail(problem)
    return key


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal names: two different keys under one
    # id would silently make half the data undecryptable.
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            shown = repr(name) if _is_key_id(name) else _shown_name(name)
            _fail(f"duplicate name {shown}")
        result[name] = value
    return result


def _object(value: object, where: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        _fail(f"{where}: must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        _fail(f"{where}: unknown field {_shown_name(unknown[0])}")
    missing = sorted(allowed - set(value))
    if missing:
        _fail(f"{where}: missing field {missing[0]!r}")
    return value


def _key_id(value: object, where: str) -> str:
    if isinstance(value, str) and _KEY_ID.fullmatch(value):
        return value
    _fail(f"{where}: must be a key id of 1-32 characters [a-z0-9-]")


def _parse_json(text: str | bytes) -> object:
    # The error is raised after the except block on purpose: a JSONDecodeError or
    # UnicodeDecodeError carries the whole document, keys included, and would
    # otherwise stay reachable as the new exception's __context__.
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON (line {exc.lineno}, column {exc.colno})"
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    _fail(problem)


class Keyring:
    """Immutable set of data-encryption keys (one primary) plus the blind-index key.

    ``repr``/``str`` show key ids only, and pickling is refused so that a keyring
    passed to a task runner cannot end up in a persisted result or a log.
    """

    __slots__ = ("_blind_index_id", "_blind_index_key", "_keys", "_primary_id")

    def __init__(
        self,
        *,
        primary_id: str,
        keys: Mapping[str, bytes],
        blind_index_id: str,
        blind_index_key: bytes,
    ) -> None:
        if not keys:
            _fail("keys: at least one data key is required")
        for kid, key in keys.items():
            _key_id(kid, "keys")
            if len(key) != KEY_BYTES:
                _fail(f"keys.{kid}: must be {KEY_BYTES} bytes")
        _key_id(primary_id, "primary")
        if primary_id not in keys:
            _fail(f"primary: {primary_id!r} is not one of the keys")
        _key_id(blind_index_id, "blindIndexKey.id")
        if blind_index_id in keys:
            _fail(f"blindIndexKey.id: {blind_index_id!r} is also a data key id")
        if len(blind_index_key) != KEY_BYTES:
            _fail(f"blindIndexKey.key: must be {KEY_BYTES} bytes")
        # One key for two algorithms would void the separation the format promises.
        if any(secrets.compare_digest(blind_index_key, key) for key in keys.values()):
            _fail("blindIndexKey.key: must differ from every data key")
        self._keys = {kid: bytes(keys[kid]) for kid in sorted(keys)}
        self._primary_id = primary_id
        self._blind_index_id = blind_index_id
        self._blind_index_key = bytes(blind_index_key)

    # --- construction -----------------------------------------------------

    @classmethod
    def generate(cls) -> Keyring:
        """A fresh keyring: one data key ``k1-…`` (primary) and a blind-index key ``b1-…``."""
        kid = _new_key_id("k1")
        return cls(
            primary_id=kid,
            keys={kid: secrets.token_bytes(KEY_BYTES)},
            blind_index_id=_new_key_id("b1"),
            blind_index_key=secrets.token_bytes(KEY_BYTES),
        )

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "keyring") -> Keyring:
        """Parse the documented format. ``source`` prefixes error messages."""
        try:
            return cls._from_document(_parse_json(text))
        except KeyringError as exc:
            raise KeyringError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """Load from ``keyring.json``, or from a directory holding it (a mounted Secret)."""
        file = Path(path)
        if file.is_dir():
            file = file / KEYRING_FILE_NAME
        try:
            with file.open("rb") as stream:
                data = stream.read(_MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise KeyringError(f"{file}: cannot read keyring: {exc.strerror}") from None
        if len(data) > _MAX_FILE_BYTES:
            _fail(f"{file}: larger than {_MAX_FILE_BYTES} bytes; not a keyring")
        return cls.from_json(data, source=str(file))

    @classmethod
    def from_env(
        cls, var: str = KEYRING_ENV_VAR, *, environ: Mapping[str, str] | None = None
    ) -> Keyring:
        """Load from an environment variable holding the JSON document."""
        env = os.environ if environ is None else environ
        text = env.get(var)
        if not text:
            _fail(f"environment variable {var} is not set or empty")
        return cls.from_json(text, source=f"${var}")

    @classmethod
    def _from_document(cls, document: object) -> Keyring:
        top = _object(
            document, "top level", frozenset({"version", "primary", "keys", "blindIndexKey"})
        )
        version = top["version"]
        if type(version) is not int or version != FORMAT_VERSION:
            _fail(f"version: must be {FORMAT_VERSION}")
        raw_keys = top["keys"]
        if not isinstance(raw_keys, dict) or not raw_keys:
            _fail("keys: must be a non-empty JSON object of key id to base64 key")
        keys: dict[str, bytes] = {}
        for kid, value in raw_keys.items():
            _key_id(kid, "keys")
            keys[kid] = _decode_key(value, f"keys.{kid}")
        blind = _object(top["blindIndexKey"], "blindIndexKey", frozenset({"id", "key"}))
        return cls(
            primary_id=_key_id(top["primary"], "primary"),
            keys=keys,
            blind_index_id=_key_id(blind["id"], "blindIndexKey.id"),
            blind_index_key=_decode_key(blind["key"], "blindIndexKey.key"),
        )

    # --- use -----------------------------------------------------------------

    @property
    def primary_id(self) -> str:
        return self._primary_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """All data key ids, sorted."""
        return tuple(self._keys)

    @property
    def blind_index_id(self) -> str:
        return self._blind_index_id

    def data_key(self, key_id: str) -> bytes:
        """The raw AES-256 key for ``key_id``; for building ciphers, never for output."""
        try:
            return self._keys[key_id]
        except KeyError:
            shown = repr(key_id) if _is_key_id(key_id) else "(malformed)"
            raise KeyringError(f"unknown data key id {shown}") from None

    def derive_key(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose, derived from the blind-index key (HKDF-SHA256).

        Distinct purposes give independent keys, so a blind index for one kind
        of value and the audit digest never share a key.
        """
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=KEY_BYTES,
            salt=None,
            info=_HKDF_INFO_PREFIX + purpose.encode("utf-8"),
        )
        return hkdf.derive(self._blind_index_key)

    def rotated(self) -> Keyring:
        """A new keyring whose primary is a fresh key; every existing key is kept.

        The blind-index key is not rotated: doing so means recomputing every
        stored index, which is a different operation.
        """
        numbers = [int(m.group(1)) for kid in self._keys if (m := _NUMBERED_ID.match(kid))]
        prefix = f"k{max(numbers, default=len(self._keys)) + 1}"
        kid = _new_key_id(prefix)
        while kid in self._keys or kid == self._blind_index_id:
            kid = _new_key_id(prefix)
        return Keyring(
            primary_id=kid,
            keys={**self._keys, kid: secrets.token_bytes(KEY_BYTES)},
            blind_index_id=self._blind_index_id,
            blind_index_key=self._blind_index_key,
        )

    def to_json(self) -> str:
        """The documented format, with key material: write it only into a Secret."""
        document = {
            "version": FORMAT_VERSION,
            "primary": self._primary_id,
            "keys": {kid: _encode_key(key) for kid, key in self._keys.items()},
            "blindIndexKey": {
                "id": self._blind_index_id,
                "key": _encode_key(self._blind_index_key),
            },
        }
        return json.dumps(document, indent=2, sort_keys=True) + "\n"

    def __repr__(self) -> str:
        return (
            f"Keyring(primary={self._primary_id!r}, keys={list(self._keys)!r}, "
            f"blind_index={self._blind_index_id!r})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Keyring cannot be pickled or copied: key material stays in memory")
