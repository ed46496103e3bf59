"""A real PostgreSQL server with TLS required: `initdb` into the bed's temp dir,
a server certificate from the bed's CA, and a pg_hba.conf that accepts only
`hostssl` connections with SCRAM passwords, so clients can (and must) use
`sslmode=verify-full`.

PostgreSQL refuses to run as root; when the harness is root (as in CI) the
server runs as the Debian `postgres` user through `setpriv`.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote

from .net import free_port, wait_until
from .pki import CertificateAuthority
from .process import ManagedProcess

SUPERUSER = "postgres"


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise FileNotFoundError(f"{name} not found: install the Debian `postgresql` package")


class PostgresServer:
    def __init__(self, root: Path, ca: CertificateAuthority) -> None:
        self.root = root / "postgres"
        self.root.mkdir()
        self.data = self.root / "data"
        self.ca = ca
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self._as_root = os.geteuid() == 0
        self._process: ManagedProcess | None = None

    def _as_owner(self, argv: list[str]) -> list[str]:
        if not self._as_root:
            return argv
        return [
            "setpriv",
            f"--reuid={SUPERUSER}",
            f"--regid={SUPERUSER}",
            "--clear-groups",
            "--pdeathsig=TERM",
            "--",
            *argv,
        ]

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password)
        tls = self.ca.issue("postgres", hosts=("localhost", "127.0.0.1"))
        for path in (tls.cert, tls.key):
            shutil.copy(path, self.root / path.name)
        if self._as_root:
            owner = pwd.getpwnam(SUPERUSER)
            for path in (self.root, pwfile, self.root / tls.cert.name, self.root / tls.key.name):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            self._as_owner(
                [
                    _bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        pwfile.unlink()
        (self.data / "pg_hba.conf").write_text(
            "# TLS only: there is deliberately no plain `host` line.\n"
            "local    all all           scram-sha-256\n"
            "hostssl  all all 127.0.0.1/32 scram-sha-256\n"
            "hostssl  all all ::1/128      scram-sha-256\n"
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            "ssl": "on",
            "ssl_cert_file": str(self.root / tls.cert.name),
            "ssl_key_file": str(self.root / tls.key.name),
            "ssl_min_protocol_version": "TLSv1.2",
            "password_encryption": "scram-sha-256",
            # A throw-away server: durability buys nothing here and costs the
            # shared disk; benchmarks compare ratios measured on this same server.
            "fsync": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        argv = [_bin("postgres"), "-D", str(self.data)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        self._process = ManagedProcess(
            "postgres", self._as_owner(argv), self.root, stop_signal=signal.SIGINT
        )
        if self._as_root:
            self._process.log_path.touch()
        self._process.start()

    def dsn(self, database: str = "postgres", *, cafile: Path | None = None) -> str:
        """A libpq URI that verifies the server against the bed CA (or `cafile`)."""
        root_cert = cafile or self.ca.cert_path
        return (
            f"postgresql://{SUPERUSER}:{quote(self.password)}@localhost:{self.port}/{database}"
            f"?sslmode=verify-full&sslrootcert={root_cert}"
        )

    def prefect_database(self, database: str = "prefect") -> dict[str, str]:
        """Prefect server settings for a database here, over verified TLS (the
        database is created if needed)."""
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if exists.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{database}"')
        tls = "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_TLS"
        return {
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                f"postgresql+asyncpg://{SUPERUSER}:{quote(self.password)}"
                f"@localhost:{self.port}/{database}"
            ),
            f"{tls}_ENABLED": "true",
            f"{tls}_CA_FILE": str(self.ca.cert_path),
            f"{tls}_CHECK_HOSTNAME": "true",
        }

    def wait(self, timeout: float = 60.0) -> None:
        import psycopg

        def ready() -> bool:
            with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True

        wait_until("postgres", ready, timeout=timeout, process=self._process)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
