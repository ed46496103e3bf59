"""One sync run: source -> prepare (in worker processes) -> destination.

The parent process only reads the source, hands raw batches to the workers and
streams their encoded output to the destination, so validation and encryption
use every core while the destination's transaction stays in one place.
Guards (reject ratio, delete ratio) fail the run before anything commits.
"""

from __future__ import annotations

import functools
import gc
import logging
import multiprocessing
import os
import time
import uuid
from collections import Counter, deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from itertools import chain, islice
from pathlib import Path

from contactsync.api.spec import ContactSyncSpec, SecretKeyRef, SecretRef

from .audit import AuditLog, SyncRef, redact_url
from .connectors import build_destination, build_source
from .destinations import EncodedBatch, Encoder
from .errors import SyncFailedError, failure_code
from .keyring import KEYRING_KEY, Keyring
from .prepare import COLUMNS, Preparer, PrepareSettings
from .secrets import SecretStore
from .sources import RawRecord, predates

log = logging.getLogger("contactsync.engine")

BATCH_SIZE = 5_000
# Batches a run prepares in its own process before it starts worker processes
# (their start costs most of a second of CPU): 20,000 records.
INLINE_BATCHES = 4
# Incremental runs re-read this much before the stored cursor: clocks of the
# source's writers drift, and re-reading is free (unchanged rows are not written).
LOOKBACK = timedelta(minutes=5)


@dataclass(frozen=True)
class SyncIdentity:
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Summary:
    """What a run did, in counts only: safe for logs, Prefect results and status."""

    run_id: str
    mode: str
    read: int = 0
    valid: int = 0
    rejected: int = 0
    quarantined: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    merged: int = 0
    duration_seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def counts(self) -> dict[str, int]:
        return {
            name: value
            for name, value in asdict(self).items()
            if isinstance(value, int) and not isinstance(value, bool)
        }


def keyring_ref(spec: ContactSyncSpec, identity: SyncIdentity) -> SecretKeyRef:
    secret = spec.encryption.key_secret_ref or SecretRef(name=f"{identity.name}-keys")
    return SecretKeyRef(name=secret.name, key=KEYRING_KEY)


def describe_source(spec: ContactSyncSpec) -> str:
    """Where data comes from, without credentials, query strings or file contents."""
    where = redact_url(str(spec.source.url)) if spec.source.url else spec.source.path
    return f"{spec.source.type}:{where or spec.source.table}"


def describe_destination(spec: ContactSyncSpec) -> str:
    where = redact_url(str(spec.destination.url)) if spec.destination.url else None
    return f"{spec.destination.type}:{where or spec.destination.table or spec.destination.path}"


def run_sync(
    spec: ContactSyncSpec,
    identity: SyncIdentity,
    *,
    secrets: SecretStore,
    run_id: str | None = None,
    workers: int | None = None,
    audit_path: Path | None = None,
) -> Summary:
    """Run one sync; audit it (committed or failed) when `audit_path` is given."""
    run_id = run_id or str(uuid.uuid4())
    keyring = Keyring.from_file(secrets.path(keyring_ref(spec, identity)))
    batches: list[EncodedBatch] = []  # counts and digests only: a few hundred bytes each
    try:
        with _sparing_the_collector():
            summary = _run(spec, identity, keyring, secrets, run_id, workers, batches)
    except BaseException as exc:
        if audit_path is not None:
            outcome = f"failed:{failure_code(exc)}"
            _audit(audit_path, keyring, spec, identity, run_id, batches, None, outcome)
        raise
    if audit_path is not None:
        _audit(audit_path, keyring, spec, identity, run_id, batches, summary, "committed")
    return summary


@contextmanager
def _sparing_the_collector() -> Iterator[None]:
    """While a run lasts, the garbage collector leaves alone the objects that
    were there before it, most of them what the imports made: its full
    collections then walk the run's own objects only (a worker process spent
    about a tenth of its time in them). They are handed back at the end."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _audit(
    path: Path,
    keyring: Keyring,
    spec: ContactSyncSpec,
    identity: SyncIdentity,
    run_id: str,
    batches: list[EncodedBatch],
    summary: Summary | None,
    outcome: str,
) -> None:
    with AuditLog(path, keyring=keyring) as log:
        append = functools.partial(
            log.append,
            run_id=run_id,
            sync=SyncRef(identity.namespace, identity.name, identity.uid),
            source=describe_source(spec),
            destination=describe_destination(spec),
            key_ids=[keyring.primary_id, keyring.blind_index_id],
            outcome=outcome,
        )
        for batch in batches:
            append(
                "batch",
                counts={"valid": batch.valid, "rejected": batch.rejected},
                reasons=batch.reasons,
                digest=batch.ids_digest,
            )
        # The run's digest covers its batches' digests: ids stay in the workers.
        append(
            "run",
            counts=summary.counts() if summary else {},
            reasons=summary.reasons if summary else {},
            record_ids=[batch.ids_digest for batch in batches],
        )


def _run(
    spec: ContactSyncSpec,
    identity: SyncIdentity,
    keyring: Keyring,
    secrets: SecretStore,
    run_id: str,
    workers: int | None,
    audited: list[EncodedBatch],
) -> Summary:
    started = time.monotonic()
    encrypted = frozenset(spec.encryption.fields)
    source = build_source(spec.source, secrets)
    destination = build_destination(
        spec.destination,
        secrets,
        encrypted_columns=frozenset(COLUMNS[f] for f in encrypted),
        sync_key=identity.key,
        key_id=keyring.primary_id,
    )
    settings = PrepareSettings(
        table=spec.destination.table or "contacts",
        encrypted_fields=encrypted,
        default_region=spec.validation.default_region,
        run_id=run_id,
    )
    summary = Summary(run_id=run_id, mode=spec.mode)
    reasons: Counter[str] = Counter()
    high_water: datetime | None = None
    with destination.open_run(run_id) as run:
        since = None
        if spec.mode == "incremental" and (cursor := run.cursor()) is not None:
            since = cursor - LOOKBACK
        batches = _read_ahead(
            _newer_than(b, since) for b in source.batches(since=since, batch_size=BATCH_SIZE)
        )
        for encoded in _prepared(batches, keyring, settings, destination.encoder, workers):
            run.write(encoded)
            audited.append(replace(encoded, rows=b"", quarantine=b"", seen_ids=[]))
            summary.valid += encoded.valid
            summary.rejected += encoded.rejected
            reasons.update(encoded.reasons)
            if encoded.max_updated_at and (
                high_water is None or encoded.max_updated_at > high_water
            ):
                high_water = encoded.max_updated_at
        summary.read = summary.valid + summary.rejected
        summary.quarantined = summary.rejected
        summary.reasons = dict(reasons)
        ratio = summary.rejected / summary.read if summary.read else 0.0
        if ratio > spec.validation.max_reject_ratio:
            raise SyncFailedError(
                "RejectRatioExceeded",
                f"{summary.rejected} of {summary.read} records rejected ({ratio:.1%} > "
                f"validation.maxRejectRatio {spec.validation.max_reject_ratio:.1%}); "
                "nothing was written",
            )
        counts = run.finish(
            full=spec.mode == "full",
            max_delete_ratio=spec.safety.max_delete_ratio,
            cursor=high_water,
        )
    summary.inserted, summary.updated, summary.deleted = (
        counts.inserted,
        counts.updated,
        counts.deleted,
    )
    summary.unchanged, summary.merged = counts.unchanged, counts.merged
    summary.duration_seconds = round(time.monotonic() - started, 3)
    return summary


def _read_ahead(
    batches: Generator[Sequence[RawRecord], None, None],
) -> Iterator[Sequence[RawRecord]]:
    """The batches, each read by a thread while the one before it is prepared.

    A source's network and disk waits then overlap the preparing, which is all
    of a run's work in its own process until worker processes start, and all
    of a small incremental run's.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="contactsync-read") as reader:
        try:
            ahead = reader.submit(next, batches, None)
            while (batch := ahead.result()) is not None:
                ahead = reader.submit(next, batches, None)
                yield batch
        finally:
            # The source is closed once the read in flight is over, in that thread.
            reader.submit(batches.close).result()


def _newer_than(batch: Sequence[RawRecord], since: datetime | None) -> Sequence[RawRecord]:
    """Drop records a source returns although they predate the cursor."""
    if since is None:
        return batch
    return [raw for raw in batch if not predates(raw.fields.get("updatedAt"), since)]


# -- worker processes ------------------------------------------------------------

_worker: tuple[Preparer, Encoder] | None = None


def _init_worker(keyring_json: str, settings: PrepareSettings, encoder: Encoder) -> None:
    global _worker
    # Keyrings refuse to be pickled (so they cannot leak into Prefect results);
    # the workers get the serialised form once, over the pool's private pipe.
    _worker = (Preparer(Keyring.from_json(keyring_json), settings), encoder)
    # A worker lives for one run: what it holds now stays (see _sparing_the_collector).
    gc.freeze()


# What travels to a worker: a list of records as plain tuples, which pickle in
# a third of the time a slotted dataclass takes (through Python-level hooks),
# or a batch of another type as it is (`CsvLines` pickles as raw lines).
_Wire = list[tuple[int, dict[str, object], str | None]] | Sequence[RawRecord]


def _wire(batch: Sequence[RawRecord]) -> _Wire:
    if isinstance(batch, list):
        return [(raw.position, raw.fields, raw.error) for raw in batch]
    return batch


def _warm_up() -> None:
    """Nothing: submitting it makes the pool start a worker process."""


def _start_workers(pool: ProcessPoolExecutor, workers: int) -> None:
    for _ in range(workers):
        pool.submit(_warm_up)


def _work(batch: _Wire) -> EncodedBatch:
    assert _worker is not None
    preparer, encoder = _worker
    if isinstance(batch, list):
        batch = [RawRecord(*record) for record in batch]
    return encoder(preparer.prepare(batch))


def _prepared(
    batches: Iterable[Sequence[RawRecord]],
    keyring: Keyring,
    settings: PrepareSettings,
    encoder: Encoder,
    workers: int | None,
) -> Iterator[EncodedBatch]:
    """Prepare batches in order; at most two per worker in flight keeps memory flat.

    This process prepares the first batches itself, and those until the worker
    processes are up: a small run (most incremental ones) starts none.
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    preparer = Preparer(keyring, settings)
    batches = iter(batches)
    for batch in islice(batches, None if workers <= 0 else INLINE_BATCHES):
        yield encoder(preparer.prepare(batch))
    if workers <= 0:
        return
    first = next(batches, None)
    if first is None:
        return
    # forkserver: the parent may run threads (Prefect does); fork would copy their locks.
    context = multiprocessing.get_context("forkserver")
    # The fork server imports the engine once and forks ready workers, rather
    # than each worker importing it (most of a second of CPU each).
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(keyring.to_json(), settings, encoder),
    ) as pool:
        # Start every worker now, from a thread: the first start waits for the
        # fork server to import the engine (about half a second), and meanwhile
        # this thread goes on preparing batches itself. Batches go to the pool
        # only once it is up, and then all of them, which keeps their order.
        with ThreadPoolExecutor(1) as starter:
            started = starter.submit(_start_workers, pool, workers)
            pending: deque[Future[EncodedBatch]] = deque()
            for batch in chain((first,), batches):
                if not pending and not started.done():
                    yield encoder(preparer.prepare(batch))
                    continue
                started.result()  # a failed start fails the run here
                pending.append(pool.submit(_work, _wire(batch)))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            started.result()
        while pending:
            yield pending.popleft().result()
