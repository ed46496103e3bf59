"""Observability end to end: real syncs on the test bed, the real Prometheus
scraping two real operators and evaluating the alert rules, and every alert
and dashboard query answered with data.

The scene (built once for the module):

* operator A (admin identity, `process` work pool so flows run on this host,
  /metrics over TLS) serves namespace `obs-…` with
  - `good`: the sample contacts (12 records, 3 invalid) into PostgreSQL:
    a committed run with rejects (ContactSyncRejectRatioHigh);
  - `guard`: a full sync of 10 contacts, then of 2: the second run is refused
    by the mass-delete guard (ContactSyncDeleteGuardBlocked, ContactSyncRunFailing);
  - `stale`: a daily schedule whose last successful run ended three days ago
    (ContactSyncStale). Prefect's API sets a run's end time to the moment it
    finishes, so the run is made real and then aged in Prefect's database
    while the object's reconciliation is paused;
  - `missing`: references a Secret that does not exist (ContactSyncNotReady).
* operator B runs with a ServiceAccount that may not read Secrets and a
  Prefect URL nothing listens on: its reconciles fail with 403
  (ContactSyncOperatorReconcileErrors) and its Prefect probe fails
  (ContactSyncPrefectUnreachable).
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from kubernetes import client

from tests.integration.engine.sync_helpers import contact, write_csv
from tests.observability import REPO, RULES, alert_rules, dashboard, panel_queries
from tests.testbed import TestBed
from tests.testbed.net import free_port
from tests.testbed.prometheus import promtool

from .conftest import Operator, wait_for

pytestmark = pytest.mark.bed


@dataclass
class Scene:
    bed: TestBed
    namespace: str
    a: Operator
    b: Operator
    metrics_url: str  # operator A, https
    ca: Path
    stale_success: datetime
    started: float


def _spec(table: str, path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "source": {"type": "csv", "path": str(path)},
        "destination": {
            "type": "postgres",
            "dsnSecretRef": {"name": "warehouse", "key": "dsn"},
            "table": table,
        },
        "validation": {"maxRejectRatio": 0.5},
        **extra,
    }


def _request_sync(op: Operator, name: str, value: str) -> None:
    op.patch(name, {"metadata": {"annotations": {"contactsync.dev/sync-now": value}}})


def _age_flow_run(bed: TestBed, flow_run_id: str, by: timedelta) -> None:
    """Move a finished run's start and end back in time, in Prefect's own database."""
    with sqlite3.connect(bed.prefect.home / "prefect.db", timeout=30) as db:
        row = db.execute(
            "SELECT start_time, end_time FROM flow_run WHERE id = ?", (flow_run_id,)
        ).fetchone()
        assert row is not None, flow_run_id
        assert row[1] is not None, row

        def earlier(stored: str) -> str:
            moved = datetime.fromisoformat(stored) - by
            return moved.isoformat(sep=" " if " " in stored else "T")

        db.execute(
            "UPDATE flow_run SET start_time = ?, end_time = ? WHERE id = ?",
            (earlier(row[0] or row[1]), earlier(row[1]), flow_run_id),
        )


def _restricted_operator(bed: TestBed, namespace: str, root: Path) -> Path:
    """A kubeconfig for an operator that may watch ContactSyncs but not read Secrets."""
    manifest = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: operator-b, namespace: {namespace}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: operator-b, namespace: {namespace}}}
rules:
  - apiGroups: [contactsync.dev]
    resources: [contactsyncs]
    verbs: [list, watch, patch]
  - apiGroups: [contactsync.dev]
    resources: [contactsyncs/status]
    verbs: [patch]
  - apiGroups: [""]
    resources: [events]
    verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: operator-b, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: operator-b}}
subjects: [{{kind: ServiceAccount, name: operator-b, namespace: {namespace}}}]
"""
    bed.kube.kubectl("apply", "-f", "-", stdin=manifest)
    token = bed.kube.token_for(namespace, "operator-b")
    return bed.kube.write_kubeconfig(root / "operator-b.kubeconfig", token, "operator-b")


@pytest.fixture(scope="module")
def scene(bed: TestBed, crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    started = time.time()
    root = tmp_path_factory.mktemp("observability")
    suffix = uuid.uuid4().hex[:8]
    namespace, namespace_b = f"obs-{suffix}", f"obs-b-{suffix}"
    database = f"obs_{suffix}"
    with psycopg.connect(bed.postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")
    secrets_dir = root / "secrets"
    pair = bed.ca.issue(f"operator-metrics-{suffix}")
    processes: list[subprocess.Popen[bytes]] = []
    with bed.kube.api_client() as api:
        core = client.CoreV1Api(api)
        for ns in (namespace, namespace_b):
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
        a, b = Operator(bed, namespace, api), Operator(bed, namespace_b, api)
        a.secret("warehouse", {"dsn": bed.postgres.dsn(database)})
        a.start(
            CONTACTSYNC_WORK_POOL_TYPE="process",
            CONTACTSYNC_LOCAL_SECRETS_DIR=str(secrets_dir),
            CONTACTSYNC_METRICS_TLS_CERT_FILE=str(pair.cert),
            CONTACTSYNC_METRICS_TLS_KEY_FILE=str(pair.key),
        )
        b.start(
            _restricted_operator(bed, namespace_b, root),
            CONTACTSYNC_PREFECT_API_URL=f"http://127.0.0.1:{free_port()}/api",
        )
        # Scraped from the start, so counters are seen rising with each run.
        metrics_url = f"https://localhost:{a.metrics_port}/metrics"
        bed.prometheus.scrape(
            f"contactsync-a-{suffix}",
            [f"localhost:{a.metrics_port}"],
            scheme="https",
            tls_config={"ca_file": str(bed.ca.cert_path)},
        )
        bed.prometheus.scrape(f"contactsync-b-{suffix}", [f"127.0.0.1:{b.metrics_port}"])
        bed.prometheus.load_rules(RULES)
        try:
            good_csv = REPO / "examples" / "data" / "contacts.csv"
            guard_csv = write_csv(root / "guard.csv", [contact(n) for n in range(1, 11)])
            daily = {"cron": f"0 {(datetime.now(UTC).hour + 12) % 24} * * *"}
            a.apply("good", _spec("contacts_good", good_csv, schedule={"intervalSeconds": 3600}))
            a.apply(
                "guard",
                _spec(
                    "contacts_guard",
                    guard_csv,
                    mode="full",
                    safety={"maxDeleteRatio": 0.2},
                    schedule=daily,
                ),
            )
            a.apply("stale", _spec("contacts_stale", good_csv, schedule=daily))
            missing = _spec("contacts_missing", good_csv)
            missing["destination"]["dsnSecretRef"]["name"] = "no-such-secret"
            a.apply("missing", missing)
            b.apply("refused", _spec("contacts_b", good_csv))
            for name in ("good", "guard", "stale"):
                a.wait_condition(name, "Ready", "True", timeout=120)
            a.wait_condition("missing", "Ready", "False", "SecretNotFound")

            # A run that succeeded three days ago, before its daily schedule's
            # threshold (2 days + 10 minutes): paused, so it is tracked only once aged.
            a.patch("stale", {"metadata": {"annotations": {"contactsync.dev/reconcile": "paused"}}})
            a.wait_condition("stale", "ReconciliationPaused", "True")
            deployment = a.get("stale")["status"]["prefect"]["deploymentId"]
            with bed.prefect.client() as prefect:
                run = prefect.post(
                    f"/deployments/{deployment}/create_flow_run",
                    json={"state": {"type": "RUNNING", "name": "Running"}},
                ).json()
                prefect.post(
                    f"/flow_runs/{run['id']}/set_state",
                    json={"state": {"type": "COMPLETED", "name": "Completed"}, "force": True},
                ).raise_for_status()
            _age_flow_run(bed, run["id"], timedelta(days=3))
            a.patch("stale", {"metadata": {"annotations": {"contactsync.dev/reconcile": None}}})

            bed.kube.project_secrets(
                namespace, ["warehouse", "good-keys", "guard-keys", "stale-keys"], secrets_dir
            )
            pool = a.get("good")["status"]["prefect"]["workPoolName"]
            processes.append(
                bed.prefect.start_worker(
                    pool, "process", root / "worker.log", CONTACTSYNC_SECRETS_DIR=str(secrets_dir)
                )
            )
            _request_sync(a, "good", "1")
            _request_sync(a, "guard", "1")
            for name in ("good", "guard"):
                a.wait_condition(name, "LastSyncSucceeded", "True", timeout=240)
            write_csv(guard_csv, [contact(1), contact(2)])  # 8 of 10 would go: refused
            _request_sync(a, "guard", "2")
            a.wait_condition("guard", "LastSyncSucceeded", "False", "DeleteRatioExceeded", 240)
            stale_success = datetime.fromisoformat(
                wait_for(
                    "the aged run in status", lambda: a.get("stale")["status"].get("lastSuccessAt")
                )
            )
            httpx.get(f"http://127.0.0.1:{b.liveness_port}/healthz", timeout=30)  # Prefect probe

            yield Scene(bed, namespace, a, b, metrics_url, bed.ca.cert_path, stale_success, started)
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
            a.stop()
            b.stop()


def scrape(scene: Scene) -> str:
    return httpx.get(
        scene.metrics_url, verify=ssl.create_default_context(cafile=scene.ca), timeout=10
    ).text


def query_until_data(scene: Scene, expr: str, timeout: float = 90) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = wait_for(
        f"data for {expr}", lambda: scene.bed.prometheus.query(expr), timeout
    )
    return found


def test_promtool_accepts_a_real_scrape(scene: Scene) -> None:
    text = scrape(scene)
    assert 'contactsync_runs_total{name="good"' in text
    result = subprocess.run(
        [str(promtool()), "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_metrics_follow_the_runs(scene: Scene) -> None:
    ns = scene.namespace

    def value(expr: str) -> float:
        (sample,) = query_until_data(scene, expr)
        return float(sample["value"][1])

    sel = f'namespace="{ns}", name="good"'
    # examples/data/contacts.csv: 12 records, 3 rejected, 8 inserted, 1 merged.
    assert value(f'contactsync_last_run_records{{{sel}, outcome="read"}}') == 12
    assert value(f'contactsync_last_run_records{{{sel}, outcome="rejected"}}') == 3
    assert value(f'contactsync_last_run_records{{{sel}, outcome="inserted"}}') == 8
    assert value(f'contactsync_records_total{{{sel}, outcome="read"}}') >= 12
    assert value(f"sum(contactsync_rejected_records_total{{{sel}}})") >= 3
    # Scraped before the first run: the dashboard's per-hour panels see it.
    assert value(f'increase(contactsync_records_total{{{sel}, outcome="read"}}[1h])') > 0
    assert value(f'contactsync_runs_total{{{sel}, state="COMPLETED"}}') >= 1
    assert value(f'contactsync_status_condition{{{sel}, type="Ready", status="True"}}') == 1
    assert value(f"contactsync_schedule_max_interval_seconds{{{sel}}}") == 3600
    assert value(f"contactsync_next_run_timestamp_seconds{{{sel}}}") > time.time() - 60
    guard = f'namespace="{ns}", name="guard"'
    assert value(f'contactsync_last_run_failed{{{guard}, reason="DeleteRatioExceeded"}}') == 1
    assert value(f'contactsync_runs_total{{{guard}, state="FAILED"}}') == 1
    assert value(f'contactsync_runs_total{{{guard}, state="COMPLETED"}}') == 1
    stale = f'namespace="{ns}", name="stale"'
    assert value(f"contactsync_last_success_timestamp_seconds{{{stale}}}") == pytest.approx(
        scene.stale_success.timestamp()
    )
    assert value(f"contactsync_schedule_max_interval_seconds{{{stale}}}") == 86400
    assert value('contactsync_operator_prefect_up{job=~"contactsync-b-.*"}') == 0
    errors = 'contactsync_operator_kubernetes_api_errors_total{kind="Secret", code="403"}'
    assert value(f"sum({errors})") >= 1


def test_every_alert_expression_returns_data(scene: Scene) -> None:
    for rule in alert_rules():
        assert query_until_data(scene, rule["expr"]), rule["alert"]


def test_prometheus_evaluates_the_rules_into_alerts(scene: Scene) -> None:
    """Every alert at least pending on the real Prometheus; those without `for` firing."""

    def states() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for alert in scene.bed.prometheus.alerts():
            labels = alert["labels"]
            if labels.get("namespace", scene.namespace) == scene.namespace:
                found.setdefault(labels["alertname"], set()).add(alert["state"])
        return found

    expected = {rule["alert"] for rule in alert_rules()}
    seen = wait_for("every alert pending or firing", lambda: expected <= set(states()) and states())
    assert "firing" in seen["ContactSyncDeleteGuardBlocked"]
    assert "firing" in seen["ContactSyncRejectRatioHigh"]


def test_every_dashboard_query_returns_data(scene: Scene) -> None:
    board = dashboard()
    for title, _ in panel_queries(board):
        candidates = [
            expr
            for name in ("good", "guard", "stale")
            for t, expr in panel_queries(board, scene.namespace, name)
            if t == title
        ]
        assert wait_for(
            f"panel {title!r}",
            lambda c=candidates: any(scene.bed.prometheus.query(e) for e in c),
            90,
        ), title


def test_no_secret_or_personal_data_in_metrics(scene: Scene) -> None:
    text = scrape(scene) + httpx.get(f"http://127.0.0.1:{scene.b.metrics_port}/metrics").text
    for needle in (
        scene.bed.postgres.password,
        "example.com",  # every address in the sample file
        "contacts.csv",
        "warehouse",
        "sslrootcert",
    ):
        assert needle not in text, needle


def test_dashboard_picture_is_drawn_from_prometheus(scene: Scene, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "render_dashboard", REPO / "scripts" / "render_dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    out = Path(os.environ.get("CONTACTSYNC_DASHBOARD_PNG") or tmp_path / "dashboard.png")
    drawn = render.render(
        render.prometheus_query(scene.bed.prometheus.url),
        out,
        scene.namespace,
        "good",
        (time.time() - scene.started) / 60 + 0.5,
    )
    assert set(drawn) == set(render.MAIN_PANELS)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_deleted_contactsync_leaves_the_metrics(scene: Scene) -> None:
    assert 'name="missing"' in scrape(scene)
    scene.a.custom.delete_namespaced_custom_object(
        "contactsync.dev", "v1alpha1", scene.namespace, "contactsyncs", "missing"
    )
    wait_for("the deleted object's series to go", lambda: 'name="missing"' not in scrape(scene))


def test_liveness_reports_prefect_without_failing(scene: Scene) -> None:
    """A Prefect outage shows in /healthz and the metrics, but never fails the
    liveness probe: restarting the operator cannot fix Prefect."""
    for operator, reachable in ((scene.a, True), (scene.b, False)):
        health = httpx.get(f"http://127.0.0.1:{operator.liveness_port}/healthz", timeout=30)
        assert health.status_code == 200
        assert health.json()["prefect"] is reachable
