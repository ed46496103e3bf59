"""A real Prometheus server (Debian package) on loopback that scrapes whatever
targets a test names, every second, and answers PromQL over its HTTP API."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import yaml

from .net import free_port, wait_until
from .process import ManagedProcess

SCRAPE_INTERVAL = "1s"


def promtool() -> Path:
    found = shutil.which("promtool")
    if found is None:
        raise FileNotFoundError("promtool not found: install the Debian `prometheus` package")
    return Path(found)


class PrometheusServer:
    def __init__(self, root: Path) -> None:
        self.root = root / "prometheus"
        self.root.mkdir()
        self.config = self.root / "prometheus.yml"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._jobs: dict[str, dict[str, Any]] = {}
        self._rule_files: list[str] = []
        self._process: ManagedProcess | None = None

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus not found: install the Debian `prometheus` package")
        self._write_config()
        self._process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            self.root,
        )
        self._process.start()

    def wait(self, timeout: float = 60.0) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as http:
            wait_until(
                "prometheus",
                lambda: http.get("/-/ready").status_code == 200,
                timeout=timeout,
                process=self._process,
            )

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def scrape(self, job: str, targets: list[str], **options: Any) -> None:
        """Add (or replace) a scrape job and reload Prometheus."""
        self._jobs[job] = {"job_name": job, "static_configs": [{"targets": targets}], **options}
        self._reload()

    def load_rules(self, path: Path) -> None:
        """Evaluate a rule file (alerts, recording rules) every second from now on."""
        if str(path) not in self._rule_files:
            self._rule_files.append(str(path))
        self._reload()

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts, with their labels."""
        with httpx.Client(base_url=self.url, timeout=10) as http:
            body = http.get("/api/v1/alerts").raise_for_status().json()
        found: list[dict[str, Any]] = body["data"]["alerts"]
        return found

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """Run a range query; returns the result matrix."""
        with httpx.Client(base_url=self.url, timeout=30) as http:
            params: dict[str, str | float] = {
                "query": expr,
                "start": start,
                "end": end,
                "step": step,
            }
            body = http.get("/api/v1/query_range", params=params).raise_for_status().json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def _reload(self) -> None:
        self._write_config()
        with httpx.Client(base_url=self.url, timeout=10) as http:
            http.post("/-/reload").raise_for_status()

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Run an instant PromQL query; returns the result vector."""
        with httpx.Client(base_url=self.url, timeout=10) as http:
            response = http.get("/api/v1/query", params={"query": expr})
            response.raise_for_status()
            body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def _write_config(self) -> None:
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": list(self._jobs.values()),
            "rule_files": self._rule_files,
        }
        self.config.write_text(yaml.safe_dump(config))
