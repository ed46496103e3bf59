"""Field encryption envelopes, rotation and blind indexes."""

from __future__ import annotations

import base64
import hmac
import json
import pickle

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from contactsync.engine.crypto import (
    BlindIndex,
    CryptoError,
    DecryptError,
    FieldCipher,
    envelope_key_id,
    reencrypt,
)
from contactsync.engine.keyring import Keyring

KEY_1 = bytes(range(100, 132))
KEY_BI = bytes(range(200, 232))
PLAINTEXT = "alice.example@example.com"
WHERE = {"table": "contacts", "column": "email", "record_id": "rec-0001"}


def keyring_with(*keys: tuple[str, bytes], primary: str) -> Keyring:
    return Keyring.from_json(
        json.dumps(
            {
                "version": 1,
                "primary": primary,
                "keys": {kid: base64.b64encode(key).decode() for kid, key in keys},
                "blindIndexKey": {"id": "b1-00000000", "key": base64.b64encode(KEY_BI).decode()},
            }
        )
    )


KEYRING = keyring_with(("k1-11111111", KEY_1), primary="k1-11111111")
CIPHER = FieldCipher(KEYRING)
INDEX = BlindIndex(KEYRING)


def length_prefixed(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(4, "big") + data


# --- envelope format ------------------------------------------------------------


def test_round_trip() -> None:
    envelope = CIPHER.encrypt(PLAINTEXT, **WHERE)
    assert CIPHER.decrypt(envelope, **WHERE) == PLAINTEXT


def test_envelope_layout_is_as_documented() -> None:
    envelope = CIPHER.encrypt(PLAINTEXT, **WHERE)
    kid = b"k1-11111111"
    assert envelope[:2] == bytes((1, len(kid)))
    assert envelope[2 : 2 + len(kid)] == kid
    assert len(envelope) == 2 + len(kid) + 12 + len(PLAINTEXT.encode()) + 16
    assert PLAINTEXT.encode() not in envelope
    assert envelope_key_id(envelope) == "k1-11111111"


def test_an_envelope_built_from_the_documented_format_decrypts() -> None:
    # Pins the associated data byte for byte, so other readers can be written from the docs.
    kid = b"k1-11111111"
    header = bytes((1, len(kid))) + kid
    nonce = bytes(12)
    aad = header + b"".join(length_prefixed(x) for x in ("contacts", "email", "rec-0001"))
    envelope = header + nonce + AESGCM(KEY_1).encrypt(nonce, "Zoë ✓".encode(), aad)
    assert CIPHER.decrypt(envelope, **WHERE) == "Zoë ✓"


def test_same_value_twice_gives_different_envelopes_and_nonces() -> None:
    first, second = (CIPHER.encrypt(PLAINTEXT, **WHERE) for _ in range(2))
    assert first != second
    nonce = slice(13, 25)
    assert first[nonce] != second[nonce]
    batch = CIPHER.encrypt_many(
        [PLAINTEXT] * 50, table="contacts", column="email", record_ids=["rec-0001"] * 50
    )
    assert len({envelope[nonce] for envelope in batch}) == 50


def test_empty_value_round_trips() -> None:
    assert CIPHER.decrypt(CIPHER.encrypt("", **WHERE), **WHERE) == ""


@pytest.mark.parametrize(
    "moved",
    [
        {"record_id": "rec-0002"},
        {"column": "phone"},
        {"table": "contacts_archive"},
        {"table": "contactse", "column": "mail"},  # same bytes, other split
        {"column": "emailrec-0001", "record_id": ""},
    ],
    ids=["other-row", "other-column", "other-table", "table-column-split", "column-id-split"],
)
def test_a_value_moved_elsewhere_does_not_decrypt(moved: dict[str, str]) -> None:
    envelope = CIPHER.encrypt(PLAINTEXT, **WHERE)
    with pytest.raises(DecryptError, match="failed authentication") as caught:
        CIPHER.decrypt(envelope, **{**WHERE, **moved})
    assert PLAINTEXT not in str(caught.value)
    assert "rec-000" not in str(caught.value)


def test_ciphertexts_swapped_between_two_rows_fail() -> None:
    alice = CIPHER.encrypt("alice@example.com", table="contacts", column="email", record_id="a")
    bob = CIPHER.encrypt("bob@example.com", table="contacts", column="email", record_id="b")
    with pytest.raises(DecryptError):
        CIPHER.decrypt(bob, table="contacts", column="email", record_id="a")
    with pytest.raises(DecryptError):
        CIPHER.decrypt(alice, table="contacts", column="email", record_id="b")


def test_every_truncation_fails() -> None:
    envelope = CIPHER.encrypt(PLAINTEXT, **WHERE)
    for length in range(len(envelope)):
        with pytest.raises(DecryptError):
            CIPHER.decrypt(envelope[:length], **WHERE)


def test_every_bit_flip_fails() -> None:
    envelope = CIPHER.encrypt(PLAINTEXT, **WHERE)
    for position in range(len(envelope)):
        for bit in range(8):
            damaged = bytearray(envelope)
            damaged[position] ^= 1 << bit
            with pytest.raises(DecryptError):
                CIPHER.decrypt(bytes(damaged), **WHERE)


def test_appended_bytes_fail() -> None:
    envelope = CIPHER.encrypt(PLAINTEXT, **WHERE)
    with pytest.raises(DecryptError):
        CIPHER.decrypt(envelope + b"\x00", **WHERE)


def test_unknown_key_id_is_named_and_nothing_else() -> None:
    other = keyring_with(("k7-77777777", KEY_1[::-1]), primary="k7-77777777")
    envelope = FieldCipher(other).encrypt(PLAINTEXT, **WHERE)
    with pytest.raises(DecryptError) as caught:
        CIPHER.decrypt(envelope, **WHERE)
    message = str(caught.value)
    assert message == "unknown key id 'k7-77777777'"
    for secret in (KEY_1, KEY_1[::-1]):
        assert base64.b64encode(secret).decode() not in message


def test_a_malformed_key_id_is_not_echoed() -> None:
    envelope = CIPHER.encrypt(PLAINTEXT, **WHERE)
    forged = b"\x01\x05" + b"SECRE" + envelope[13:]
    with pytest.raises(DecryptError, match=r"unknown key id \(malformed\)"):
        CIPHER.decrypt(forged, **WHERE)


def test_same_key_id_with_a_different_key_fails_authentication() -> None:
    impostor = keyring_with(("k1-11111111", KEY_1[::-1]), primary="k1-11111111")
    envelope = FieldCipher(impostor).encrypt(PLAINTEXT, **WHERE)
    with pytest.raises(DecryptError, match="failed authentication"):
        CIPHER.decrypt(envelope, **WHERE)


def test_not_an_envelope() -> None:
    for junk in (b"", b"\x01", b"\x02" + CIPHER.encrypt(PLAINTEXT, **WHERE)[1:]):
        with pytest.raises(DecryptError, match="envelope"):
            CIPHER.decrypt(junk, **WHERE)
    with pytest.raises(DecryptError):
        envelope_key_id(b"\x01\x03ab")


def test_text_that_is_not_unicode_is_refused_without_echo() -> None:
    secret = "secret\ud800value"
    with pytest.raises(CryptoError) as caught:
        CIPHER.encrypt(secret, **WHERE)
    assert "secret" not in str(caught.value)
    assert caught.value.__context__ is None
    with pytest.raises(CryptoError, match="value #1") as caught:
        CIPHER.encrypt_many(["ok", secret], table="contacts", column="email", record_ids=["a", "b"])
    assert caught.value.__context__ is None
    with pytest.raises(CryptoError, match="record id"):
        CIPHER.encrypt("x", table="contacts", column="email", record_id="\udfff")


# --- batches ----------------------------------------------------------------------


def test_batch_round_trip_and_interoperability_with_single_calls() -> None:
    values = [f"user{i}@example.com" for i in range(20)]
    ids = [f"rec-{i}" for i in range(20)]
    envelopes = CIPHER.encrypt_many(values, table="contacts", column="email", record_ids=ids)
    assert CIPHER.decrypt_many(envelopes, table="contacts", column="email", record_ids=ids) == (
        values
    )
    assert (
        CIPHER.decrypt(envelopes[3], table="contacts", column="email", record_id="rec-3")
        == (values[3])
    )
    single = CIPHER.encrypt(values[0], table="contacts", column="email", record_id="rec-0")
    assert CIPHER.decrypt_many([single], table="contacts", column="email", record_ids=["rec-0"])
    assert CIPHER.encrypt_many([], table="t", column="c", record_ids=[]) == []


def test_batch_decrypt_failure_names_the_index() -> None:
    ids = ["a", "b", "c"]
    envelopes = CIPHER.encrypt_many(["1", "2", "3"], table="t", column="c", record_ids=ids)
    with pytest.raises(DecryptError) as caught:
        CIPHER.decrypt_many(envelopes, table="t", column="c", record_ids=["a", "x", "c"])
    assert caught.value.index == 1
    assert str(caught.value).startswith("value #1: envelope failed authentication")


def test_batch_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="2 values but 1 record ids"):
        CIPHER.encrypt_many(["a", "b"], table="t", column="c", record_ids=["x"])
    with pytest.raises(ValueError, match="1 values but 2 record ids"):
        CIPHER.decrypt_many([b""], table="t", column="c", record_ids=["x", "y"])


# --- rotation ----------------------------------------------------------------------


def test_rotation_old_data_decrypts_new_data_uses_the_new_key() -> None:
    before = Keyring.generate()
    old_envelope = FieldCipher(before).encrypt(PLAINTEXT, **WHERE)
    after = before.rotated()
    cipher = FieldCipher(after)
    assert cipher.decrypt(old_envelope, **WHERE) == PLAINTEXT
    new_envelope = cipher.encrypt(PLAINTEXT, **WHERE)
    assert envelope_key_id(old_envelope) == before.primary_id
    assert envelope_key_id(new_envelope) == after.primary_id != before.primary_id
    # A reader still on the old keyring cannot read new data, and says why.
    with pytest.raises(DecryptError, match=f"unknown key id '{after.primary_id}'"):
        FieldCipher(before).decrypt(new_envelope, **WHERE)


def test_reencrypt_moves_old_envelopes_to_the_primary_and_leaves_current_ones() -> None:
    before = Keyring.generate()
    old_envelope = FieldCipher(before).encrypt(PLAINTEXT, **WHERE)
    after = before.rotated()
    target = FieldCipher(after)
    moved = reencrypt(old_envelope, **WHERE, target=target)
    assert envelope_key_id(moved) == after.primary_id
    assert target.decrypt(moved, **WHERE) == PLAINTEXT
    assert not target.is_current(old_envelope)
    assert target.is_current(moved)
    assert reencrypt(moved, **WHERE, target=target) is moved


def test_reencrypt_keeps_the_binding_to_the_row() -> None:
    before = Keyring.generate()
    envelope = FieldCipher(before).encrypt(PLAINTEXT, **WHERE)
    target = FieldCipher(before.rotated())
    with pytest.raises(DecryptError):
        reencrypt(envelope, **{**WHERE, "record_id": "rec-9999"}, target=target)
    moved = reencrypt(envelope, **WHERE, target=target)
    with pytest.raises(DecryptError):
        target.decrypt(moved, **{**WHERE, "record_id": "rec-9999"})


def test_is_current_compares_the_whole_key_id() -> None:
    # "k1-1" must not count as current for a primary "k1-11111111" or vice versa.
    short = keyring_with(("k1-1", KEY_1[::-1]), ("k1-11111111", KEY_1), primary="k1-1")
    envelope = FieldCipher(short).encrypt(PLAINTEXT, **WHERE)
    assert not CIPHER.is_current(envelope)
    assert FieldCipher(short).is_current(envelope)


def test_cipher_repr_has_no_key_material() -> None:
    for text in (repr(CIPHER), str(CIPHER), repr(INDEX)):
        assert base64.b64encode(KEY_1).decode() not in text
        assert KEY_1.hex() not in text
        assert KEY_BI.hex() not in text
    assert "k1-11111111" in repr(CIPHER)


def test_ciphers_cannot_be_pickled() -> None:
    # Pickling would copy keys into whatever stores the result (task results, caches).
    for thing in (CIPHER, INDEX):
        with pytest.raises(TypeError):
            pickle.dumps(thing)


# --- blind index -------------------------------------------------------------------


def test_blind_index_is_hmac_sha256_under_the_derived_key_for_the_kind() -> None:
    key = KEYRING.derive_key("blind-index/email")
    digest = INDEX.digest("email", "alice@example.com")
    assert digest == hmac.digest(key, b"alice@example.com", "sha256")
    assert len(digest) == 32
    assert INDEX.digest_many("email", ["alice@example.com", "b"]) == [
        digest,
        INDEX.digest("email", "b"),
    ]
    assert INDEX.key_id == "b1-00000000"


def test_blind_index_depends_on_the_key() -> None:
    other = BlindIndex(Keyring.generate())
    assert other.digest("email", "alice@example.com") != INDEX.digest("email", "alice@example.com")


def test_blind_index_survives_data_key_rotation() -> None:
    rotated = BlindIndex(KEYRING.rotated())
    assert rotated.digest("phone", "+14155550123") == INDEX.digest("phone", "+14155550123")


@pytest.mark.parametrize("kind", ["", "Email", "e mail", "x" * 40, "1phone"])
def test_blind_index_rejects_odd_kinds(kind: str) -> None:
    with pytest.raises(CryptoError, match="kind must be"):
        INDEX.digest(kind, "x")


# --- properties ----------------------------------------------------------------------

names = st.text(max_size=30)


@given(plaintext=st.text(), table=names, column=names, record_id=names)
def test_property_round_trip_for_any_text(
    plaintext: str, table: str, column: str, record_id: str
) -> None:
    where = {"table": table, "column": column, "record_id": record_id}
    envelope = CIPHER.encrypt(plaintext, **where)
    assert CIPHER.decrypt(envelope, **where) == plaintext
    assert CIPHER.decrypt_many([envelope], table=table, column=column, record_ids=[record_id]) == [
        plaintext
    ]


@given(plaintext=st.text(max_size=40), data=st.data())
def test_property_any_single_byte_change_fails(plaintext: str, data: st.DataObject) -> None:
    envelope = CIPHER.encrypt(plaintext, **WHERE)
    position = data.draw(st.integers(0, len(envelope) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != envelope[position]), label="byte")
    damaged = envelope[:position] + bytes((value,)) + envelope[position + 1 :]
    with pytest.raises(DecryptError):
        CIPHER.decrypt(damaged, **WHERE)


@given(value=st.text(), other=st.text())
def test_property_blind_index_deterministic_and_kind_separated(value: str, other: str) -> None:
    assert INDEX.digest("email", value) == INDEX.digest("email", value)
    assert INDEX.digest("email", value) != INDEX.digest("phone", value)
    if value != other:
        assert INDEX.digest("email", value) != INDEX.digest("email", other)


@given(values=st.lists(st.text(), max_size=5))
def test_property_digest_many_is_hmac_sha256(values: list[str]) -> None:
    key = KEYRING.derive_key("blind-index/phone")
    expected = [hmac.digest(key, value.encode(), "sha256") for value in values]
    assert INDEX.digest_many("phone", values) == expected
    assert [INDEX.digest("phone", value) for value in values] == expected


@given(
    values=st.lists(st.text(), max_size=5),
    ids=st.lists(st.text(max_size=40), min_size=5, max_size=5),
    table=st.text(max_size=20),
)
def test_property_batch_envelopes_open_with_cryptography(
    values: list[str], ids: list[str], table: str
) -> None:
    """encrypt_many seals in native code: the reference library must open it byte for byte."""
    ids = ids[: len(values)]
    envelopes = CIPHER.encrypt_many(values, table=table, column="email", record_ids=ids)
    header = bytes((1, len(b"k1-11111111"))) + b"k1-11111111"
    for value, record_id, envelope in zip(values, ids, envelopes, strict=True):
        assert envelope.startswith(header)
        assert len(envelope) == len(header) + 12 + len(value.encode()) + 16

        def prefixed(text: str) -> bytes:
            return len(text.encode()).to_bytes(4, "big") + text.encode()

        aad = header + prefixed(table) + prefixed("email") + prefixed(record_id)
        nonce = envelope[len(header) : len(header) + 12]
        opened = AESGCM(KEY_1).decrypt(nonce, envelope[len(header) + 12 :], aad)
        assert opened.decode() == value
        assert CIPHER.decrypt(envelope, table=table, column="email", record_id=record_id) == value


def test_batch_refuses_a_lone_surrogate_in_a_record_id_by_index() -> None:
    with pytest.raises(CryptoError, match="value #2") as caught:
        CIPHER.encrypt_many(["a", "b", "c"], table="t", column="c", record_ids=["x", "y", "\udfff"])
    assert "\udfff" not in str(caught.value)
    with pytest.raises(CryptoError, match="value #1"):
        INDEX.digest_many("email", ["a", "\ud800"])


def test_batches_keep_absent_values_absent() -> None:
    envelopes = CIPHER.encrypt_many(
        ["a", None, "c"], table="t", column="c", record_ids=["x", "y", "z"]
    )
    assert envelopes[1] is None
    assert [
        CIPHER.decrypt(e, table="t", column="c", record_id=r)
        for e, r in ((envelopes[0], "x"), (envelopes[2], "z"))
        if e is not None
    ] == ["a", "c"]
    assert INDEX.digest_many("email", [None, "b"]) == [None, INDEX.digest("email", "b")]
