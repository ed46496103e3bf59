"""Engine throughput and memory, against baselines measured in the same run.

    .venv/bin/python benchmarks/engine.py [--n 1000000] [--baseline-n 100000] [--repeat 3]
        [--reruns 3]

Generates N realistic contacts as CSV (about 5% invalid, 10% duplicates, mixed
case, international phones), then, on one PostgreSQL server (the test bed's,
TLS verify-full) and each into a fresh database on a settled server (the
databases of earlier paths dropped, a checkpoint taken, the dirty pages
written out by the system), measures contacts/s of:

  ceiling  COPY into staging + INSERT ... ON CONFLICT of already-clean rows
  naive    per-row pydantic (EmailStr) + phonenumbers + executemany upsert
  dlt      dlt merging the same rows into PostgreSQL with a primary key
  engine   the ContactSync engine: validate, normalise, dedupe, 4 encrypted
           fields, 2 blind indexes, quarantine, one transaction
  incr     an incremental re-run after 1% of the records changed, on the
           table as a scheduled run meets it: vacuumed, checkpointed and
           written out after the bulk load (immediately after it, autovacuum,
           the load's checkpoint and the system's writeback of it fall into
           the re-run)

and the engine's peak RSS (process tree) at N/10 and N. Naive and dlt are
slow, so they run on the first --baseline-n records; rates are per record.
The machine is shared, so the ceiling and the engine's full run, whose
ratios are the targets, run --repeat times, and after each full run the
re-run runs --reruns times: on the loaded database, and on copies of it made
before the first re-run (CREATE DATABASE ... TEMPLATE). The figures are
medians (the peak RSS at N the highest), and each run's own is printed too.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from benchmarks.proctree import tree_status  # noqa: E402
from contactsync.engine.records import SCALAR_FIELDS  # noqa: E402

FIELDS = list(SCALAR_FIELDS)
FIRST = [
    "Ann",
    "Bob",
    "Chloé",
    "Dmitri",
    "Émile",
    "Fatima",
    "Günther",
    "Hiro",
    "Ingrid",
    "José",
    "Kwame",
    "Li",
    "Mårten",
    "Nadia",
    "Oğuz",
    "Priya",
    "Quentin",
    "Rosa",
    "Søren",
    "Zoë",
]
LAST = [
    "Smith",
    "O'Brien",
    "Müller",
    "García",
    "Nguyen",
    "Kowalski",
    "Rossi",
    "Ivanova",
    "Dubois",
    "Tanaka",
    "Silva",
    "Johansson",
    "Khan",
    "van der Berg",
    "Lee",
    "Schmidt",
]
DOMAINS = ["Example.com", "example.org", "Mail.Example.net", "corp.example.co.uk", "example.de"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark Industries", "Wayne Ent."]
TITLES = ["Engineer", "Manager", "Director", "Analyst", "Designer", "VP Sales", "CTO"]
AREAS = [650, 415, 212, 312, 617, 206]
PHONES: list[Callable[[int], str]] = [
    lambda i: f"+1 {AREAS[i % 6]}-{200 + (i // 10_000) % 800}-{i % 10_000:04d}",
    lambda i: f"({AREAS[i % 6]}) {200 + (i // 10_000) % 800}-{i % 10_000:04d}",
    lambda i: f"{AREAS[i % 6]}.{200 + (i // 10_000) % 800}.{i % 10_000:04d}",
    lambda i: f"+44 7{[4, 5, 7, 8, 9][i % 5]}{(i // 5) % 100:02d} {i % 1_000_000:06d}",
    lambda i: f"+49 15{[1, 2, 7][i % 3]}{(i // 3) % 10} {i % 10_000_000:07d}",
    lambda i: (
        f"+33 6 {(i // 10**6) % 100:02d} {(i // 10**4) % 100:02d} {(i // 100) % 100:02d} "
        f"{i % 100:02d}"
    ),
    lambda i: f"+91 9{(i // 100_000) % 10_000:04d} {i % 100_000:05d}",
    lambda i: f"+55 11 9{(i // 10_000) % 10_000:04d}-{i % 10_000:04d}",
]
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


def contact(i: int, seconds: int) -> dict[str, str]:
    first, last = FIRST[i % len(FIRST)], LAST[(i // 7) % len(LAST)]
    local = f"{first}.{last}{i}".replace(" ", "").replace("'", "")
    if i % 33:  # most mailboxes are ASCII; one in 33 keeps its accents (an EAI address)
        local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode()
    record = {
        "externalId": f"crm-{i:08d}",
        "email": f"{local}@{DOMAINS[i % len(DOMAINS)]}",
        "phone": PHONES[i % len(PHONES)](i),
        "firstName": first,
        "lastName": last,
        "company": COMPANIES[i % len(COMPANIES)],
        "jobTitle": TITLES[i % len(TITLES)],
        "updatedAt": (EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"),
        "deleted": "false",
    }
    spoil = i % 100  # five in a hundred records are invalid, each in its own way
    if spoil == 3:
        record["email"] = record["email"].replace("@", "")
    elif spoil == 23:
        record["phone"] = "12345"
    elif spoil == 43:
        record["firstName"] = "<script>alert(1)</script>"
    elif spoil == 63:
        record["lastName"] = "x" * 300
    elif spoil == 83:
        record["email"] = "two@@" + DOMAINS[0]
    return record


def records(n: int, *, changed: float = 0.0) -> Iterator[dict[str, str]]:
    """N records: 90% distinct contacts, 10% later versions of earlier ones."""
    distinct = int(n * 0.9)
    for k in range(n):
        if k % 10 == 9:  # a duplicate: an earlier contact, updated later
            i = (k * 7919) % max(1, distinct)
            record = contact(i, 10 * distinct + k)
            record["jobTitle"] = "Senior " + record["jobTitle"]
        else:
            i = k - k // 10
            record = contact(i, k)
        if changed and (k % int(1 / changed)) == 0:
            record["company"] = "Changed Co"
            record["updatedAt"] = (
                (EPOCH + timedelta(days=400, seconds=k)).isoformat().replace("+00:00", "Z")
            )
        yield record


def write_csv(path: Path, rows: Iterator[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def fresh_database(admin_dsn: str, copy_of: str | None = None) -> str:
    """The DSN of a new database: empty, or a copy of the database of DSN
    `copy_of` as it is now (the files as they are: FILE_COPY, not every page
    through the WAL)."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    base, _, query = admin_dsn.partition("?")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        if copy_of is None:
            conn.execute(f"CREATE DATABASE {name}")  # a generated name
        else:
            template = copy_of.partition("?")[0].rsplit("/", 1)[1]
            conn.execute(f'CREATE DATABASE {name} TEMPLATE "{template}" STRATEGY FILE_COPY')
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"


def settle(admin_dsn: str) -> None:
    """Start the next path on a quiet server: drop the databases of the paths
    measured before (or autovacuum works on them during this one) and flush
    their dirty pages (or a checkpoint, or the system's writeback, falls in
    this one: see `write_back`)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        query = "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'"
        for (name,) in conn.execute(query).fetchall():
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # generated names
    checkpoint(admin_dsn)


def checkpoint(admin_dsn: str) -> None:
    """Flush the server's dirty pages, and have the system write them out."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    write_back()


def write_back() -> None:
    """Have the system write out the dirty pages of the files written so far.
    A checkpoint only hands PostgreSQL's pages to the page cache; the kernel
    writes them back from about 30 s later (vm.dirty_expire_centisecs), which
    after a bulk load is a gigabyte written while the next path runs: it made
    the re-run after the load 0.96 s against 0.81 s (a pair of runs)."""
    os.sync()


def settle_after_load(dsn: str, admin_dsn: str) -> None:
    """Meet the table as a scheduled incremental run does, long after the bulk
    load: autovacuum has processed it (visibility map, hint bits, statistics)
    and a checkpoint has flushed it, which the system has written out. Done
    here, so that none of these falls into the measured re-run; all are the
    load's own aftermath."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) contacts")
    checkpoint(admin_dsn)


def point_at(secrets: Path, dsn: str) -> None:
    (secrets / "warehouse" / "dsn").write_text(dsn)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


# -- (a) ceiling ---------------------------------------------------------------------


def ceiling(csv_path: Path, dsn: str) -> None:
    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute(
            "CREATE TABLE contacts (external_id text PRIMARY KEY, email text, phone text,"
            " first_name text, last_name text, company text, job_title text,"
            " updated_at timestamptz)"
        )
        conn.execute("CREATE TEMP TABLE stage (LIKE contacts) ON COMMIT DROP")
        with csv_path.open(newline="", encoding="utf-8") as source, conn.cursor() as cur:
            reader = csv.reader(source)
            next(reader)
            with cur.copy("COPY stage FROM STDIN") as copy:
                for row in reader:
                    if row[0]:
                        copy.write_row(row[:8])
            cur.execute(
                "INSERT INTO contacts SELECT DISTINCT ON (external_id) * FROM stage "
                "ORDER BY external_id, updated_at DESC ON CONFLICT (external_id) DO UPDATE SET "
                "email = EXCLUDED.email, updated_at = EXCLUDED.updated_at "
                "WHERE EXCLUDED.updated_at > contacts.updated_at"
            )


# -- (b) naive -----------------------------------------------------------------------


def naive(csv_path: Path, dsn: str, limit: int) -> None:
    import phonenumbers
    from pydantic import BaseModel, EmailStr, ValidationError, field_validator

    class Contact(BaseModel):
        externalId: str
        email: EmailStr
        phone: str
        firstName: str
        lastName: str
        company: str
        jobTitle: str
        updatedAt: datetime

        @field_validator("phone")
        @classmethod
        def e164(cls, value: str) -> str:
            number = phonenumbers.parse(value, "US")
            if not phonenumbers.is_valid_number(number):
                raise ValueError("invalid phone")
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    rows = []
    with csv_path.open(newline="", encoding="utf-8") as source:
        for k, raw in enumerate(csv.DictReader(source)):
            if k >= limit:
                break
            try:
                c = Contact.model_validate(raw)
            except (ValidationError, phonenumbers.NumberParseException):
                continue
            rows.append(
                (
                    c.externalId,
                    c.email,
                    c.phone,
                    c.firstName,
                    c.lastName,
                    c.company,
                    c.jobTitle,
                    c.updatedAt,
                )
            )
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TABLE contacts (external_id text PRIMARY KEY, email text, phone text,"
            " first_name text, last_name text, company text, job_title text,"
            " updated_at timestamptz)"
        )
        conn.cursor().executemany(
            "INSERT INTO contacts VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (external_id) DO UPDATE SET email = EXCLUDED.email, "
            "updated_at = EXCLUDED.updated_at WHERE EXCLUDED.updated_at > contacts.updated_at",
            rows,
        )


# -- (c) dlt -------------------------------------------------------------------------


def with_dlt(csv_path: Path, dsn: str, limit: int, workdir: Path) -> None:
    os.environ["DLT_DATA_DIR"] = str(workdir / "dlt-data")
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    import dlt

    @dlt.resource(name="contacts", primary_key="externalId", write_disposition="merge")
    def rows() -> Iterator[dict[str, str]]:
        with csv_path.open(newline="", encoding="utf-8") as source:
            for k, raw in enumerate(csv.DictReader(source)):
                if k >= limit:
                    return
                if raw["externalId"]:
                    yield raw

    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{uuid.uuid4().hex[:6]}",
        destination=dlt.destinations.postgres(dsn),
        pipelines_dir=str(workdir / "dlt-pipelines"),
        dataset_name="bench",
    )
    pipeline.run(rows())


# -- (d, e) the engine, in a child process so its memory is its own ---------------------


ENGINE_CHILD = """
import json, sys
from pathlib import Path
sys.path[:0] = [sys.argv[4], sys.argv[5]]
from contactsync.api.spec import ContactSyncSpec
from contactsync.engine.pipeline import SyncIdentity, run_sync
from contactsync.engine.secrets import SecretStore
spec = ContactSyncSpec.model_validate(json.loads(sys.argv[1]))
summary = run_sync(spec, SyncIdentity("bench", "crm"), secrets=SecretStore(Path(sys.argv[2])),
                   workers=int(sys.argv[3]))
print(json.dumps(summary.to_dict()))
import gc
gc.freeze()  # and exit as the `contactsync` command does (contactsync.cli.entry)
"""


def engine(
    csv_path: Path, secrets: Path, mode: str, workers: int
) -> tuple[float, dict[str, Any], int]:
    spec = {
        "source": {"type": "csv", "path": str(csv_path)},
        "destination": {
            "type": "postgres",
            "table": "contacts",
            "dsnSecretRef": {"name": "warehouse", "key": "dsn"},
        },
        "mode": mode,
        "validation": {"maxRejectRatio": 0.2},
        "safety": {"maxDeleteRatio": 1.0},
    }
    started = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            ENGINE_CHILD,
            json.dumps(spec),
            str(secrets),
            str(workers),
            str(REPO / "operator"),
            str(REPO),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_status(child.pid)[0])
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"engine run failed ({child.returncode})")
    return time.perf_counter() - started, json.loads(out), peak


def prepare_secrets(root: Path, dsn: str) -> Path:
    from contactsync.engine.keyring import Keyring

    secrets = root / "secrets"
    (secrets / "crm-keys").mkdir(parents=True)
    (secrets / "crm-keys" / "keyring.json").write_text(Keyring.generate().to_json())
    (secrets / "warehouse").mkdir()
    point_at(secrets, dsn)
    return secrets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--baseline-n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-dlt", action="store_true")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the ceiling and the engine (medians)"
    )
    parser.add_argument(
        "--reruns", type=int, default=3, help="incremental re-runs after each full run (medians)"
    )
    args = parser.parse_args()
    if args.repeat < 1 or args.reruns < 1:
        parser.error("--repeat and --reruns are at least 1")

    from tests.testbed.pki import CertificateAuthority
    from tests.testbed.postgres import PostgresServer

    # The engine as a package install leaves it: compiled once. Otherwise every
    # engine run would compile its modules again (about 35 ms; more so where
    # PYTHONDONTWRITEBYTECODE keeps Python from caching them).
    compileall.compile_dir(REPO / "operator" / "contactsync", quiet=1)

    with tempfile.TemporaryDirectory(prefix="contactsync-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)
        postgres = PostgresServer(root, CertificateAuthority(root))
        postgres.start()
        try:
            postgres.wait()
            run(args, root, postgres.dsn())
        finally:
            postgres.stop()


def run(args: argparse.Namespace, root: Path, admin_dsn: str) -> None:
    n = args.n
    small = max(1, n // 10)
    print(f"# N={n:,} contacts, {args.workers} workers, PostgreSQL TLS verify-full", flush=True)
    full_csv, small_csv, changed_csv = root / "full.csv", root / "small.csv", root / "changed.csv"
    t, _ = timed(lambda: write_csv(full_csv, records(n)))
    write_csv(small_csv, records(small))
    write_csv(changed_csv, records(n, changed=0.01))
    print(f"generated CSV in {t:.1f}s ({full_csv.stat().st_size / 2**20:.0f} MiB)", flush=True)
    write_back()  # the files just written, before the first path

    # The machine is shared: the ceiling and the engine's runs, whose ratios
    # are the targets, are measured --repeat times and their medians taken.
    results: dict[str, float] = {}
    ceilings = []
    for _ in range(args.repeat):
        t, _ = timed(lambda: ceiling(full_csv, fresh_database(admin_dsn)))
        ceilings.append(t)
        settle(admin_dsn)
    results["ceiling"] = n / median(ceilings)
    baseline_n = min(n, args.baseline_n)
    t, _ = timed(lambda: naive(full_csv, fresh_database(admin_dsn), baseline_n))
    results["naive"] = baseline_n / t
    if not args.skip_dlt:
        settle(admin_dsn)
        t, _ = timed(lambda: with_dlt(full_csv, fresh_database(admin_dsn), baseline_n, root))
        results["dlt"] = baseline_n / t

    fulls, reruns, rss_full = [], [], 0
    inside: dict[str, list[float]] = {"full": [], "incremental": []}  # run_sync's own seconds
    for attempt in range(args.repeat):
        settle(admin_dsn)
        engine_dsn = fresh_database(admin_dsn)
        secrets = prepare_secrets(root / f"engine{attempt}", engine_dsn)
        t_full, summary, rss = engine(full_csv, secrets, "full", args.workers)
        settle_after_load(engine_dsn, admin_dsn)
        # Each re-run meets the loaded table: the first this database, the
        # others copies of it made now.
        copies = [fresh_database(admin_dsn, engine_dsn) for _ in range(args.reruns - 1)]
        checkpoint(admin_dsn)
        for dsn in [engine_dsn, *copies]:
            point_at(secrets, dsn)
            t_incr, incr, _ = engine(changed_csv, secrets, "incremental", args.workers)
            reruns.append(t_incr)
            inside["incremental"].append(incr["duration_seconds"])
            checkpoint(admin_dsn)  # the re-run's writes, before the next
        fulls.append(t_full)
        inside["full"].append(summary["duration_seconds"])
        rss_full = max(rss_full, rss)
    results["engine"] = n / median(fulls)
    settle(admin_dsn)
    small_secrets = prepare_secrets(root / "small", fresh_database(admin_dsn))
    _, _, rss_small = engine(small_csv, small_secrets, "full", args.workers)

    print(f"engine summary: {json.dumps({k: v for k, v in summary.items() if k != 'run_id'})}")
    print(
        f"incremental summary: read={incr['read']} updated={incr['updated']} "
        f"unchanged={incr['unchanged']}"
    )
    print()
    print(f"{'path':<10}{'contacts/s':>14}{'engine ratio':>16}")
    for name, rate in results.items():
        ratio = results["engine"] / rate
        print(f"{name:<10}{rate:>14,.0f}{ratio:>15.2f}x")
    print()
    print(f"engine / ceiling:        {results['engine'] / results['ceiling']:.2f}  (target >= 0.6)")
    if "dlt" in results:
        print(f"engine / dlt:            {results['engine'] / results['dlt']:.1f}  (target >= 3)")
    print(f"engine contacts/s:       {results['engine']:,.0f}  (target >= 40,000)")
    share = median(reruns) / median(fulls)
    print(f"incremental / full time: {share:.3f}  (target <= 0.05; 1% changed)")
    # The same, without what every run's process pays before the sync starts
    # (the interpreter, imports, the spec, the keyring): context, not the target.
    share = median(inside["incremental"]) / median(inside["full"])
    print(f"  inside the run:        {share:.3f}  (the summary's duration_seconds)")
    print(
        f"peak RSS N/10 -> N:      {rss_small / 2**20:.0f} MiB -> {rss_full / 2**20:.0f} MiB "
        f"(difference {(rss_full - rss_small) / 2**20:+.0f} MiB; target within 50)"
    )
    print()
    print(f"each run (the figures above are medians; {args.reruns} re-runs per full run):")
    for label, values in (("ceiling", ceilings), ("engine full", fulls), ("engine re-run", reruns)):
        print(f"  {label:<21}{', '.join(f'{value:.2f} s' for value in values)}")


if __name__ == "__main__":
    main()
