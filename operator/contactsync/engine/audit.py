"""Tamper-evident audit log: JSON Lines, hash-chained.

Each line is one record in canonical JSON (keys sorted, no spaces, UTF-8, no
ASCII escaping), ending in ``\\n``::

    {"counts":{...},"destination":"...","hash":"...","keyIds":[...],"kind":"batch",
     "prev":"...","reasons":{...},"recordsDigest":"...","runId":"...","seq":1,
     "source":"...","sync":{"name":"...","namespace":"...","uid":"..."},
     "ts":"2025-01-01T00:00:00.000Z"}

* ``seq`` counts from 1 with no gaps.
* ``prev`` is the SHA-256 (hex) of the previous line's exact bytes without its
  newline; the first record has ``prev`` = 64 zeros (:data:`GENESIS`).
* ``hash`` is the SHA-256 (hex) of the record's canonical JSON without ``hash``.
* ``recordsDigest`` is HMAC-SHA256 (hex) over the sorted, de-duplicated record
  ids the entry covers, each UTF-8 with a 4-byte big-endian length prefix. Its
  key is derived from the keyring's blind-index key (HKDF, purpose
  ``audit/records-digest``), so the log reveals no id and an id cannot be
  confirmed by guessing; someone holding the keyring can recompute it.
* ``source``/``destination`` are identities without credentials: use
  :func:`redact_url` for URLs; a URL that still has userinfo, a query or a
  fragment is refused.

What the chain proves: an edit, removal, insertion or reordering of lines
breaks it where it happened, and :func:`verify_audit` says where. What it does
not: SHA-256 is unkeyed, so someone who rewrites every line from some point on,
or removes whole lines at the end, leaves a consistent file. Against that, keep
the latest :class:`AuditHead` elsewhere (run status, metrics, a second store)
and pass it to :func:`verify_audit` as ``anchor``.
"""

from __future__ import annotations

import enum
import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import urlsplit, urlunsplit

from .keyring import Keyring

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditHead",
    "AuditLog",
    "AuditProblem",
    "ProblemKind",
    "SyncRef",
    "canonical_json",
    "records_digest",
    "records_digest_key",
    "redact_url",
    "verify_audit",
]

GENESIS = "0" * 64
RECORDS_DIGEST_PURPOSE = "audit/records-digest"
_FIELDS = frozenset(
    {
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
)
_KINDS = ("batch", "run")
_TAIL_CHUNK = 8192


class AuditError(Exception):
    """The audit log cannot be written (or an entry is invalid)."""


@dataclass(frozen=True)
class SyncRef:
    """The ContactSync resource a record is about."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class AuditHead:
    """The end of a chain: the last ``seq`` and the SHA-256 hex of its line.

    An empty log's head is ``AuditHead(0, GENESIS)``.
    """

    seq: int
    digest: str


class ProblemKind(enum.StrEnum):
    MALFORMED = "malformed"  # not a JSON object with the audit fields and types
    NOT_CANONICAL = "not-canonical"  # valid record, but the line was re-serialised
    INCOMPLETE = "incomplete"  # the last line has no newline: cut short
    HASH_MISMATCH = "hash-mismatch"  # content differs from what its hash covers
    CHAIN_BREAK = "chain-break"  # prev differs from the previous line's digest
    SEQ_GAP = "seq-gap"  # seq jumps forward: lines removed
    SEQ_ORDER = "seq-order"  # seq repeats or goes back: lines inserted or reordered
    ANCHOR = "anchor"  # the anchored head is missing or differs


@dataclass(frozen=True)
class AuditProblem:
    """One finding of :func:`verify_audit`: 1-based ``line``, and its ``seq`` if readable."""

    line: int  # for an anchor missing from the end: one past the last line
    seq: int | None
    kind: ProblemKind
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the one serialisation that is hashed and written."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    raise AuditError("audit record contains text that is not valid Unicode")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _record_hash(record: Mapping[str, Any]) -> str:
    return _sha256_hex(canonical_json({k: v for k, v in record.items() if k != "hash"}))


def records_digest_key(keyring: Keyring) -> bytes:
    """The HMAC key for ``recordsDigest``, derived from the blind-index key."""
    return keyring.derive_key(RECORDS_DIGEST_PURPOSE)


def records_digest(key: bytes, record_ids: Iterable[str]) -> str:
    """HMAC-SHA256 hex over the sorted unique ids, each length-prefixed (unambiguous)."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    encoded = [record_id.encode("utf-8") for record_id in sorted(set(record_ids))]
    # One update for the batch: the same bytes, without a call per id.
    mac.update(b"".join(len(data).to_bytes(4, "big") + data for data in encoded))
    return mac.hexdigest()


def redact_url(url: str) -> str:
    """``url`` without userinfo, query string and fragment; scheme, host, port and path stay.

    Only absolute URLs (``scheme://host...``) are accepted: in anything else a
    password cannot be told apart from a host, so it is refused. The path is
    kept as is; do not use URLs that carry secrets in their path.
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        # The input is not echoed: it may be a DSN with a password in it.
        raise ValueError("not an absolute URL (scheme://host/...)")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _check_identity(value: str, field: str) -> str:
    parts = urlsplit(value)
    if parts.scheme and parts.netloc and ("@" in parts.netloc or parts.query or parts.fragment):
        raise AuditError(f"{field}: looks like a URL with credentials or a query; use redact_url")
    return value


def _check_counter(values: Mapping[str, int], field: str) -> dict[str, int]:
    for name, count in values.items():
        if not isinstance(name, str) or type(count) is not int or count < 0:
            raise AuditError(f"{field}: must map names to non-negative integers")
    return dict(values)


def _timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise AuditError("clock must return an aware datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _now() -> datetime:
    return datetime.now(UTC)


def _last_line(fd: int, size: int) -> bytes:
    """The last line of a file that ends in a newline, without that newline."""
    tail = b""
    end = size - 1
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        tail = os.pread(fd, end - start, start) + tail
        end = start
        newline = tail.rfind(b"\n")
        if newline >= 0:
            return tail[newline + 1 :]
    return tail


def _head_of(fd: int) -> AuditHead:
    size = os.fstat(fd).st_size
    if size == 0:
        return AuditHead(0, GENESIS)
    if os.pread(fd, 1, size - 1) != b"\n":
        raise AuditError("the last line is incomplete (crash or truncation); run verify first")
    line = _last_line(fd, size)
    try:
        seq = json.loads(line)["seq"]
    except (ValueError, TypeError, KeyError):
        seq = None
    if type(seq) is not int:
        raise AuditError("the last line is not an audit record; run verify first")
    return AuditHead(seq, _sha256_hex(line))


class AuditLog:
    """Appends hash-chained records to a JSON Lines file, continuing an existing chain.

    The file is opened for appending (mode 0600 if created) and locked
    exclusively, so a second writer fails at once instead of forking the
    chain. Every record is fsynced before :meth:`append` returns. Only the
    last line is read on opening; :func:`verify_audit` checks the whole file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        keyring: Keyring,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._path = Path(path)
        self._digest_key = records_digest_key(keyring)
        self._clock = clock
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self._path, flags, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise AuditError(f"{self._path}: in use by another writer") from None
        try:
            self._head = _head_of(self._fd)
            if self._head.seq == 0:
                self._sync_directory()
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def head(self) -> AuditHead:
        """The chain's end after the last append: anchor it outside the file."""
        return self._head

    def append(
        self,
        kind: Literal["batch", "run"],
        *,
        run_id: str,
        sync: SyncRef,
        source: str,
        destination: str,
        counts: Mapping[str, int],
        reasons: Mapping[str, int],
        key_ids: Iterable[str],
        record_ids: Iterable[str] = (),
        digest: str | None = None,
        outcome: str = "committed",
    ) -> AuditHead:
        """Write one record (fsynced) and return the new head.

        `digest` is a `records_digest` computed elsewhere (worker processes
        digest their own batches, so ids never travel back); otherwise it is
        computed here from `record_ids`. `outcome` is "committed" or
        "failed:<code>": a refused or broken run is audited too.
        """
        if self._fd < 0:
            raise AuditError("audit log is closed")
        if kind not in _KINDS:
            raise AuditError(f"kind: must be one of {', '.join(_KINDS)}")
        record: dict[str, Any] = {
            "seq": self._head.seq + 1,
            "ts": _timestamp(self._clock()),
            "kind": kind,
            "runId": run_id,
            "sync": {"namespace": sync.namespace, "name": sync.name, "uid": sync.uid},
            "source": _check_identity(source, "source"),
            "destination": _check_identity(destination, "destination"),
            "counts": _check_counter(counts, "counts"),
            "reasons": _check_counter(reasons, "reasons"),
            "keyIds": sorted(set(key_ids)),
            "recordsDigest": digest or records_digest(self._digest_key, record_ids),
            "outcome": outcome,
            "prev": self._head.digest,
        }
        record["hash"] = _record_hash(record)
        line = canonical_json(record)
        self._write(line + b"\n")
        self._head = AuditHead(record["seq"], _sha256_hex(line))
        return self._head

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also releases the lock
            self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({str(self._path)!r}, seq={self._head.seq})"

    def __reduce__(self) -> NoReturn:
        # It holds an open, locked file and the records-digest key.
        raise TypeError("an AuditLog cannot be pickled or copied")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def _sync_directory(self) -> None:
        # A new file's directory entry must be durable too, or a crash can lose
        # the whole log even though its records were fsynced.
        directory = os.open(self._path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


# --- verification -------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(1-based number, bytes without newline, whether a newline ended it)."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, 1):
            complete = raw.endswith(b"\n")
            yield number, raw[:-1] if complete else raw, complete


def _parse(body: bytes) -> tuple[dict[str, Any] | None, str]:
    """The record, or None and why it is not one (without echoing the content)."""
    try:
        record = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None, "not UTF-8 JSON"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    missing = sorted(_FIELDS - set(record))
    if missing:
        return None, f"missing field {missing[0]!r}"
    extra = sorted(set(record) - _FIELDS)
    if extra:
        return None, "unexpected field"
    if type(record["seq"]) is not int:
        return None, "seq is not an integer"
    if not isinstance(record["prev"], str) or not isinstance(record["hash"], str):
        return None, "prev or hash is not a string"
    try:
        canonical_json(record)
    except AuditError:
        return None, "contains text that is not valid Unicode"
    return record, ""


def _sequence_problem(line: int, seq: int, previous: int | None) -> AuditProblem | None:
    if previous is None:  # after an unreadable line there is nothing to compare with
        return None
    expected = previous + 1
    if seq == expected:
        return None
    if line == 1 and previous == 0:
        return AuditProblem(
            line, seq, ProblemKind.SEQ_GAP, f"first record has seq {seq}, expected 1"
        )
    if seq > expected:
        missing = seq - expected
        return AuditProblem(
            line,
            seq,
            ProblemKind.SEQ_GAP,
            f"seq gap: seq {seq} follows seq {previous} ({missing} record(s) missing)",
        )
    return AuditProblem(
        line,
        seq,
        ProblemKind.SEQ_ORDER,
        f"seq out of order: seq {seq} follows seq {previous} (records inserted, "
        "duplicated or reordered)",
    )


def _chain_problem(
    line: int, seq: int, prev: str, expected: str, previous_seq: int | None
) -> AuditProblem | None:
    if prev == expected:
        return None
    if line == 1:
        message = f"chain break at seq {seq}: prev is not the genesis value"
    else:
        before = "an unreadable line" if previous_seq is None else f"seq {previous_seq}"
        message = (
            f"chain break between {before} (line {line - 1}) and seq {seq}: "
            "prev is not the SHA-256 of the preceding line"
        )
    return AuditProblem(line, seq, ProblemKind.CHAIN_BREAK, message)


def verify_audit(
    path: str | os.PathLike[str], *, anchor: AuditHead | None = None
) -> list[AuditProblem]:
    """Check the whole chain; an empty list means it is intact.

    Every line is checked on its own (form, hash) and against the line before
    it (seq, prev), so one tampered spot yields a few problems that all point
    at it. ``anchor``, a head recorded earlier, must still be in the file with
    the same digest: this catches lines removed from the end.
    """
    problems: list[AuditProblem] = []
    expected_prev = GENESIS
    previous_seq: int | None = 0
    anchor_seen = False
    line = 0
    for line, body, complete in _lines(Path(path)):
        digest = _sha256_hex(body)
        record, why = _parse(body)
        seq = record["seq"] if record is not None else None
        if not complete:
            problems.append(
                AuditProblem(
                    line,
                    seq,
                    ProblemKind.INCOMPLETE,
                    "no newline at the end: the log was cut short",
                )
            )
        if record is None:
            problems.append(
                AuditProblem(line, None, ProblemKind.MALFORMED, f"not an audit record: {why}")
            )
        else:
            problems.extend(_record_problems(line, record, body, expected_prev, previous_seq))
        if anchor is not None and seq == anchor.seq:
            anchor_seen = True
            if digest != anchor.digest:
                problems.append(
                    AuditProblem(
                        line, seq, ProblemKind.ANCHOR, f"seq {seq} differs from the anchored line"
                    )
                )
        expected_prev = digest
        previous_seq = seq
    if anchor is not None and anchor.seq > 0 and not anchor_seen:
        problems.append(
            AuditProblem(
                line + 1,
                anchor.seq,
                ProblemKind.ANCHOR,
                f"anchored seq {anchor.seq} is not in the log: records removed from the end",
            )
        )
    return problems


def _record_problems(
    line: int, record: dict[str, Any], body: bytes, expected_prev: str, previous_seq: int | None
) -> list[AuditProblem]:
    seq: int = record["seq"]
    found: list[AuditProblem] = []
    if _record_hash(record) != record["hash"]:
        found.append(
            AuditProblem(
                line, seq, ProblemKind.HASH_MISMATCH, f"hash mismatch at seq {seq}: record edited"
            )
        )
    elif canonical_json(record) != body:
        found.append(
            AuditProblem(
                line, seq, ProblemKind.NOT_CANONICAL, f"seq {seq} is not in canonical form"
            )
        )
    for problem in (
        _sequence_problem(line, seq, previous_seq),
        _chain_problem(line, seq, record["prev"], expected_prev, previous_seq),
    ):
        if problem is not None:
            found.append(problem)
    return found
