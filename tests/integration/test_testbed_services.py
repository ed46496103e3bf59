"""Prefect, PostgreSQL and Prometheus in the bed are the real servers."""

from __future__ import annotations

import secrets
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.testbed import TestBed
from tests.testbed.net import free_port
from tests.testbed.pki import CertificateAuthority
from tests.testbed.prometheus import promtool


def test_prefect_work_pool_and_deployment_round_trip(bed: TestBed) -> None:
    with bed.prefect.client() as api:
        metadata = api.get("/collections/views/aggregate-worker-metadata").json()
        template = metadata["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]
        pool_name = f"smoke-{uuid.uuid4().hex[:8]}"
        created = api.post(
            "/work_pools/",
            json={
                "name": pool_name,
                "type": "kubernetes",
                "base_job_template": template,
                "concurrency_limit": 2,
            },
        )
        assert created.status_code == 201, created.text
        pool = api.get(f"/work_pools/{pool_name}").json()
        assert pool["type"] == "kubernetes"
        assert pool["concurrency_limit"] == 2
        assert pool["base_job_template"]["job_configuration"]["job_manifest"]["kind"] == "Job"

        flow = api.post("/flows/", json={"name": "smoke-flow"}).json()
        deployment = api.post(
            "/deployments/",
            json={
                "name": "smoke",
                "flow_id": flow["id"],
                "work_pool_name": pool_name,
                "entrypoint": "contactsync.flows:contact_sync",
                "parameters": {"mode": "full"},
                "paused": True,
            },
        )
        assert deployment.status_code in (200, 201), deployment.text
        read = api.get("/deployments/name/smoke-flow/smoke").json()
        assert read["id"] == deployment.json()["id"]
        assert read["work_pool_name"] == pool_name
        assert read["parameters"] == {"mode": "full"}
        assert read["paused"] is True


def test_postgres_verify_full_with_the_bed_ca(bed: TestBed) -> None:
    with psycopg.connect(bed.postgres.dsn()) as conn:
        row = conn.execute(
            "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None
    assert row[0] is True
    assert row[1] in ("TLSv1.2", "TLSv1.3")


def test_postgres_refuses_a_server_certificate_from_another_ca(
    bed: TestBed, tmp_path: Path
) -> None:
    stranger = CertificateAuthority(tmp_path, "some-other-ca")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(bed.postgres.dsn(cafile=stranger.cert_path), connect_timeout=5)


def test_postgres_refuses_plaintext_connections(bed: TestBed) -> None:
    plain = bed.postgres.dsn().split("?")[0] + "?sslmode=disable"
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain, connect_timeout=5)


def test_prometheus_scrapes_an_exporter_and_answers_queries(bed: TestBed) -> None:
    registry = CollectorRegistry()
    value = secrets.randbelow(10_000) + 1
    Gauge("testbed_smoke_value", "A value the smoke test expects back.", registry=registry).set(
        value
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        bed.prometheus.scrape("smoke", [f"127.0.0.1:{port}"])
        deadline = time.monotonic() + 30
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline and not result:
            result = bed.prometheus.query('testbed_smoke_value{job="smoke"}')
            time.sleep(0.5)
        assert result, "Prometheus never returned the scraped series"
        assert float(result[0]["value"][1]) == value  # type: ignore[index]

        exposition = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
        lint = subprocess.run(
            [str(promtool()), "check", "metrics"], input=exposition, capture_output=True, timeout=30
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        server.shutdown()
        thread.join()
