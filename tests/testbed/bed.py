"""The whole test bed: one object that starts every real server in parallel,
hands out their addresses, and leaves nothing behind when it stops."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from . import tools
from .kube import ControlPlane
from .pki import CertificateAuthority
from .postgres import PostgresServer
from .prefect import PrefectServer
from .prometheus import PrometheusServer


class TestBed:
    __test__ = False  # not a pytest test class

    def __init__(self, *, prefect_on_postgres: bool = False) -> None:
        """`prefect_on_postgres`: Prefect's database in the bed's PostgreSQL (as in
        production) instead of SQLite, which serialises every write."""
        self.prefect_on_postgres = prefect_on_postgres
        self.root = Path(tempfile.mkdtemp(prefix="contactsync-bed-"))
        # Traversable (not listable) by the unprivileged postgres user when run as root.
        self.root.chmod(0o711)
        self.ca = CertificateAuthority(self.root)
        self.kube = ControlPlane(self.root, self.ca)
        self.prefect = PrefectServer(self.root)
        self.postgres = PostgresServer(self.root, self.ca)
        self.prometheus = PrometheusServer(self.root)
        self.ready_seconds: float | None = None

    def start(self) -> TestBed:
        """Start every part; the binaries are built first so no server waits on a build."""
        tools.kubebed()
        started = time.monotonic()
        try:
            # Processes are launched from this thread only (their parent-death
            # signal is tied to it); only the waiting happens in threads.
            self.kube.start_storage_and_api()
            self.postgres.start()
            self.prometheus.start()
            if self.prefect_on_postgres:
                self.postgres.wait()
                self.prefect.start(self.postgres.prefect_database())
            else:
                self.prefect.start()
            self._wait_all(
                [self.kube.wait_api, self.prefect.wait, self.postgres.wait, self.prometheus.wait]
            )
            self.kube.start_controller_manager()
            self.kube.wait_controller_manager()
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        errors: list[Exception] = []
        for part in (self.kube, self.prometheus, self.prefect, self.postgres):
            try:
                part.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                errors.append(exc)
        shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise errors[0]

    def env(self) -> dict[str, str]:
        """What a shell, the operator or a benchmark needs to use the bed."""
        return {
            "KUBECONFIG": str(self.kube.kubeconfig),
            "PREFECT_API_URL": self.prefect.api_url,
            "CONTACTSYNC_TEST_POSTGRES_DSN": self.postgres.dsn(),
            "PROMETHEUS_URL": self.prometheus.url,
            "CONTACTSYNC_TEST_CA": str(self.ca.cert_path),
            "KUBECTL": str(tools.kubectl()),
        }

    def __enter__(self) -> TestBed:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _wait_all(waits: list[Callable[[], None]]) -> None:
        with ThreadPoolExecutor(max_workers=len(waits)) as pool:
            for future in [pool.submit(wait) for wait in waits]:
                future.result()
