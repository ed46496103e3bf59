"""Batches prepared by worker processes, or by the run's own process while the
workers start, come out the same and in order."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import islice

import pytest

from contactsync.engine import pipeline
from contactsync.engine.destinations.postgres import encode
from contactsync.engine.keyring import Keyring
from contactsync.engine.prepare import Preparer, PrepareSettings
from contactsync.engine.sources import RawRecord

KEYRING = Keyring.generate()
SETTINGS = PrepareSettings(
    table="contacts",
    encrypted_fields=frozenset({"email", "phone"}),
    default_region="US",
    run_id="run-1",
)


def batches(count: int, pause: float = 0.0) -> Iterator[list[RawRecord]]:
    for b in range(count):
        time.sleep(pause)
        yield [
            RawRecord(
                position=b * 10 + n,
                fields={
                    "externalId": f"id-{b}-{n}",
                    "email": "nope" if n == 3 else f"p{b}.{n}@example.com",
                    "updatedAt": f"2024-01-{1 + b % 28:02d}T00:00:00Z",
                },
            )
            for n in range(10)
        ]


def summary(source: Iterable[list[RawRecord]], workers: int) -> list[tuple[object, ...]]:
    return [
        (batch.valid, batch.rejected, batch.ids_digest, dict(batch.reasons), batch.max_updated_at)
        for batch in pipeline._prepared(source, KEYRING, SETTINGS, encode, workers)
    ]


def test_inline_then_workers_gives_what_one_process_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    start = pipeline._start_workers
    started = threading.Event()

    def slow_start(pool: object, workers: int) -> None:
        time.sleep(0.3)  # the fork server may already be up: make the start take a while
        start(pool, workers)  # type: ignore[arg-type]
        started.set()

    def source() -> Iterator[list[RawRecord]]:
        """The first 10 batches come while the workers start, the other 20 once
        they are up (not by timing: a busy machine can take a second to start them)."""
        for number, batch in enumerate(batches(30, pause=0.03)):
            if number == 10:
                assert started.wait(timeout=120)
            yield batch

    inline = 0
    prepare = Preparer.prepare

    def counted(self: Preparer, batch: list[RawRecord]) -> object:
        nonlocal inline
        inline += 1
        return prepare(self, batch)

    monkeypatch.setattr(pipeline, "_start_workers", slow_start)
    expected = summary(batches(30), 0)
    monkeypatch.setattr(Preparer, "prepare", counted)  # counts this process's calls only
    assert summary(source(), 2) == expected
    assert 0 < inline < 30  # some batches here while the workers started, the rest there


def test_a_small_run_starts_no_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    monkeypatch.setattr(pipeline, "_start_workers", lambda pool, workers: started.append(workers))
    small = pipeline.INLINE_BATCHES
    prepared = list(pipeline._prepared(batches(small), KEYRING, SETTINGS, encode, 2))
    assert len(prepared) == small
    assert started == []


def test_the_engine_starts_without_the_http_stack() -> None:
    """A file-to-database run, and the fork server, import no HTTP client."""
    probe = (
        "import sys; import contactsync.engine.pipeline; "
        "print(sorted(m for m in ('httpx', 'contactsync.engine.http') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_source_is_read_one_batch_ahead_in_order_and_closed() -> None:
    events: list[str] = []

    def source() -> Iterator[list[RawRecord]]:
        try:
            for b in range(5):
                events.append(f"read {b}")
                yield [RawRecord(b, {"externalId": f"id-{b}"})]
        finally:
            events.append("closed")

    ahead = pipeline._read_ahead(source())
    assert [batch[0].position for batch in islice(ahead, 2)] == [0, 1]
    # The third batch is read while the second is out, and no further.
    deadline = time.monotonic() + 10
    while len(events) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert events == ["read 0", "read 1", "read 2"]
    ahead.close()
    assert events[-1] == "closed"


def test_a_failing_source_fails_the_read_where_it_failed() -> None:
    def source() -> Iterator[list[RawRecord]]:
        yield [RawRecord(1, {})]
        raise ConnectionError("the server went away")

    ahead = pipeline._read_ahead(source())
    assert next(ahead)[0].position == 1
    with pytest.raises(ConnectionError, match="went away"):
        next(ahead)


def test_a_run_hands_what_it_froze_back_to_the_collector() -> None:
    frozen: list[int] = []

    def failing_run() -> None:
        with pipeline._sparing_the_collector():
            frozen.append(gc.get_freeze_count())  # the heap as the run found it
            raise RuntimeError("the run failed")

    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError):
        failing_run()
    assert frozen[0] > 0
    assert gc.get_freeze_count() == 0
