"""Operator-wide settings, from the environment (the Helm chart sets them).

The Prefect API URL and key are the operator's own configuration: a
ContactSync never carries Prefect credentials.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    prefect_api_url: str
    prefect_api_key: str | None = None
    # What sync Jobs and workers run; images are named without a registry host
    # here and configured per installation.
    sync_image: str = "contactsync/sync:0.1.0"
    worker_image: str = "contactsync/worker:0.1.0"
    worker_cluster_role: str = "contactsync-prefect-worker"
    # A Secret (in each namespace, optional) holding `api-key` for workers.
    worker_api_secret: str = "contactsync-prefect-api"  # noqa: S105 - a Secret's name
    # "process" runs flows on the worker's own host: for the local demo only, where
    # no kubelet exists; production uses "kubernetes" (a hardened Job per run).
    work_pool_type: str = "kubernetes"
    local_secrets_dir: str | None = None  # "process" pools: where Secrets are projected
    # Concurrent Prefect writes: 2 suits Prefect on SQLite (one writer at a
    # time; more turns into 503 storms); Prefect on PostgreSQL takes more.
    prefect_write_concurrency: int = 2
    resync_seconds: float = 300.0
    retry_seconds: float = 15.0
    # /metrics: its own port (0: off); TLS when a certificate and key are given
    # (files from a mounted kubernetes.io/tls Secret); mTLS with a client CA.
    metrics_port: int = 8080
    # In a pod, Prometheus scrapes the pod IP; the chart's NetworkPolicy says who may.
    metrics_address: str = "0.0.0.0"  # noqa: S104
    metrics_cert_file: str | None = None
    metrics_key_file: str | None = None
    metrics_client_ca_file: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        key_file = env.get("CONTACTSYNC_PREFECT_API_KEY_FILE")
        url = env.get("CONTACTSYNC_PREFECT_API_URL") or env.get("PREFECT_API_URL")
        if not url:
            raise RuntimeError("set CONTACTSYNC_PREFECT_API_URL to the Prefect API URL")
        tls = [env.get(f"CONTACTSYNC_METRICS_TLS_{part}_FILE") for part in ("CERT", "KEY")]
        if any(tls) and not all(tls):
            raise RuntimeError(
                "set both CONTACTSYNC_METRICS_TLS_CERT_FILE and CONTACTSYNC_METRICS_TLS_KEY_FILE"
            )
        if env.get("CONTACTSYNC_METRICS_TLS_CLIENT_CA_FILE") and not all(tls):
            raise RuntimeError("CONTACTSYNC_METRICS_TLS_CLIENT_CA_FILE needs the TLS certificate")
        return cls(
            prefect_api_url=url.rstrip("/"),
            prefect_api_key=Path(key_file).read_text().strip() if key_file else None,
            sync_image=env.get("CONTACTSYNC_SYNC_IMAGE", cls.sync_image),
            worker_image=env.get("CONTACTSYNC_WORKER_IMAGE", cls.worker_image),
            worker_cluster_role=env.get("CONTACTSYNC_WORKER_CLUSTER_ROLE", cls.worker_cluster_role),
            worker_api_secret=env.get("CONTACTSYNC_WORKER_API_SECRET", cls.worker_api_secret),
            work_pool_type=env.get("CONTACTSYNC_WORK_POOL_TYPE", cls.work_pool_type),
            local_secrets_dir=env.get("CONTACTSYNC_LOCAL_SECRETS_DIR"),
            # A floor keeps a misconfiguration from hammering Prefect.
            prefect_write_concurrency=max(
                1, int(env.get("CONTACTSYNC_PREFECT_WRITE_CONCURRENCY", "2"))
            ),
            resync_seconds=max(5.0, float(env.get("CONTACTSYNC_RESYNC_SECONDS", "300"))),
            retry_seconds=max(1.0, float(env.get("CONTACTSYNC_RETRY_SECONDS", "15"))),
            metrics_port=int(env.get("CONTACTSYNC_METRICS_PORT", str(cls.metrics_port))),
            metrics_address=env.get("CONTACTSYNC_METRICS_ADDRESS", cls.metrics_address),
            metrics_cert_file=env.get("CONTACTSYNC_METRICS_TLS_CERT_FILE"),
            metrics_key_file=env.get("CONTACTSYNC_METRICS_TLS_KEY_FILE"),
            metrics_client_ca_file=env.get("CONTACTSYNC_METRICS_TLS_CLIENT_CA_FILE"),
        )
