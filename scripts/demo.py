"""The README's main command (`make demo`): ContactSync end to end, locally.

Starts the test bed (a real Kubernetes API server, Prefect server and
PostgreSQL), installs the CRD, starts the operator, serves the sample contact
file over HTTPS (a private CA), applies examples/demo-contactsync.yaml, runs a
Prefect worker on this host in place of a cluster node, asks for a sync now,
waits for it, and prints `kubectl get csync -o wide`, the sync summary and
proof that the personal data in PostgreSQL is encrypted.

No kubelet runs here, so the operator is started with a `process` work pool:
the worker runs the flow as a local process, and Secrets are projected into a
local directory the way a kubelet would mount them. The `kubernetes` work pool
path (a hardened Job per run) is what production uses and what the e2e tests
prove against the API server.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
from kubernetes import client

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

from contactsync.engine.crypto import FieldCipher  # noqa: E402
from contactsync.engine.keyring import Keyring  # noqa: E402
from tests.testbed import TestBed, tools  # noqa: E402
from tests.testbed.net import free_port  # noqa: E402

NAMESPACE, NAME = "sales", "crm-demo"
GROUP, VERSION, PLURAL = "contactsync.dev", "v1alpha1", "contactsyncs"


def kubectl(bed: TestBed, *args: str, stdin: str | None = None) -> str:
    return bed.kube.kubectl(*args, stdin=stdin).stdout


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def serve_file(bed: TestBed, path: Path) -> tuple[str, http.server.HTTPServer]:
    """The sample file over HTTPS with a certificate from the bed's private CA."""
    pair = bed.ca.issue("contacts-files", hosts=("localhost", "127.0.0.1"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pair.cert, pair.key)
    body = path.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"https://localhost:{server.server_address[1]}/contacts.csv", server


def wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise SystemExit(f"demo: timed out waiting for {what}")


def start(argv: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="contactsync-demo-") as tmp, TestBed() as bed:
        work = Path(tmp)
        say(
            f"test bed ready in {bed.ready_seconds:.0f}s (Kubernetes {tools.KUBERNETES_VERSION}, "
            "Prefect, PostgreSQL)"
        )
        with psycopg.connect(bed.postgres.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE warehouse")
        kubectl(bed, "apply", "-f", str(REPO / "crds" / "contactsync.dev_contactsyncs.yaml"))
        kubectl(bed, "apply", "-f", str(REPO / "deploy" / "rbac" / "worker.yaml"))
        kubectl(bed, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}")
        kubectl(bed, "create", "namespace", NAMESPACE)
        kubectl(
            bed,
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "warehouse",
            f"--from-literal=dsn={bed.postgres.dsn('warehouse')}",
        )
        kubectl(
            bed,
            "-n",
            NAMESPACE,
            "create",
            "secret",
            "generic",
            "crm-ca",
            f"--from-file=ca.crt={bed.ca.cert_path}",
        )
        url, server = serve_file(bed, REPO / "examples" / "data" / "contacts.csv")
        say(f"serving examples/data/contacts.csv at {url}")

        secrets_dir = work / "secrets"
        metrics_port = free_port()
        common = {
            "KUBECONFIG": str(bed.kube.kubeconfig),
            "PREFECT_API_URL": bed.prefect.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        operator = start(
            [
                sys.executable,
                "-m",
                "kopf",
                "run",
                "--standalone",
                "-m",
                "contactsync.controller.handlers",
                f"--namespace={NAMESPACE}",
            ],
            work / "operator.log",
            **common,
            CONTACTSYNC_PREFECT_API_URL=bed.prefect.api_url,
            CONTACTSYNC_RESYNC_SECONDS="5",
            CONTACTSYNC_RETRY_SECONDS="2",
            CONTACTSYNC_WORK_POOL_TYPE="process",
            CONTACTSYNC_LOCAL_SECRETS_DIR=str(secrets_dir),
            CONTACTSYNC_METRICS_PORT=str(metrics_port),
            CONTACTSYNC_METRICS_ADDRESS="127.0.0.1",
            PYTHONPATH=f"{REPO / 'operator'}:{REPO}",
        )
        worker = None
        try:
            manifest = string.Template(
                (REPO / "examples" / "demo-contactsync.yaml").read_text()
            ).substitute(SOURCE_URL=url)
            print(kubectl(bed, "apply", "-f", "-", stdin=manifest).strip())
            with bed.kube.api_client() as api:
                custom = client.CustomObjectsApi(api)

                def get() -> dict[str, Any]:
                    found: dict[str, Any] = custom.get_namespaced_custom_object(
                        GROUP, VERSION, NAMESPACE, PLURAL, NAME
                    )
                    return found

                def condition(type_: str) -> dict[str, Any]:
                    for c in (get().get("status") or {}).get("conditions") or []:
                        if c["type"] == type_:
                            return dict(c)
                    return {}

                wait("Ready", lambda: condition("Ready").get("status") == "True", 90)
                say("ContactSync is Ready: children and Prefect work pool + deployment exist")
                bed.kube.project_secrets(
                    NAMESPACE, ["warehouse", "crm-ca", f"{NAME}-keys"], secrets_dir
                )
                pool = get()["status"]["prefect"]["workPoolName"]
                worker = bed.prefect.start_worker(
                    pool,
                    "process",
                    work / "worker.log",
                    PREFECT_SERVER_ANALYTICS_ENABLED="false",
                    CONTACTSYNC_SECRETS_DIR=str(secrets_dir),
                    PYTHONPATH=f"{REPO / 'operator'}:{REPO}",
                )
                say(f"Prefect worker polling work pool {pool}; requesting a sync now")
                custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    NAMESPACE,
                    PLURAL,
                    NAME,
                    {"metadata": {"annotations": {"contactsync.dev/sync-now": "demo-1"}}},
                )
                last = wait(
                    "the first sync to finish",
                    lambda: (get().get("status") or {}).get("lastSync"),
                    240,
                )
            print()
            print(kubectl(bed, "-n", NAMESPACE, "get", "csync", "-o", "wide"))
            say("sync summary (status.lastSync):")
            print(json.dumps(last, indent=2))
            say("the PII in PostgreSQL is ciphertext (first 24 bytes of each envelope):")
            with psycopg.connect(bed.postgres.dsn("warehouse")) as conn:
                rows = conn.execute(
                    "SELECT external_id, substr(email, 1, 24), substr(phone, 1, 24), company "
                    "FROM contacts ORDER BY external_id LIMIT 5"
                ).fetchall()
                # Every address in the sample file is at an "example" domain.
                plaintext = conn.execute(
                    "SELECT count(*) FROM contacts WHERE encode(email, 'escape') LIKE '%example%'"
                ).fetchone()
                first = conn.execute(
                    "SELECT source_id, email FROM contacts ORDER BY external_id LIMIT 1"
                ).fetchone()
                quarantined = conn.execute(
                    "SELECT position, reasons FROM contacts_quarantine ORDER BY position"
                ).fetchall()
            for external_id, email, phone, company in rows:
                print(
                    f"  {external_id}  email={bytes(email).hex()}  phone={bytes(phone).hex()}"
                    f"  company={company}"
                )
            print(f"  rows whose email column holds a readable address: {plaintext[0]}")
            keyring = Keyring.from_file(secrets_dir / f"{NAME}-keys" / "keyring.json")
            clear = FieldCipher(keyring).decrypt(
                bytes(first[1]), table="contacts", column="email", record_id=first[0]
            )
            say(f"decrypted with the operator-generated keys: {first[0]} email={clear}")
            say("quarantined records (encrypted at rest; reason codes only here):")
            for position, reasons in quarantined:
                print(f"  record {position}: {', '.join(reasons)}")
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            wanted = ("contactsync_last_run_records", "contactsync_runs_total")

            def sync_metrics() -> list[str]:
                text = httpx.get(metrics_url, timeout=10).text
                return [
                    line
                    for line in text.splitlines()
                    if line.startswith(wanted) and f'name="{NAME}"' in line and " 0.0" not in line
                ]

            lines = wait("the operator's metrics of the run", sync_metrics, 30)
            say(f"the operator's Prometheus metrics of this sync ({metrics_url}, non-zero):")
            for line in lines:
                print(f"  {line}")
            return 0 if last.get("state") == "COMPLETED" else 1
        finally:
            for process in (worker, operator):
                if process is not None and process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(30)
            server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
