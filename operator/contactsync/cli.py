"""The `contactsync` command line.

Output meant for other tools is one JSON document on stdout; errors are one
line on stderr. Exit codes: 0 success, 1 the operation ran and failed (a sync
refused or broke, an audit log that does not verify), 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from . import __version__


class UsageError(Exception):
    """Bad usage or unreadable input: exit 2 with a one-line message."""


def _fail(code: int, message: str) -> int:
    print(f"contactsync: {message}", file=sys.stderr)
    return code


def _print_json(document: object) -> None:
    json.dump(document, sys.stdout, separators=(",", ":"), sort_keys=False)
    sys.stdout.write("\n")


# -- validate ------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from .engine.records import Contact, validate_record
    from .engine.sources.files import CsvSource, JsonlSource, open_path

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"cannot read {path}: no such file")
    reader = CsvSource if args.format == "csv" else JsonlSource
    source = reader(open_path(path))
    valid, reasons, rejects = 0, Counter[str](), []
    try:
        for batch in source.batches(since=None, batch_size=5_000):
            for raw in batch:
                codes = (
                    [raw.error]
                    if raw.error
                    else validate_record(raw.fields, default_region=args.default_region)
                )
                if isinstance(codes, Contact):
                    valid += 1
                    continue
                codes = [str(code) for code in codes]
                reasons.update(codes)
                rejects.append({"record": raw.position, "reasons": codes})
    except (OSError, UnicodeError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {type(exc).__name__}") from exc
    _print_json(
        {"valid": valid, "rejected": len(rejects), "reasons": dict(reasons), "rejects": rejects}
    )
    return 0


# -- sync ----------------------------------------------------------------------------


def _load_manifest(path: str) -> Any:
    from .api.spec import ContactSync

    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read manifest {path}: {type(exc).__name__}") from exc
    try:
        return ContactSync.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise UsageError(f"invalid manifest {path}: {where}: {first['msg']}") from exc


def cmd_sync(args: argparse.Namespace) -> int:
    import os

    manifest = _load_manifest(args.file)
    from .engine.secrets import ROOT_ENV

    if args.secrets_dir:
        os.environ[ROOT_ENV] = str(Path(args.secrets_dir).resolve())
    if args.audit_log:
        os.environ["CONTACTSYNC_AUDIT_LOG"] = str(Path(args.audit_log).resolve())
    # Local runs use Prefect's ephemeral server: nothing may leave the machine.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from .flows.contact_sync import contact_sync

    try:
        state = contact_sync(
            spec=manifest.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            namespace=manifest.metadata.namespace,
            name=manifest.metadata.name,
            uid=manifest.metadata.uid or "",
            return_state=True,
        )
        summary = state.result()
    except Exception as exc:  # noqa: BLE001 - any failure of the run is reported, not raised
        return _fail(1, f"sync failed: {exc}")
    _print_json(summary)
    return 0


# -- stored data: reencrypt, export ---------------------------------------------------


def _postgres_destination(args: argparse.Namespace) -> tuple[str, str, frozenset[str], Any]:
    """conninfo, table, encrypted columns and keyring of a manifest's PostgreSQL destination."""
    from .engine.keyring import Keyring
    from .engine.pg import secure_conninfo
    from .engine.pipeline import SyncIdentity, keyring_ref
    from .engine.prepare import COLUMNS
    from .engine.secrets import SecretMissingError, SecretStore

    manifest = _load_manifest(args.file)
    destination = manifest.spec.destination
    if destination.type != "postgres":
        raise UsageError(f"{args.command} works on postgres destinations, not {destination.type}")
    secrets = SecretStore(Path(args.secrets_dir) if args.secrets_dir else None)
    identity = SyncIdentity(manifest.metadata.namespace, manifest.metadata.name)
    try:
        keyring = Keyring.from_file(secrets.path(keyring_ref(manifest.spec, identity)))
        dsn = secrets.read(destination.dsn_secret_ref)
    except SecretMissingError as exc:
        raise UsageError(str(exc)) from exc
    encrypted = frozenset(COLUMNS[field] for field in manifest.spec.encryption.fields)
    return secure_conninfo(dsn, destination.tls, secrets), destination.table, encrypted, keyring


def cmd_reencrypt(args: argparse.Namespace) -> int:
    from .engine.crypto import FieldCipher
    from .engine.maintenance import reencrypt_postgres

    conninfo, table, encrypted, keyring = _postgres_destination(args)
    counts = reencrypt_postgres(
        conninfo,
        table=table,
        encrypted_columns=encrypted,
        cipher=FieldCipher(keyring),
        batch_size=args.batch_size,
    )
    _print_json({"primary": keyring.primary_id, **vars(counts)})
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .engine.crypto import FieldCipher
    from .engine.csvsafe import write_csv
    from .engine.maintenance import (
        EXPORT_HEADER,
        QUARANTINE_HEADER,
        export_contacts,
        export_quarantine,
    )

    conninfo, table, encrypted, keyring = _postgres_destination(args)
    cipher = FieldCipher(keyring)
    if args.quarantine:
        header, rows = QUARANTINE_HEADER, export_quarantine(conninfo, table=table, cipher=cipher)
    else:
        header, rows = (
            EXPORT_HEADER,
            export_contacts(conninfo, table=table, encrypted_columns=encrypted, cipher=cipher),
        )
    if args.out:
        target = Path(args.out)
        target.touch(mode=0o600)  # decrypted PII: readable by its owner only
        with target.open("w", newline="", encoding="utf-8") as out:
            write_csv(out, header, rows)
    else:
        write_csv(sys.stdout, header, rows)
    return 0


# -- keys ----------------------------------------------------------------------------


def cmd_keys(args: argparse.Namespace) -> int:
    from .engine.keyring import Keyring, KeyringError

    if args.action == "generate":
        keyring = Keyring.generate()
    else:
        try:
            keyring = Keyring.from_file(args.keyring).rotated()
        except (OSError, KeyringError) as exc:
            raise UsageError(str(exc)) from exc
    text = keyring.to_json()
    if args.write:
        target = Path(args.write)
        partial = target.with_name(f".{target.name}.partial")
        partial.touch(mode=0o600)
        partial.write_text(text)
        partial.rename(target)
        print(json.dumps({"primary": keyring.primary_id, "keys": list(keyring.key_ids)}))
    else:
        sys.stdout.write(text + "\n")
    return 0


# -- audit ---------------------------------------------------------------------------


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from .engine.audit import verify_audit

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"cannot read {path}: no such file")
    problems = verify_audit(path)
    for problem in problems:
        print(problem, file=sys.stderr)
    _print_json({"ok": not problems, "problems": [str(p) for p in problems]})
    return 1 if problems else 0


# -- parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contactsync",
        description="Secure contact-data synchronisation on Kubernetes with Prefect 3.",
    )
    parser.add_argument("--version", action="version", version=f"contactsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = commands.add_parser("validate", help="validate a file without writing anything")
    validate.add_argument("file")
    validate.add_argument("--format", choices=["csv", "jsonl"], required=True)
    validate.add_argument("--default-region", default="US")
    validate.add_argument("--output", choices=["json"], default="json")
    validate.set_defaults(handler=cmd_validate)

    sync = commands.add_parser("sync", help="run one sync locally from a ContactSync manifest")
    sync.add_argument("-f", "--file", required=True, help="a ContactSync manifest (YAML)")
    sync.add_argument("--secrets-dir", help="Secrets as mounted: DIR/<secret-name>/<key>")
    sync.add_argument("--audit-log", help="append the run's audit records to this file")
    sync.add_argument("--output", choices=["json"], default="json")
    sync.set_defaults(handler=cmd_sync)

    for name, handler, text in [
        ("reencrypt", cmd_reencrypt, "re-encrypt stored rows under the primary key (resumable)"),
        ("export", cmd_export, "export contacts (or --quarantine) as formula-safe CSV"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument("-f", "--file", required=True, help="the ContactSync manifest")
        command.add_argument("--secrets-dir", help="Secrets as mounted: DIR/<secret-name>/<key>")
        command.set_defaults(handler=handler)
        if name == "reencrypt":
            command.add_argument("--batch-size", type=int, default=1_000)
        else:
            command.add_argument("--quarantine", action="store_true")
            command.add_argument("--out", help="write to this file (mode 0600), not stdout")

    keys = commands.add_parser("keys", help="generate or rotate a keyring")
    keys.add_argument("action", choices=["generate", "rotate"])
    keys.add_argument("--keyring", help="the keyring.json to rotate")
    keys.add_argument("--write", help="write the keyring to this file (mode 0600)")
    keys.set_defaults(handler=cmd_keys)

    audit = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="verify an audit log's hash chain")
    verify.add_argument("file")
    verify.set_defaults(handler=cmd_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "keys" and args.action == "rotate" and not args.keyring:
        return _fail(2, "keys rotate needs --keyring FILE")
    try:
        result: int = args.handler(args)
    except UsageError as exc:
        return _fail(2, str(exc))
    return result


def entry() -> None:
    """The `contactsync` command: `main`, then exit. Freezing first spares the
    exit the collector's last walk over every object the imports made (about
    50 ms, psycopg's hundreds of error classes most of it): objects are still
    freed as their last reference goes, only cycles are left to the end of
    the process."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
