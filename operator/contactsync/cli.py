"""The `contactsync` command line.

Subcommands arrive with the parts of the product they drive; each one prints
machine-readable output where other tools depend on it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="contactsync",
        description="Secure contact-data synchronisation on Kubernetes with Prefect 3.",
    )
    parser.add_argument("--version", action="version", version=f"contactsync {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
