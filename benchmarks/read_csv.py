"""Read speed of the file sources against the plain stdlib loops they are built on.

Writes N realistic contact rows (10 columns, about 150 bytes each) as CSV and as
JSON Lines to a temp dir, then reports rows/s for
- plain `csv.reader` over a text file: the ceiling CsvSource cannot beat;
- CsvSource (the hardened reader, dicts and RawRecords included), also beside a
  thread running Python, as the engine reads while it prepares;
- plain `json.loads` per line, and JsonlSource;
with each source's ratio to its baseline and its cost per row. Best of --repeat runs.

    PYTHONPATH=operator python benchmarks/read_csv.py [--rows 500000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from contactsync.engine.records import SCALAR_FIELDS
from contactsync.engine.sources.files import CsvSource, JsonlSource, open_path

_COLUMNS = [
    *SCALAR_FIELDS,
    "attr.source",
]
_FIRST = ["Anna", "José", "Li", "Mohammed", "Olivia", "Søren", "Yuki", "Zoë", "Noah", "Emma"]
_LAST = ["Müller", "García", "Smith", "O'Brien", "Nguyen", "Kowalski", "Rossi", "Dubois"]
_COMPANY = ["Acme Corp", "Globex, Inc.", "Initech", 'Umbrella "Bio" Ltd', "Stark Industries"]
_TITLE = ["Head of Sales", "Engineer", "CFO", "Marketing Manager", "Account Executive"]


def _rows(count: int) -> Iterator[list[str]]:
    rng = random.Random(7)
    for number in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        yield [
            f"crm-{number:09d}",
            f"{first}.{last}{number}@example.com".lower(),
            f"+44 20 7{rng.randrange(10**6, 10**7)}",
            first,
            last,
            rng.choice(_COMPANY),
            rng.choice(_TITLE),
            f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:{number % 60:02d}:00Z",
            rng.choice(["false", "false", "false", "true"]),
            rng.choice(["webinar", "import", "trade-show"]),
        ]


def _write_files(directory: Path, count: int) -> tuple[Path, Path]:
    csv_path, jsonl_path = directory / "contacts.csv", directory / "contacts.jsonl"
    with (
        csv_path.open("w", newline="", encoding="utf-8") as csv_file,
        jsonl_path.open("w", encoding="utf-8") as jsonl_file,
    ):
        writer = csv.writer(csv_file)
        writer.writerow(_COLUMNS)
        for row in _rows(count):
            writer.writerow(row)
            jsonl_file.write(json.dumps(dict(zip(_COLUMNS, row, strict=True))) + "\n")
    return csv_path, jsonl_path


def _plain_csv(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        next(reader)
        return sum(1 for _ in reader)


def _plain_jsonl(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for line in file if json.loads(line) is not None)


def _source(source: CsvSource | JsonlSource) -> int:
    count = 0
    for batch in source.batches(since=None, batch_size=1000):
        count += len(batch)
        assert batch[-1].error is None
    return count


def _best(read: Callable[[], int], expected: int, repeat: int) -> float:
    """Best rows/s over `repeat` runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        assert read() == expected
        best = min(best, time.perf_counter() - started)
    return expected / best


@contextmanager
def _busy_thread() -> Iterator[None]:
    """Another thread running Python meanwhile, as the engine's own process
    prepares batches while a thread reads the next one. Any call that lets go
    of the GIL then waits for it (up to the 5 ms switch interval)."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    thread = threading.Thread(target=spin)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _report(name: str, baseline: float, hardened: float) -> None:
    print(f"{name} baseline  {baseline:12,.0f} rows/s  {1e6 / baseline:5.2f} us/row")
    print(f"{name} source    {hardened:12,.0f} rows/s  {1e6 / hardened:5.2f} us/row")
    print(f"{name} ratio     {hardened / baseline:12.2f} (source / baseline)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        csv_path, jsonl_path = _write_files(Path(directory), args.rows)
        size = csv_path.stat().st_size
        print(f"{args.rows:,} rows, CSV {size / args.rows:.0f} bytes/row")
        _report(
            "csv  ",
            _best(lambda: _plain_csv(csv_path), args.rows, args.repeat),
            _best(lambda: _source(CsvSource(open_path(csv_path))), args.rows, args.repeat),
        )
        alone = _best(lambda: _source(CsvSource(open_path(csv_path))), args.rows, args.repeat)
        with _busy_thread():
            beside = _best(lambda: _source(CsvSource(open_path(csv_path))), args.rows, args.repeat)
        print(f"csv   beside a thread running Python: {beside / alone:.2f} of its rate alone")
        _report(
            "jsonl",
            _best(lambda: _plain_jsonl(jsonl_path), args.rows, args.repeat),
            _best(lambda: _source(JsonlSource(open_path(jsonl_path))), args.rows, args.repeat),
        )


if __name__ == "__main__":
    main()
