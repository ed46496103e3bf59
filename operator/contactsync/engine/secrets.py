"""Credentials and keys come only from Secret-mounted files.

Kubernetes mounts each Secret the sync needs as a directory
`<root>/<secret-name>/` with one file per key; the local CLI reads the same
layout from `--secrets-dir`. Values are never logged, and errors name the
Secret and key, never the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from contactsync.api.spec import SecretKeyRef, SecretRef

DEFAULT_ROOT = Path("/var/run/secrets/contactsync")
ROOT_ENV = "CONTACTSYNC_SECRETS_DIR"


class SecretMissingError(RuntimeError):
    pass


class SecretStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT))

    def path(self, ref: SecretKeyRef) -> Path:
        path = self.root / ref.name / ref.key
        if not path.is_file():
            raise SecretMissingError(f"Secret {ref.name!r} key {ref.key!r} is not mounted")
        return path

    def read(self, ref: SecretKeyRef) -> str:
        # Secrets created with `kubectl create secret --from-file` often end in a newline.
        return self.path(ref).read_text(encoding="utf-8").rstrip("\r\n")

    def directory(self, ref: SecretRef) -> Path:
        path = self.root / ref.name
        if not path.is_dir():
            raise SecretMissingError(f"Secret {ref.name!r} is not mounted")
        return path
