"""The hash-chained audit log: writing, continuing, and finding every kind of tampering."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from contactsync.engine.audit import (
    GENESIS,
    AuditError,
    AuditHead,
    AuditLog,
    AuditProblem,
    ProblemKind,
    SyncRef,
    canonical_json,
    records_digest,
    records_digest_key,
    redact_url,
    verify_audit,
)
from contactsync.engine.keyring import Keyring

KEYRING = Keyring.from_json(
    json.dumps(
        {
            "version": 1,
            "primary": "k1-11111111",
            "keys": {"k1-11111111": base64.b64encode(bytes(32)).decode()},
            "blindIndexKey": {
                "id": "b1-22222222",
                "key": base64.b64encode(bytes([7]) * 32).decode(),
            },
        }
    )
)
SYNC = SyncRef(
    namespace="sales", name="crm-to-warehouse", uid="6f1c2d3e-0000-4000-8000-000000000001"
)
N = 6


def record_ids(seq: int) -> list[str]:
    # Ids that look like what they often are: PII.
    return [f"person{seq}-{i}@example.com" for i in range(3)]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def append(log: AuditLog, seq: int) -> AuditHead:
    return log.append(
        "run" if seq == 2 else "batch",
        run_id="run-42",
        sync=SYNC,
        source="postgresql://crm.example:5432/crm",
        destination="https://warehouse.example/api",
        counts={"read": 100 + seq, "written": 98, "quarantined": 2},
        reasons={"invalid-email": 1, "invalid-phone": 1},
        key_ids=["k1-11111111", "b1-22222222"],
        record_ids=record_ids(seq),
    )


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, keyring=KEYRING, clock=Clock()) as log:
        for seq in range(1, N + 1):
            append(log, seq)
    return path


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, content: list[bytes]) -> None:
    path.write_bytes(b"".join(content))


def record(path: Path, seq: int) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(lines(path)[seq - 1])
    return parsed


def rehashed(rec: dict[str, Any]) -> bytes:
    """What a careful forger writes: the record with a correct hash, canonical, one line."""
    body = {k: v for k, v in rec.items() if k != "hash"}
    body["hash"] = hashlib.sha256(canonical_json(body)).hexdigest()
    return canonical_json(body) + b"\n"


def digest(line: bytes) -> str:
    return hashlib.sha256(line.rstrip(b"\n")).hexdigest()


def kinds_at(problems: list[AuditProblem], line: int) -> set[ProblemKind]:
    return {p.kind for p in problems if p.line == line}


# --- writing ----------------------------------------------------------------------


def test_a_clean_chain_verifies(log_path: Path) -> None:
    assert verify_audit(log_path) == []
    content = lines(log_path)
    assert len(content) == N
    first = json.loads(content[0])
    assert first["seq"] == 1
    assert first["prev"] == GENESIS
    for seq in range(2, N + 1):
        assert record(log_path, seq)["prev"] == digest(content[seq - 2])
        assert record(log_path, seq)["seq"] == seq


def test_record_shape(log_path: Path) -> None:
    rec = record(log_path, 2)
    assert set(rec) == {
        "seq",
        "ts",
        "kind",
        "runId",
        "sync",
        "source",
        "destination",
        "counts",
        "reasons",
        "keyIds",
        "recordsDigest",
        "outcome",
        "prev",
        "hash",
    }
    assert rec["outcome"] == "committed"
    assert rec["ts"] == "2026-01-02T03:04:07.678Z"
    assert rec["kind"] == "run"
    assert record(log_path, 3)["kind"] == "batch"
    assert rec["sync"] == {"namespace": "sales", "name": "crm-to-warehouse", "uid": SYNC.uid}
    assert rec["counts"] == {"read": 102, "written": 98, "quarantined": 2}
    assert rec["keyIds"] == ["b1-22222222", "k1-11111111"]
    assert (
        rec["hash"]
        == hashlib.sha256(canonical_json({k: v for k, v in rec.items() if k != "hash"})).hexdigest()
    )
    # The written line is itself canonical JSON.
    assert lines(log_path)[1] == canonical_json(rec) + b"\n"


def test_records_digest_is_keyed_and_no_id_appears_in_clear(log_path: Path) -> None:
    content = log_path.read_bytes()
    for seq in range(1, N + 1):
        for record_id in record_ids(seq):
            assert record_id.encode() not in content
            assert hashlib.sha256(record_id.encode()).hexdigest().encode() not in content
        expected = records_digest(records_digest_key(KEYRING), record_ids(seq))
        assert record(log_path, seq)["recordsDigest"] == expected
    assert records_digest_key(KEYRING) != KEYRING.derive_key("blind-index/email")


def test_records_digest_is_order_free_and_unambiguous() -> None:
    key = records_digest_key(KEYRING)
    assert records_digest(key, ["b", "a", "a"]) == records_digest(key, ["a", "b"])
    assert records_digest(key, ["ab", "c"]) != records_digest(key, ["a", "bc"])
    assert records_digest(key, ["a"]) != records_digest(b"\x00" * 32, ["a"])


def test_reopening_continues_the_chain(log_path: Path) -> None:
    before = lines(log_path)
    with AuditLog(log_path, keyring=KEYRING, clock=Clock()) as log:
        assert log.head == AuditHead(N, digest(before[-1]))
        head = append(log, N + 1)
        append(log, N + 2)
    assert head.seq == N + 1
    assert record(log_path, N + 1)["prev"] == digest(before[-1])
    assert lines(log_path)[:N] == before
    assert verify_audit(log_path) == []


def test_head_is_the_digest_of_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with AuditLog(path, keyring=KEYRING) as log:
        assert log.head == AuditHead(0, GENESIS)
        head = append(log, 1)
    assert head == AuditHead(1, digest(lines(path)[0]))
    assert verify_audit(path, anchor=head) == []


def test_every_append_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    with AuditLog(tmp_path / "a.jsonl", keyring=KEYRING) as log:
        synced.clear()  # opening a new file syncs its directory
        append(log, 1)
        append(log, 2)
        assert len(synced) == 2


def test_new_log_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    AuditLog(path, keyring=KEYRING).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_second_writer_is_refused(log_path: Path) -> None:
    with (
        AuditLog(log_path, keyring=KEYRING),
        pytest.raises(AuditError, match="in use by another writer"),
    ):
        AuditLog(log_path, keyring=KEYRING)
    AuditLog(log_path, keyring=KEYRING).close()  # released on close


def test_appending_after_an_incomplete_last_line_is_refused(log_path: Path) -> None:
    content = lines(log_path)
    write_lines(log_path, [*content[:-1], content[-1][:40]])
    with pytest.raises(AuditError, match="last line is incomplete"):
        AuditLog(log_path, keyring=KEYRING)


def test_appending_after_garbage_is_refused(log_path: Path) -> None:
    write_lines(log_path, [*lines(log_path), b"not json\n"])
    with pytest.raises(AuditError, match="not an audit record"):
        AuditLog(log_path, keyring=KEYRING)


def test_log_cannot_be_pickled(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "a.jsonl", keyring=KEYRING) as log, pytest.raises(TypeError):
        pickle.dumps(log)


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl", keyring=KEYRING)
    log.close()
    with pytest.raises(AuditError, match="closed"):
        append(log, 1)


@pytest.mark.parametrize(
    "source",
    ["postgresql://app:hunter2@db/crm", "https://db/x?token=hunter2", "https://db/x#hunter2"],
)
def test_sources_with_credentials_are_refused(tmp_path: Path, source: str) -> None:
    with AuditLog(tmp_path / "a.jsonl", keyring=KEYRING) as log:
        with pytest.raises(AuditError, match="redact_url") as caught:
            log.append(
                "run",
                run_id="r",
                sync=SYNC,
                source=source,
                destination="x",
                counts={},
                reasons={},
                key_ids=[],
                record_ids=[],
            )
        assert "hunter2" not in str(caught.value)
        assert log.head.seq == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("counts", {"read": -1}), ("reasons", {"x": True}), ("counts", {"read": 1.5})],
)
def test_counters_must_be_non_negative_integers(tmp_path: Path, field: str, value: Any) -> None:
    fields: dict[str, Any] = {"counts": {}, "reasons": {}, field: value}
    with AuditLog(tmp_path / "a.jsonl", keyring=KEYRING) as log, pytest.raises(AuditError):
        log.append(
            "batch",
            run_id="r",
            sync=SYNC,
            source="s",
            destination="d",
            key_ids=[],
            record_ids=[],
            **fields,
        )


def test_redact_url() -> None:
    assert (
        redact_url("postgresql://app:s3cret@db.example:5432/crm?sslmode=verify-full&password=x#f")
        == "postgresql://db.example:5432/crm"
    )
    assert redact_url("https://u:p@[2001:db8::1]:8443/api") == "https://[2001:db8::1]:8443/api"
    assert redact_url("https://token@api.example/v1/") == "https://api.example/v1/"
    assert redact_url("https://api.example") == "https://api.example"
    for not_a_url in ("host=db password=s3cret", "app:s3cret@db/crm", "/var/data.csv"):
        with pytest.raises(ValueError, match="not an absolute URL") as caught:
            redact_url(not_a_url)
        assert "s3cret" not in str(caught.value)


# --- tampering --------------------------------------------------------------------

EDITS: list[tuple[str, Any]] = [
    ("ts", "2020-01-01T00:00:00.000Z"),
    ("kind", "run"),  # every record but seq 2 is a batch
    ("runId", "run-43"),
    ("sync", {"namespace": "other", "name": "crm-to-warehouse", "uid": SYNC.uid}),
    ("source", "postgresql://elsewhere/crm"),
    ("destination", "https://evil.example/api"),
    ("counts", {"read": 1, "written": 1, "quarantined": 0}),
    ("reasons", {}),
    ("keyIds", ["k1-11111111"]),
    ("recordsDigest", "0" * 64),
    ("prev", "f" * 64),
    ("hash", "e" * 64),
]


@pytest.mark.parametrize(("field", "value"), EDITS, ids=[field for field, _ in EDITS])
@pytest.mark.parametrize("k", [1, 3, N])
def test_editing_a_field_is_a_hash_mismatch_at_that_record(
    log_path: Path, k: int, field: str, value: Any
) -> None:
    content = lines(log_path)
    rec = record(log_path, k)
    rec[field] = value
    content[k - 1] = canonical_json(rec) + b"\n"
    write_lines(log_path, content)
    problems = verify_audit(log_path)
    assert ProblemKind.HASH_MISMATCH in kinds_at(problems, k)
    assert any(f"hash mismatch at seq {k}" in str(p) for p in problems)
    assert {p.line for p in problems} <= {k, k + 1}
    if k < N:
        assert ProblemKind.CHAIN_BREAK in kinds_at(problems, k + 1)


@pytest.mark.parametrize("k", [1, 3, N - 1])
def test_editing_and_rehashing_is_a_chain_break_after_it(log_path: Path, k: int) -> None:
    content = lines(log_path)
    rec = record(log_path, k)
    rec["counts"] = {"read": 0, "written": 0, "quarantined": 0}
    content[k - 1] = rehashed(rec)
    write_lines(log_path, content)
    problems = verify_audit(log_path)
    assert [(p.line, p.seq, p.kind) for p in problems] == [(k + 1, k + 1, ProblemKind.CHAIN_BREAK)]
    assert f"between seq {k} (line {k}) and seq {k + 1}" in problems[0].message


def test_editing_the_seq_field_is_found(log_path: Path) -> None:
    content = lines(log_path)
    rec = record(log_path, 3)
    rec["seq"] = 30
    content[2] = rehashed(rec)
    write_lines(log_path, content)
    problems = verify_audit(log_path)
    assert (3, 30, ProblemKind.SEQ_GAP) in [(p.line, p.seq, p.kind) for p in problems]
    assert ProblemKind.SEQ_ORDER in kinds_at(problems, 4)


@pytest.mark.parametrize("k", [2, 4])
def test_deleting_a_record_is_a_gap_and_a_break(log_path: Path, k: int) -> None:
    content = lines(log_path)
    del content[k - 1]
    write_lines(log_path, content)
    problems = verify_audit(log_path)
    assert {(p.line, p.seq) for p in problems} == {(k, k + 1)}
    assert {p.kind for p in problems} == {ProblemKind.SEQ_GAP, ProblemKind.CHAIN_BREAK}
    assert any(f"seq {k + 1} follows seq {k - 1}" in p.message for p in problems)


def test_deleting_the_first_record_is_found(log_path: Path) -> None:
    write_lines(log_path, lines(log_path)[1:])
    problems = verify_audit(log_path)
    assert {(p.line, p.seq, p.kind) for p in problems} == {
        (1, 2, ProblemKind.SEQ_GAP),
        (1, 2, ProblemKind.CHAIN_BREAK),
    }


@pytest.mark.parametrize("k", [1, 3, N - 1])
def test_swapping_two_records_is_found_at_both(log_path: Path, k: int) -> None:
    content = lines(log_path)
    content[k - 1], content[k] = content[k], content[k - 1]
    write_lines(log_path, content)
    problems = verify_audit(log_path)
    assert kinds_at(problems, k) >= {ProblemKind.CHAIN_BREAK}
    assert kinds_at(problems, k + 1) >= {ProblemKind.SEQ_ORDER, ProblemKind.CHAIN_BREAK}
    assert any(p.line == k and p.seq == k + 1 for p in problems)
    assert all(p.line in (k, k + 1, k + 2) for p in problems)
    assert not any(p.kind is ProblemKind.HASH_MISMATCH for p in problems)


def test_inserting_a_well_forged_line_is_found_after_it(log_path: Path) -> None:
    # The forger knows the format: right seq, right prev, right hash.
    content = lines(log_path)
    k = 3
    forged = record(log_path, k + 1)
    forged["counts"] = {"read": 0, "written": 0, "quarantined": 0}
    forged["prev"] = digest(content[k - 1])
    content.insert(k, rehashed(forged))
    write_lines(log_path, content)
    problems = verify_audit(log_path)
    assert {(p.line, p.seq) for p in problems} == {(k + 2, k + 1)}
    assert {p.kind for p in problems} == {ProblemKind.SEQ_ORDER, ProblemKind.CHAIN_BREAK}
    assert any(f"seq {k + 1} follows seq {k + 1}" in p.message for p in problems)


def test_inserting_a_garbage_line_is_found_where_it_is(log_path: Path) -> None:
    content = lines(log_path)
    content.insert(2, b'{"seq": 3, "note": "hello"}\n')
    write_lines(log_path, content)
    problems = verify_audit(log_path)
    assert (3, ProblemKind.MALFORMED) in [(p.line, p.kind) for p in problems]
    assert ProblemKind.CHAIN_BREAK in kinds_at(problems, 4)
    assert "an unreadable line (line 3)" in str(problems[-1])


def test_reformatting_a_line_is_found(log_path: Path) -> None:
    content = lines(log_path)
    content[1] = json.dumps(json.loads(content[1]), indent=1).replace("\n", " ").encode() + b"\n"
    write_lines(log_path, content)
    problems = verify_audit(log_path)
    assert (2, ProblemKind.NOT_CANONICAL) in [(p.line, p.kind) for p in problems]
    assert ProblemKind.CHAIN_BREAK in kinds_at(problems, 3)


def test_truncating_the_last_line_is_found(log_path: Path) -> None:
    content = lines(log_path)
    write_lines(log_path, [*content[:-1], content[-1][:-20]])
    problems = verify_audit(log_path)
    assert {(p.line, p.kind) for p in problems} == {
        (N, ProblemKind.INCOMPLETE),
        (N, ProblemKind.MALFORMED),
    }
    assert str(problems[0]) == f"line {N}: no newline at the end: the log was cut short"


def test_only_the_newline_missing_is_found(log_path: Path) -> None:
    write_lines(log_path, [*lines(log_path)[:-1], lines(log_path)[-1][:-1]])
    assert [(p.line, p.seq, p.kind) for p in verify_audit(log_path)] == [
        (N, N, ProblemKind.INCOMPLETE)
    ]


def test_removing_whole_lines_at_the_end_needs_the_anchor(log_path: Path) -> None:
    content = lines(log_path)
    anchor = AuditHead(N, digest(content[-1]))
    assert verify_audit(log_path, anchor=anchor) == []
    write_lines(log_path, content[:-1])
    assert verify_audit(log_path) == []  # a consistent prefix: the file alone cannot tell
    problems = verify_audit(log_path, anchor=anchor)
    assert [(p.line, p.seq, p.kind) for p in problems] == [(N, N, ProblemKind.ANCHOR)]
    assert f"anchored seq {N} is not in the log" in problems[0].message


def test_rewriting_the_last_line_is_caught_by_the_anchor(log_path: Path) -> None:
    content = lines(log_path)
    anchor = AuditHead(N, digest(content[-1]))
    rec = record(log_path, N)
    rec["counts"] = {}
    write_lines(log_path, [*content[:-1], rehashed(rec)])
    assert verify_audit(log_path) == []
    problems = verify_audit(log_path, anchor=anchor)
    assert [(p.line, p.seq, p.kind) for p in problems] == [(N, N, ProblemKind.ANCHOR)]


def test_an_older_anchor_still_verifies_a_longer_log(log_path: Path) -> None:
    anchor = AuditHead(2, digest(lines(log_path)[1]))
    assert verify_audit(log_path, anchor=anchor) == []


def test_empty_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.touch()
    assert verify_audit(path) == []


def test_problems_print_with_their_line(log_path: Path) -> None:
    content = lines(log_path)
    del content[1]
    write_lines(log_path, content)
    printed = [str(problem) for problem in verify_audit(log_path)]
    assert printed
    assert all(text.startswith("line 2: ") for text in printed)
