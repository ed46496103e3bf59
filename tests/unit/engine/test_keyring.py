"""Keyring: the format, its validation, rotation, and that key material never shows."""

from __future__ import annotations

import base64
import copy
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from contactsync.engine.keyring import KEY_BYTES, Keyring, KeyringError

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
KEY_BI = bytes(range(64, 96))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def document(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": 1,
        "primary": "k2-bbbbbbbb",
        "keys": {"k1-aaaaaaaa": b64(KEY_A), "k2-bbbbbbbb": b64(KEY_B)},
        "blindIndexKey": {"id": "b1-cccccccc", "key": b64(KEY_BI)},
    }
    doc.update(overrides)
    return doc


def secrets_of(keyring: Keyring) -> list[str]:
    """Every way a key could show up in text: base64, hex, and the bytes' repr."""
    keys = [keyring.data_key(kid) for kid in keyring.key_ids]
    keys.append(keyring.derive_key("blind-index/email"))
    keys.append(base64.b64decode(json.loads(keyring.to_json())["blindIndexKey"]["key"]))
    shown: list[str] = []
    for key in keys:
        shown += [b64(key), key.hex(), repr(key)[2:-1]]
    return shown


def test_documented_format_loads() -> None:
    keyring = Keyring.from_json(json.dumps(document()))
    assert keyring.primary_id == "k2-bbbbbbbb"
    assert keyring.key_ids == ("k1-aaaaaaaa", "k2-bbbbbbbb")
    assert keyring.blind_index_id == "b1-cccccccc"
    assert keyring.data_key("k1-aaaaaaaa") == KEY_A
    assert keyring.data_key("k2-bbbbbbbb") == KEY_B


def test_generate_makes_a_valid_keyring_with_short_ids() -> None:
    keyring = Keyring.generate()
    assert re.fullmatch(r"k1-[0-9a-f]{8}", keyring.primary_id)
    assert re.fullmatch(r"b1-[0-9a-f]{8}", keyring.blind_index_id)
    assert len(keyring.data_key(keyring.primary_id)) == KEY_BYTES
    other = Keyring.generate()
    assert other.data_key(other.primary_id) != keyring.data_key(keyring.primary_id)


def test_json_round_trip_keeps_every_key() -> None:
    keyring = Keyring.generate().rotated()
    again = Keyring.from_json(keyring.to_json())
    assert again.to_json() == keyring.to_json()
    assert again.primary_id == keyring.primary_id
    for kid in keyring.key_ids:
        assert again.data_key(kid) == keyring.data_key(kid)
    assert again.derive_key("x") == keyring.derive_key("x")


def test_rotation_adds_a_fresh_primary_and_keeps_old_keys() -> None:
    first = Keyring.from_json(json.dumps(document()))
    rotated = first.rotated()
    assert rotated.primary_id not in first.key_ids
    assert re.fullmatch(r"k3-[0-9a-f]{8}", rotated.primary_id)
    assert set(rotated.key_ids) == {*first.key_ids, rotated.primary_id}
    for kid in first.key_ids:
        assert rotated.data_key(kid) == first.data_key(kid)
    assert rotated.data_key(rotated.primary_id) not in (KEY_A, KEY_B, KEY_BI)
    assert rotated.blind_index_id == first.blind_index_id
    assert rotated.derive_key("blind-index/email") == first.derive_key("blind-index/email")
    assert first.primary_id == "k2-bbbbbbbb"  # the original is unchanged


def test_derived_keys_are_separated_by_purpose() -> None:
    keyring = Keyring.from_json(json.dumps(document()))
    email, phone = keyring.derive_key("blind-index/email"), keyring.derive_key("blind-index/phone")
    assert len(email) == KEY_BYTES
    assert email != phone
    assert KEY_BI not in (email, phone)


def test_from_file_accepts_the_file_or_a_mounted_secret_directory(tmp_path: Path) -> None:
    # Kubernetes mounts a Secret key as a symlink into a ..data directory.
    data = tmp_path / "..2026_01_01" / "keyring.json"
    data.parent.mkdir()
    data.write_text(json.dumps(document()))
    (tmp_path / "..data").symlink_to(data.parent.name)
    (tmp_path / "keyring.json").symlink_to("..data/keyring.json")
    assert Keyring.from_file(tmp_path).primary_id == "k2-bbbbbbbb"
    assert Keyring.from_file(tmp_path / "keyring.json").primary_id == "k2-bbbbbbbb"


def test_from_file_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match=r"keyring\.json: cannot read keyring"):
        Keyring.from_file(tmp_path)


def test_from_env_reads_the_json_from_the_variable() -> None:
    environ = {"CONTACTSYNC_KEYRING": json.dumps(document())}
    assert Keyring.from_env(environ=environ).primary_id == "k2-bbbbbbbb"
    assert Keyring.from_env("OTHER", environ={"OTHER": json.dumps(document())}).key_ids


def test_from_env_uses_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACTSYNC_KEYRING", json.dumps(document()))
    assert Keyring.from_env().primary_id == "k2-bbbbbbbb"
    monkeypatch.delenv("CONTACTSYNC_KEYRING")
    with pytest.raises(KeyringError, match="CONTACTSYNC_KEYRING is not set"):
        Keyring.from_env()


BAD_KEY = base64.b64encode(b"\x42" * 31).decode()  # one byte short


def only_key(value: object) -> dict[str, Any]:
    return document(keys={"k1-aaaaaaaa": value}, primary="k1-aaaaaaaa")


def blind(**fields: object) -> dict[str, Any]:
    return document(blindIndexKey=fields)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (only_key(BAD_KEY), "keys.k1-aaaaaaaa: must be 32 bytes of base64"),
        (only_key(b64(KEY_A) + "AAAA"), "keys.k1-aaaaaaaa: must be 32 bytes of base64"),
        (only_key(b64(KEY_A)[:-2] + "!!"), "keys.k1-aaaaaaaa: must be 32 bytes of base64"),
        (only_key(b64(KEY_A).rstrip("=")), "keys.k1-aaaaaaaa: must be 32 bytes of base64"),
        (only_key(12), "keys.k1-aaaaaaaa: must be 32 bytes of base64"),
        (document(primary="k9-99999999"), "primary: 'k9-99999999' is not one of the keys"),
        (document(primary=b64(KEY_A)), "primary: must be a key id"),
        (document(keys={}), "keys: must be a non-empty"),
        (document(version=2), "version: must be 1"),
        (document(version=True), "version: must be 1"),
        (blind(id="b1-cccccccc", key=BAD_KEY), "blindIndexKey.key: must be 32 bytes of base64"),
        (blind(id="k1-aaaaaaaa", key=b64(KEY_BI)), "also a data key id"),
        (blind(id="b1-cccccccc", key=b64(KEY_A)), "must differ from every data key"),
        (blind(id="b1-cccccccc"), "blindIndexKey: missing field 'key'"),
        (document(extra=1), "unknown field 'extra'"),
        (document(keys={"K1 bad": b64(KEY_A)}, primary="K1 bad"), "keys: must be a key id"),
        ([1, 2], "top level: must be a JSON object"),
    ],
)
def test_invalid_keyrings_are_rejected_with_a_clear_message(doc: Any, expected: str) -> None:
    with pytest.raises(KeyringError, match=re.escape(expected)) as caught:
        Keyring.from_json(json.dumps(doc), source="keyring.json")
    message = str(caught.value)
    assert message.startswith("keyring.json: ")
    for key in (KEY_A, KEY_B, KEY_BI, b"\x42" * 31):
        assert b64(key) not in message
        assert b64(key)[:16] not in message
    assert caught.value.__cause__ is None


def test_a_key_in_the_id_position_is_not_echoed() -> None:
    # A classic mix-up: key and id swapped. The "id" is then key material.
    swapped = document(keys={b64(KEY_A): "k1-aaaaaaaa"}, primary="k1-aaaaaaaa")
    with pytest.raises(KeyringError) as caught:
        Keyring.from_json(json.dumps(swapped))
    assert b64(KEY_A) not in str(caught.value)
    assert b64(KEY_A)[:8] not in str(caught.value)
    unknown = document()
    unknown[b64(KEY_A)] = "x"
    with pytest.raises(KeyringError, match="unknown field") as caught:
        Keyring.from_json(json.dumps(unknown))
    assert b64(KEY_A)[:8] not in str(caught.value)


def test_duplicate_key_ids_are_rejected() -> None:
    text = json.dumps(document()).replace('"k2-bbbbbbbb": ', '"k1-aaaaaaaa": ', 1)
    with pytest.raises(KeyringError, match="duplicate name 'k1-aaaaaaaa'"):
        Keyring.from_json(text)


def test_broken_json_does_not_keep_the_document_reachable() -> None:
    text = json.dumps(document())[:-5]
    with pytest.raises(KeyringError, match="not valid JSON") as caught:
        Keyring.from_json(text)
    # A JSONDecodeError keeps the whole document; it must not be chained.
    error: BaseException | None = caught.value
    while error is not None:
        assert not isinstance(error, json.JSONDecodeError)
        assert b64(KEY_A) not in str(error)
        error = error.__context__
    with pytest.raises(KeyringError, match="not UTF-8"):
        Keyring.from_json(b"\xff\xfe\x00" + os.urandom(8))


def test_repr_and_str_show_ids_only() -> None:
    keyring = Keyring.from_json(json.dumps(document())).rotated()
    for text in (repr(keyring), str(keyring), f"{keyring}", f"{keyring!r}"):
        assert "k1-aaaaaaaa" in text
        assert "b1-cccccccc" in text
        for secret in secrets_of(keyring):
            assert secret not in text


def test_keyring_cannot_be_pickled_or_copied() -> None:
    keyring = Keyring.generate()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keyring)
    with pytest.raises(TypeError):
        copy.copy(keyring)


def test_unknown_data_key_id_is_reported_without_guessing() -> None:
    keyring = Keyring.generate()
    with pytest.raises(KeyringError, match="unknown data key id 'k7-00000000'"):
        keyring.data_key("k7-00000000")
