"""Least privilege, as the Helm chart installs it, proven on the real API server.

The chart is rendered by the real helm and applied server-side; the real
operator, started with the rendered Deployment's command and environment,
runs a whole ContactSync life cycle with its own ServiceAccount token (the
chart's), the real Prefect worker submits a flow run with the
token of the identity the operator made for it, and a matrix checks what each
of the three identities may and may not do, twice: with `kubectl auth can-i`
and with real requests made with the identity's own token (writes as dry runs,
which the API server authorises exactly like real ones).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.install.chart import CLUSTER_WIDE, render
from tests.testbed import TestBed, tools
from tests.testbed.net import free_port

from .conftest import GROUP, PLURAL, VERSION, Operator, wait_for
from .test_operator import SPEC, deployment, gone

OPERATOR_NAMESPACE, OPERATOR = "contactsync-system", "contactsync-operator"
WORKER, WORKER_ROLE = "contactsync-worker", "contactsync-prefect-worker"
API_KEY_SECRET = "contactsync-prefect-api"
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
SUBRESOURCE_VERBS = ("get", "update", "patch")  # the rest has no meaning on a subresource
# Where each API group is served; "" is the core group.
VERSIONS = {
    "": "v1",
    "apps": "v1",
    "batch": "v1",
    "rbac.authorization.k8s.io": "v1",
    "apiextensions.k8s.io": "v1",
    "events.k8s.io": "v1",
    "contactsync.dev": "v1alpha1",
}
# A status the API server's handler produced: the request got past authorisation.
AUTHORISED = {200, 201, 400, 404, 409, 422}
REFUSED = re.compile(
    r"forbidden|\b403\b|unauthorized|\b401\b|not enough permissions", re.IGNORECASE
)
TIMESTAMP = re.compile(r"^\[?[\d\- :,.]+\]?")  # "[2026-01-01 10:00:00,403]" or "10:00:00.403"


def refusals(log: Path) -> list[str]:
    """Lines of a log that report a request the API server refused."""
    lines = log.read_text(errors="replace").splitlines()
    return [line for line in lines if REFUSED.search(TIMESTAMP.sub("", line))]


def prefect_events(bed: TestBed, resource_id: str) -> list[dict[str, Any]]:
    with bed.prefect.client() as prefect:
        response = prefect.post(
            "/events/filter", json={"filter": {"any_resource": {"id": [resource_id]}}}
        )
    response.raise_for_status()
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def wait_finalised(operator: Operator, name: str) -> None:
    """Gone, finalizer removed. Kopf keeps the finalizer until a resync timer caught
    mid-run has exited, and looks again only every 60 s
    (settings.background.cancellation_polling)."""
    wait_for(
        f"{name}'s finalizer to be removed", lambda: gone(lambda: operator.get(name)), timeout=90
    )


def account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


# -- the matrix ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """May `verb` be done on `resource` ("plural[.group][/subresource]") in `namespace`
    (None: at cluster scope), optionally on the object `name`?"""

    verb: str
    resource: str
    namespace: str | None
    allowed: bool
    name: str | None = None

    @property
    def group(self) -> str:
        return self.resource.split("/")[0].partition(".")[2]

    @property
    def plural(self) -> str:
        return self.resource.split("/")[0].partition(".")[0]

    @property
    def subresource(self) -> str | None:
        parts = self.resource.split("/")
        return parts[1] if len(parts) > 1 else None

    def __str__(self) -> str:
        where = f"-n {self.namespace}" if self.namespace else "cluster-wide"
        target = f"{self.resource}/{self.name}" if self.name else self.resource
        return f"{self.verb} {target} {where}: expected {'yes' if self.allowed else 'no'}"


def exactly(namespace: str, resource: str, allowed: Iterable[str]) -> list[Check]:
    """Every verb on `resource`: the `allowed` ones granted, all others refused."""
    granted = set(allowed)
    verbs = SUBRESOURCE_VERBS if "/" in resource else VERBS
    assert granted <= set(verbs), granted
    return [Check(verb, resource, namespace, verb in granted) for verb in verbs]


def denied(
    namespace: str | None, resource: str, *verbs: str, name: str | None = None
) -> list[Check]:
    return [Check(verb, resource, namespace, False, name) for verb in verbs]


def can_i(bed: TestBed, user: str, check: Check) -> bool:
    target = check.resource.split("/")[0] + (f"/{check.name}" if check.name else "")
    query = [check.verb, target]
    if check.subresource:
        query.append(f"--subresource={check.subresource}")
    query += ["-A"] if check.namespace is None else ["-n", check.namespace]
    result = subprocess.run(
        [
            str(tools.kubectl()),
            f"--kubeconfig={bed.kube.kubeconfig}",
            "auth",
            "can-i",
            *query,
            f"--as={user}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip() in {"yes", "no"}, result.stderr
    return result.stdout.strip() == "yes"


def _probe(check: Check) -> tuple[str, str, dict[str, str], Any, dict[str, str]]:
    """The request that needs exactly `check`'s permission: method, path, query, body, headers."""
    group, version = check.group, VERSIONS[check.group]
    base = f"/apis/{group}/{version}" if group else "/api/v1"
    scope = f"{base}/namespaces/{check.namespace}" if check.namespace else base
    collection = f"{scope}/{check.plural}"
    name = check.name or "rbac-probe"
    item = f"{collection}/{name}"
    if check.subresource:
        # A subresource is reached through its object, whatever the verb.
        collection = item = f"{item}/{check.subresource}"
    dry_run = {"dryRun": "All"}
    body = {"metadata": {"name": name}}
    if check.verb == "bind":
        # Binding a role is creating a RoleBinding that names it.
        kind = "ClusterRole" if check.plural == "clusterroles" else "Role"
        return (
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{check.namespace}/rolebindings",
            dry_run,
            _role_binding(kind, name, check.namespace or ""),
            {},
        )
    if check.verb == "escalate":
        # Escalating is writing a role that grants more than its author holds.
        rules = [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]
        return "POST", collection, dry_run, {**body, "rules": rules}, {}
    if check.verb == "impersonate":
        user = account(check.namespace or "default", "default")
        as_user = user if check.plural == "serviceaccounts" else "rbac-probe"
        return (
            "GET",
            f"/api/v1/namespaces/{check.namespace}/configmaps",
            {},
            None,
            {"Impersonate-User": as_user},
        )
    if check.plural == "rolebindings" and check.verb in ("create", "update"):
        # Without a role to name, the escalation check would refuse even a permitted write.
        body = _role_binding("ClusterRole", WORKER_ROLE, check.namespace or "")
    return {
        "get": ("GET", item, {}, None, {}),
        "list": ("GET", collection, {}, None, {}),
        "watch": ("GET", collection, {"watch": "true", "timeoutSeconds": "1"}, None, {}),
        "create": ("POST", collection, dry_run, body, {}),
        "update": ("PUT", item, dry_run, body, {}),
        "patch": ("PATCH", item, dry_run, {}, {"Content-Type": "application/merge-patch+json"}),
        "delete": ("DELETE", item, dry_run, None, {}),
        "deletecollection": ("DELETE", collection, dry_run, None, {}),
    }[check.verb]


def _role_binding(kind: str, role: str, namespace: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "rbac-probe", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }


def status_with_token(api: client.ApiClient, check: Check) -> int:
    """Make the request with the identity's own token; its HTTP status."""
    method, path, query, body, headers = _probe(check)
    try:
        response = api.call_api(
            path,
            method,
            query_params=list(query.items()),
            header_params={"Accept": "application/json", **headers},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
        )
    except ApiException as exc:
        return int(exc.status)
    # A watch streams on: close rather than hand a busy connection back to the pool.
    response.close()
    response.release_conn()
    return int(response.status)


def allowed_with_token(api: client.ApiClient, check: Check) -> bool:
    status = status_with_token(api, check)
    assert status == 403 or status in AUTHORISED, f"{check}: HTTP {status}"
    return status != 403


def verify(bed: TestBed, namespace: str, name: str, checks: list[Check]) -> None:
    """Both views of every check agree with it; all mismatches are reported at once."""
    wrong = []
    with bed.kube.api_client(bed.kube.token_for(namespace, name)) as api:
        for check in checks:
            if can_i(bed, account(namespace, name), check) != check.allowed:
                wrong.append(f"kubectl auth can-i {check}")
            if check.verb != "*" and allowed_with_token(api, check) != check.allowed:
                wrong.append(f"token {check}")
    assert not wrong, "\n".join(wrong)


# -- the installation ----------------------------------------------------------------------


@dataclass
class Installed:
    operator: Operator  # runs as its own ServiceAccount, serving `operator.namespace` only
    other: str  # a namespace the operator does not serve
    kubeconfig: Path  # the operator ServiceAccount's


def chart_manifests(watched: str) -> list[dict[str, Any]]:
    """The chart's defaults, its operator serving the `watched` namespace only."""
    return render({"watch": {"namespaces": [watched]}}, namespace=OPERATOR_NAMESPACE)


def chart_operator(docs: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """`kopf run`'s arguments and the environment of the rendered operator Deployment,
    with the bed's Prefect, free local ports and the tests' pace."""
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["kopf", "run"]
    args = [
        f"--liveness=http://127.0.0.1:{free_port()}/healthz" if a.startswith("--liveness=") else a
        for a in container["command"][2:]
    ]
    env = {v["name"]: v["value"] for v in container["env"] if v["name"] != "HOME"}
    assert env["CONTACTSYNC_WORKER_CLUSTER_ROLE"] == WORKER_ROLE
    return args, env | {
        "CONTACTSYNC_RESYNC_SECONDS": "5",
        "CONTACTSYNC_RETRY_SECONDS": "2",
        "CONTACTSYNC_METRICS_PORT": str(free_port()),
    }


def ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as exc:
        if exc.status != 409:
            raise


def release(operator: Operator) -> None:
    """Drop the finalizers of what the stopped operator leaves behind, so that
    its namespace can go (the life-cycle test proves deletion itself)."""
    for item in operator.custom.list_namespaced_custom_object(
        GROUP, VERSION, operator.namespace, PLURAL
    )["items"]:
        operator.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            operator.namespace,
            PLURAL,
            item["metadata"]["name"],
            {"metadata": {"finalizers": None}},
        )


@pytest.fixture(scope="module")
def installed(bed: TestBed, crd: None) -> Iterator[Installed]:
    watched, other = f"rbac-{uuid.uuid4().hex[:8]}", f"rbac-other-{uuid.uuid4().hex[:8]}"
    docs = chart_manifests(watched)
    rendered, owned = (
        Path(bed.root) / f"chart-{watched}.yaml",
        Path(bed.root) / f"own-{watched}.yaml",
    )
    rendered.write_text(yaml.safe_dump_all(docs))
    # The worker's ClusterRole is shared with the other e2e modules: it stays.
    owned.write_text(yaml.safe_dump_all([d for d in docs if d["metadata"]["name"] != WORKER_ROLE]))
    with bed.kube.api_client() as admin:
        core = client.CoreV1Api(admin)
        for name in (OPERATOR_NAMESPACE, watched, other):
            ensure_namespace(core, name)
        bed.kube.kubectl("apply", "--server-side", "-f", str(rendered))
        kubeconfig = bed.kube.write_kubeconfig(
            Path(bed.root) / f"{OPERATOR}-{watched}.kubeconfig",
            bed.kube.token_for(OPERATOR_NAMESPACE, OPERATOR),
            OPERATOR,
        )
        operator = Operator(bed, watched, admin)
        args, env = chart_operator(docs)
        env["CONTACTSYNC_PREFECT_API_URL"] = bed.prefect.api_url
        operator.start(kubeconfig=kubeconfig, kopf_args=args, **env)
        try:
            # A ContactSync that lives through the module: its worker objects are
            # shared with every later one, and its identities fill the matrix.
            operator.secret("warehouse", {"dsn": "postgresql://warehouse.example/contacts"})
            operator.apply("steady", SPEC)
            operator.wait_condition("steady", "Ready", "True")
            yield Installed(operator, other, kubeconfig)
        finally:
            operator.stop()
            release(operator)
            bed.kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", str(owned))
            for name in (watched, other):
                core.delete_namespace(name)


# -- the operator, for real ----------------------------------------------------------------


def test_operator_runs_a_whole_lifecycle_with_its_own_token(
    bed: TestBed, installed: Installed
) -> None:
    operator = installed.operator
    ns = operator.namespace
    core, rbac, apps = (
        client.CoreV1Api(operator.api),
        client.RbacAuthorizationV1Api(operator.api),
        client.AppsV1Api(operator.api),
    )

    # Create: children (the shared worker objects patched to a second owner) and Prefect.
    operator.apply("crm", {**SPEC, "serviceAccount": {"annotations": {"iam.example/role": "a"}}})
    operator.wait_condition("crm", "Ready", "True")
    assert (
        core.read_namespaced_service_account("crm-sync", ns).automount_service_account_token
        is False
    )
    assert "keyring.json" in core.read_namespaced_secret("crm-keys", ns).data
    owners = {operator.get(name)["metadata"]["uid"] for name in ("steady", "crm")}
    shared = [
        core.read_namespaced_service_account(WORKER, ns),
        rbac.read_namespaced_role_binding(WORKER, ns),
        apps.read_namespaced_deployment(f"prefect-worker-contactsync-{ns}", ns),
    ]
    for child in shared:
        assert {o.uid for o in child.metadata.owner_references} == owners, child.metadata.name
    assert rbac.read_namespaced_role_binding(WORKER, ns).role_ref.name == WORKER_ROLE
    assert deployment(bed, ns, "crm") is not None
    wait_for(
        "the operator's Events",
        lambda: core.list_namespaced_event(ns, field_selector="involvedObject.name=crm").items,
    )

    # Update: a new schedule reaches Prefect, new annotations the sync ServiceAccount.
    operator.patch(
        "crm",
        {
            "spec": {
                "schedule": {"cron": "0 * * * *", "timezone": "UTC"},
                "serviceAccount": {"annotations": {"iam.example/role": "b"}},
            }
        },
    )
    wait_for(
        "the new schedule in Prefect",
        lambda: (
            [s["schedule"]["cron"] for s in (deployment(bed, ns, "crm") or {})["schedules"]]
            == ["0 * * * *"]
        ),
    )
    wait_for(
        "the sync ServiceAccount to be patched",
        lambda: (
            (core.read_namespaced_service_account("crm-sync", ns).metadata.annotations or {})
            == {"iam.example/role": "b"}
        ),
    )

    # Key rotation patches the key Secret.
    before = operator.get("crm")["status"]["keys"]["primaryKeyId"]
    operator.patch("crm", {"metadata": {"annotations": {"contactsync.dev/rotate-keys": "1"}}})
    wait_for(
        "the rotated keyring",
        lambda: (
            (keys := operator.get("crm")["status"]["keys"]).get("rotation") == "1"
            and keys["primaryKeyId"] != before
        ),
    )

    # Drift repair: a deleted child comes back.
    core.delete_namespaced_service_account("crm-sync", ns)
    wait_for(
        "the sync ServiceAccount to come back",
        lambda: not gone(lambda: core.read_namespaced_service_account("crm-sync", ns)),
    )

    # Delete: the Prefect deployment goes, then the finalizer.
    operator.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "crm")
    wait_for("the Prefect deployment to be deleted", lambda: deployment(bed, ns, "crm") is None)
    wait_finalised(operator, "crm")

    assert refusals(operator.log) == []


def test_prefect_worker_submits_a_flow_run_with_its_own_token(
    bed: TestBed, installed: Installed
) -> None:
    """The worker the operator deployed, run locally (there is no kubelet) with the
    Deployment's own command and environment, as its ServiceAccount."""
    operator = installed.operator
    ns = operator.namespace
    core, batch = client.CoreV1Api(operator.api), client.BatchV1Api(operator.api)
    operator.secret(API_KEY_SECRET, {"api-key": "pnu_rbac-test-key"})
    worker = client.AppsV1Api(operator.api).read_namespaced_deployment(
        f"prefect-worker-contactsync-{ns}", ns
    )
    container = worker.spec.template.spec.containers[0]
    environment = {"PATH": os.environ["PATH"]}
    for variable in container.env:
        if variable.value_from is None:
            environment[variable.name] = variable.value
        else:
            ref = variable.value_from.secret_key_ref
            data = core.read_namespaced_secret(ref.name, ns).data
            environment[variable.name] = base64.b64decode(data[ref.key]).decode()
    home = Path(bed.root) / f"worker-{ns}"
    home.mkdir()
    environment |= {
        "HOME": str(home),  # the pod's private emptyDir
        "PREFECT_WORKER_WEBSERVER_PORT": str(free_port()),  # 8080 in the pod
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # test pace
        "KUBECONFIG": str(
            bed.kube.write_kubeconfig(home / "kubeconfig", bed.kube.token_for(ns, WORKER), WORKER)
        ),
    }
    log = Path(bed.root) / f"worker-{ns}.log"
    assert container.args[0] == "prefect"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), *container.args[1:]],
        env=environment,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deployment_id = operator.get("steady")["status"]["prefect"]["deploymentId"]
        with bed.prefect.client() as prefect:
            run = prefect.post(f"/deployments/{deployment_id}/create_flow_run", json={}).json()
        job = wait_for(
            "the worker to create the Job",
            lambda: next(
                iter(
                    batch.list_namespaced_job(
                        ns, label_selector=f"prefect.io/flow-run-id={run['id']}"
                    ).items
                ),
                None,
            ),
        )
        template = job.spec.template.spec
        assert template.service_account_name == "steady-sync"
        assert template.automount_service_account_token is False
        env = {e.name: e for e in template.containers[0].env}
        key = env["PREFECT_API_KEY"]
        assert key.value is None  # a reference, never the value
        assert (key.value_from.secret_key_ref.name, key.value_from.secret_key_ref.key) == (
            API_KEY_SECRET,
            "api-key",
        )
        secrets = {s.metadata.name for s in core.list_namespaced_secret(ns).items}
        assert not [name for name in secrets if name.startswith("prefect-")]

        # The worker's observer watches the namespace: standing in for the Job
        # controller (the bed runs none), a pod of the Job appears, and the
        # observer reports its phase to Prefect.
        pod = core.create_namespaced_pod(
            ns,
            client.V1Pod(
                metadata=client.V1ObjectMeta(
                    name=f"{job.metadata.name}-pod", labels=job.spec.template.metadata.labels
                ),
                spec=job.spec.template.spec,
            ),
        )
        wait_for(
            "the observer's pod event in Prefect",
            lambda: prefect_events(bed, f"prefect.kubernetes.pod.{pod.metadata.uid}"),
            timeout=30,
        )
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:  # it waits on its runs; nothing to keep here
            os.killpg(process.pid, 9)
            process.wait(10)
    assert refusals(log) == []


def test_operator_matrix(bed: TestBed, installed: Installed) -> None:
    ns, other = installed.operator.namespace, installed.other
    lookalike = client.V1Role(
        metadata=client.V1ObjectMeta(name=WORKER_ROLE),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get", "list"])],
    )
    client.RbacAuthorizationV1Api(installed.operator.api).create_namespaced_role(ns, lookalike)
    checks = [
        *exactly(ns, "contactsyncs.contactsync.dev", ["list", "watch", "patch"]),
        *exactly(ns, "contactsyncs.contactsync.dev/status", ["patch"]),
        *exactly(ns, "events", ["create"]),
        *exactly(ns, "serviceaccounts", ["get", "create", "patch"]),
        *exactly(ns, "rolebindings.rbac.authorization.k8s.io", ["get", "create", "patch"]),
        *exactly(ns, "deployments.apps", ["get", "create", "patch"]),
        *exactly(ns, "secrets", ["get", "create", "patch"]),
        # Escalation prevention: only the worker's role may be bound.
        Check("bind", "clusterroles.rbac.authorization.k8s.io", ns, True, WORKER_ROLE),
        *[
            Check("bind", "clusterroles.rbac.authorization.k8s.io", ns, False, role)
            for role in ("admin", "edit", "view", "cluster-admin")
        ],
        # Nor a namespace's Role that merely shares the worker role's name.
        *denied(ns, "roles.rbac.authorization.k8s.io", "bind", name=WORKER_ROLE),
        *denied(ns, "roles.rbac.authorization.k8s.io", "escalate", "create"),
        *denied(None, "clusterroles.rbac.authorization.k8s.io", "escalate", "create"),
        *denied(ns, "users", "impersonate"),
        *denied(ns, "serviceaccounts", "impersonate"),
        *denied(ns, "serviceaccounts/token", "create"),
        *denied(ns, "pods", "create", "get"),
        *denied(ns, "pods/exec", "create"),
        *denied(ns, "jobs.batch", "create"),
        *denied(ns, "configmaps", "get"),
        *denied(ns, "events.events.k8s.io", "create"),
        *denied(ns, "*", "*"),
        # Namespaced mode: nothing in a namespace it does not serve, nothing cluster-wide.
        *denied(other, "secrets", "get", "create", "patch"),
        *denied(other, "contactsyncs.contactsync.dev", "list", "patch"),
        *denied(other, "serviceaccounts", "create"),
        *denied(None, "contactsyncs.contactsync.dev", "list", "watch"),
        *denied(None, "namespaces", "list"),
        *denied(None, "customresourcedefinitions.apiextensions.k8s.io", "list"),
        *denied(None, "*", "*"),
    ]
    verify(bed, OPERATOR_NAMESPACE, OPERATOR, checks)


def test_worker_matrix(bed: TestBed, installed: Installed) -> None:
    ns, other = installed.operator.namespace, installed.other
    checks = [
        *exactly(ns, "jobs.batch", ["create", "get", "list", "watch", "delete"]),
        *exactly(ns, "pods", ["get", "list", "watch"]),
        *exactly(ns, "pods/log", ["get"]),
        *exactly(ns, "secrets", []),
        *exactly(ns, "rolebindings.rbac.authorization.k8s.io", []),
        *denied(ns, "secrets", "get", name=API_KEY_SECRET),
        *denied(ns, "pods/exec", "create"),
        *denied(ns, "pods/attach", "create"),
        *denied(ns, "serviceaccounts/token", "create"),
        *denied(ns, "configmaps", "get", "list"),
        *denied(ns, "events", "list"),
        *denied(ns, "clusterroles.rbac.authorization.k8s.io", "bind", name=WORKER_ROLE),
        *denied(ns, "*", "*"),
        *denied(other, "jobs.batch", "create", "list", "delete"),
        *denied(other, "pods", "list"),
        *denied(None, "jobs.batch", "list", "watch"),
        *denied(None, "pods", "list", "watch"),
    ]
    verify(bed, ns, WORKER, checks)


def test_sync_job_account_may_do_nothing(bed: TestBed, installed: Installed) -> None:
    ns = installed.operator.namespace
    sync = client.CoreV1Api(installed.operator.api).read_namespaced_service_account(
        "steady-sync", ns
    )
    assert sync.automount_service_account_token is False
    checks = [
        *exactly(ns, "secrets", []),
        *denied(ns, "secrets", "get", name="warehouse"),
        *denied(ns, "secrets", "get", name="steady-keys"),
        *denied(ns, "configmaps", "get", "list", "watch"),
        *denied(ns, "pods", "get", "list", "watch", "create"),
        *denied(ns, "jobs.batch", "get", "list", "watch", "create"),
        *denied(ns, "contactsyncs.contactsync.dev", "list"),
        *denied(ns, "*", "*"),
        *denied(None, "*", "*"),
    ]
    verify(bed, ns, "steady-sync", checks)


def test_cluster_wide_mode(bed: TestBed, installed: Installed) -> None:
    """With the ClusterRoleBinding the same rules hold in every namespace, no more."""
    anywhere = f"rbac-cw-{uuid.uuid4().hex[:8]}"
    binding = str(Path(bed.root) / "chart-cluster-wide-binding.yaml")
    Path(binding).write_text(
        yaml.safe_dump_all(
            render(
                CLUSTER_WIDE,
                "--show-only=templates/rbac/bindings.yaml",
                namespace=OPERATOR_NAMESPACE,
            )
        )
    )
    user = account(OPERATOR_NAMESPACE, OPERATOR)
    secret_in_anywhere = Check("get", "secrets", anywhere, True)
    with bed.kube.api_client() as admin:
        core = client.CoreV1Api(admin)
        ensure_namespace(core, anywhere)
        bed.kube.kubectl("apply", "--server-side", "-f", binding)
        operator = Operator(bed, anywhere, admin)
        try:
            wait_for("the binding to take effect", lambda: can_i(bed, user, secret_in_anywhere))
            verify(
                bed,
                OPERATOR_NAMESPACE,
                OPERATOR,
                [
                    Check("list", "contactsyncs.contactsync.dev", None, True),
                    Check("watch", "contactsyncs.contactsync.dev", None, True),
                    *exactly(anywhere, "secrets", ["get", "create", "patch"]),
                    *exactly(anywhere, "deployments.apps", ["get", "create", "patch"]),
                    Check(
                        "bind",
                        "clusterroles.rbac.authorization.k8s.io",
                        anywhere,
                        True,
                        WORKER_ROLE,
                    ),
                    *denied(
                        anywhere, "clusterroles.rbac.authorization.k8s.io", "bind", name="admin"
                    ),
                    *denied(None, "secrets", "list"),
                    *denied(None, "namespaces", "list"),
                    *denied(None, "*", "*"),
                ],
            )
            # The real operator, in a namespace it holds no RoleBinding in.
            operator.start(kubeconfig=installed.kubeconfig)
            operator.secret("warehouse", {"dsn": "x"})
            operator.apply("crm", SPEC)
            operator.wait_condition("crm", "Ready", "True")
            operator.custom.delete_namespaced_custom_object(GROUP, VERSION, anywhere, PLURAL, "crm")
            wait_finalised(operator, "crm")
            assert refusals(operator.log) == []
        finally:
            operator.stop()
            release(operator)
            bed.kube.kubectl("delete", "-f", binding)
            wait_for("the binding to be gone", lambda: not can_i(bed, user, secret_in_anywhere))
            core.delete_namespace(anywhere)
