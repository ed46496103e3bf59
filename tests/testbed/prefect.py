"""A real Prefect 3 server (`prefect server start`) with SQLite in the bed's
temp dir (or a PostgreSQL database, as production runs it), telemetry and UI
off, on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .net import free_port, wait_until
from .process import ManagedProcess


class _RetryBusy(httpx.HTTPTransport):
    """Prefect on SQLite answers 503 while another writer (the operator under
    test) holds the database, having done nothing: the bed's own calls send the
    request again, a few times, as the operator and Prefect's client do."""

    ATTEMPTS = 8
    PAUSE = 0.25  # seconds, doubled each time: about 30 s in all

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(self.ATTEMPTS - 1):
            response = super().handle_request(request)
            if response.status_code != 503:
                return response
            response.close()
            time.sleep(self.PAUSE * 2**attempt)
        return super().handle_request(request)


class PrefectServer:
    def __init__(self, root: Path) -> None:
        self.home = root / "prefect"
        self.home.mkdir()
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._process: ManagedProcess | None = None

    def start(self, database: dict[str, str] | None = None) -> None:
        """`database`: Prefect's database settings; SQLite in the bed's dir by default."""
        sqlite = self.home / "prefect.db"
        env = {
            **os.environ,
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{sqlite}",
            **(database or {}),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            # Scheduled runs appear within seconds, not a minute, so tests see them.
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
        }
        env.pop("PREFECT_API_URL", None)
        self._process = ManagedProcess(
            "prefect-server",
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-ui",
                "--analytics-off",
            ],
            self.home,
            env=env,
            cwd=self.home,
        )
        self._process.start()

    def wait(self, timeout: float = 120.0) -> None:
        with httpx.Client(base_url=self.api_url, timeout=5) as http:
            wait_until(
                "prefect server",
                lambda: http.get("/health").status_code == 200,
                timeout=timeout,
                process=self._process,
            )

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def start_worker(
        self, pool: str, worker_type: str, log: Path | None = None, **env: str
    ) -> subprocess.Popen[bytes]:
        """A real `prefect worker start` polling `pool` on this server, in a session
        of its own (stop it with os.killpg or terminate)."""
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                pool,
                "--type",
                worker_type,
            ],
            env={**os.environ, "PREFECT_API_URL": self.api_url, **env},
            stdout=log.open("wb") if log else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api_url, timeout=30, transport=_RetryBusy())
