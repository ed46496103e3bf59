"""Operator latency, Prefect calls and memory for N ContactSyncs, against
baselines measured in the same run.

    PYTHONPATH=operator:. .venv/bin/python benchmarks/operator_latency.py [--n 200] [--resync 30]

On a fresh test bed (kube-apiserver + Prefect server on loopback) it installs
the CRD and the worker ClusterRole, creates one namespace with the Secret every
ContactSync references, and starts the operator (`kopf run`) as a child
process whose Prefect API URL points at a counting reverse proxy in this
process. Then:

  baseline  N ConfigMaps created the same way as the ContactSyncs (raw API
            server create latency); a first ContactSync (it creates the shared
            work pool and worker), then three more one at a time on the idle
            operator (the operator's floor latency per object)
  create    N ContactSyncs created as fast as the API server accepts them
            (or --rate per second: the latency at a sustained arrival rate);
            a watch records when each turns Ready=True
  resync    after all are Ready, a window of --cycles full resync rounds
            (every object's timer fired at least once per round)

and prints apply->Ready p50/p99, time until all N are Ready, Prefect reads and
writes per ContactSync (create) and per resync, Kubernetes API requests by
verb and resource per object (from the API server's own metrics), a
per-object breakdown of where the latency goes, CPU by process, and the
operator's peak RSS. Nothing is asserted: figures are printed next to their
targets. Resyncs run every --resync seconds (30 by default, so they overlap
the create phase, as on a busy cluster); retries wait --retry seconds, the
operator's own default.

What-ifs, to test a suspected bottleneck without changing the operator:

  --absorb-503            the proxy retries Prefect's 503s (SQLite busy) with a
                          short backoff, as Prefect's own client would
  --executor-workers K    Kopf runs sync handlers in a K-thread pool instead
                          of Python's default (cpus + 4)
  --resync 300 --cycles 0 the production resync interval: no resync overlaps
                          the creates
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO)]

import httpx  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from benchmarks.proctree import tree_status  # noqa: E402
from tests.testbed import TestBed, tools  # noqa: E402
from tests.testbed.net import free_port, wait_until  # noqa: E402
from tests.testbed.process import ManagedProcess  # noqa: E402

CRD = REPO / "crds" / "contactsync.dev_contactsyncs.yaml"
WORKER_CLUSTER_ROLE = REPO / "deploy" / "rbac" / "worker.yaml"
GROUP, VERSION, PLURAL = "contactsync.dev", "v1alpha1", "contactsyncs"
SECRET = "warehouse"
SPEC: dict[str, Any] = {
    "source": {"type": "csv", "path": "/data/contacts.csv"},
    "destination": {
        "type": "postgres",
        "table": "contacts",
        "dsnSecretRef": {"name": SECRET, "key": "dsn"},
    },
    "schedule": {"cron": "*/15 * * * *", "timezone": "UTC"},
}
TARGETS = {"p50": 1.0, "p99": 5.0, "all": 60.0, "rss": 200.0}
SAMPLE_SECONDS = 0.2
WARM = ["warmup-0", "warmup-1", "warmup-2", "warmup-3"]  # created one by one, before the N
SETTLE_SECONDS = 3.0  # lets the trailing calls of the last resync of a round land


# -- small helpers -------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 200 is the 198th value)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil without float surprises
    return ordered[int(rank) - 1]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def kube_client(bed: TestBed, pool: int) -> client.ApiClient:
    """An admin client whose connection pool fits `pool` concurrent requests."""
    configuration = client.Configuration()
    config.load_kube_config(
        config_file=str(bed.kube.kubeconfig), client_configuration=configuration
    )
    configuration.connection_pool_maxsize = pool
    return client.ApiClient(configuration)


def contactsync(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ContactSync",
        "metadata": {"name": name},
        "spec": SPEC,
    }


def ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return None


# -- the counting Prefect proxy ------------------------------------------------------------

# Path segments kept verbatim when naming an operation; anything else (ids,
# names) becomes `*`, so calls group by endpoint rather than by object.
ENDPOINT_WORDS = {
    "work_pools",
    "deployments",
    "name",
    "flows",
    "flow_runs",
    "filter",
    "collections",
    "views",
    "aggregate-worker-metadata",
    "artifacts",
    "create_flow_run",
    "health",
}
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


def endpoint(method: str, path: str, api_prefix: str) -> str:
    path = path.split("?", 1)[0].removeprefix(api_prefix)
    words: list[str] = []
    for part in path.strip("/").split("/"):
        word = part if part in ENDPOINT_WORDS else "*"
        if not (word == "*" and words and words[-1] == "*"):
            words.append(word)
    return f"{method} /{'/'.join(words)}"


@dataclass(frozen=True)
class Call:
    at: float  # wall clock when the request arrived
    endpoint: str
    write: bool  # as PrefectApi counts writes: not GET and not a /filter query
    status: int
    seconds: float  # upstream round trip, the part Prefect itself costs
    subject: str | None  # the ContactSync a deployment read/create names, if any
    resync_of: str | None  # the deployment id a resync's flow-run query names


def subject_of(method: str, path: str, body: bytes, namespace: str) -> str | None:
    """The ContactSync name a deployment call is about (deployments are `{ns}.{name}`)."""
    marker = f"/deployments/name/contact-sync/{namespace}."
    if method == "GET" and marker in path:
        return path.split(marker, 1)[1].split("?", 1)[0]
    if method == "POST" and path.rstrip("/").endswith("/deployments"):
        name = str(json.loads(body or b"{}").get("name", ""))
        return name.removeprefix(f"{namespace}.") or None
    return None


def resync_of(method: str, path: str, body: bytes) -> str | None:
    """The deployment a resync is tracking, or None.

    Only the resync timer asks for a deployment's recent runs newest first
    (tracking.track), once per object per resync: counting these from the
    outside counts resyncs without touching the operator process.
    """
    if method != "POST" or not path.endswith("/flow_runs/filter"):
        return None
    query = json.loads(body or b"{}")
    if query.get("sort") != "END_TIME_DESC":
        return None
    ids = ((query.get("deployments") or {}).get("id") or {}).get("any_") or []
    return str(ids[0]) if ids else None


class CountingProxy:
    """A stdlib reverse proxy in a thread that records every request it forwards.

    HTTP/1.1 keep-alive on both sides, one upstream connection per client
    connection, so the proxy adds a loopback hop but no connection setup.
    """

    def __init__(self, upstream_url: str, namespace: str, absorb_503: bool = False) -> None:
        parts = urlsplit(upstream_url)
        self.absorb_503 = absorb_503
        self.absorbed = 0
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.prefix = parts.path.rstrip("/")
        self.namespace = namespace
        self.calls: list[Call] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def between(self, start: float, end: float) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if start <= c.at < end]

    def count_absorbed(self) -> None:
        with self._lock:
            self.absorbed += 1

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def _leave(self, call: Call) -> None:
        with self._lock:
            self.in_flight -= 1
            self.calls.append(call)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request would drown the benchmark's output

            def forward(self) -> None:
                arrived = time.time()
                proxy._enter()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                started = time.perf_counter()
                try:
                    status, headers, payload = self._upstream(body)
                    # What-if: retry 503s (Prefect's "retry me", SQLite busy) with a short
                    # backoff, as Prefect's own client does, instead of failing the reconcile.
                    for attempt in range(5 if proxy.absorb_503 else 0):
                        if status != 503:
                            break
                        proxy.count_absorbed()
                        time.sleep(0.05 * 2**attempt)
                        status, headers, payload = self._upstream(body)
                finally:
                    seconds = time.perf_counter() - started
                method, path = self.command, self.path
                proxy._leave(
                    Call(
                        at=arrived,
                        endpoint=endpoint(method, path, proxy.prefix),
                        write=method != "GET" and not path.split("?")[0].endswith("/filter"),
                        status=status,
                        seconds=seconds,
                        subject=subject_of(method, path, body, proxy.namespace),
                        resync_of=resync_of(method, path, body),
                    )
                )
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _upstream(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                for attempt in (1, 2):  # a kept-alive upstream connection may have closed
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                    try:
                        self.upstream.request(self.command, self.path, body=body, headers=headers)
                        response = self.upstream.getresponse()
                        return response.status, response.getheaders(), response.read()
                    except (OSError, http.client.HTTPException):
                        self.upstream.close()
                        self.upstream = None
                        if attempt == 2:
                            return 502, [], b"proxy: upstream failed"
                raise AssertionError("unreachable")

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = forward

        return Handler


def prefect_figures(calls: list[Call], per: int) -> tuple[float, float, float]:
    """(reads, writes, Prefect seconds) per unit, e.g. per ContactSync or per resync."""
    if per == 0:
        return float("nan"), float("nan"), float("nan")
    writes = sum(c.write for c in calls)
    return (len(calls) - writes) / per, writes / per, sum(c.seconds for c in calls) / per


def print_endpoints(calls: list[Call], per: int, unit: str) -> None:
    counts = Counter(c.endpoint for c in calls)
    times: dict[str, float] = dict.fromkeys(counts, 0.0)
    for c in calls:
        times[c.endpoint] += c.seconds
    for name, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        mean_ms = 1000 * times[name] / count
        print(f"    {name:<42}{count / per:>8.2f} per {unit}   ({mean_ms:.1f} ms mean)")


# -- Kubernetes API server metrics ---------------------------------------------------------

METRIC_LINE = re.compile(r"^(?P<name>\w+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')
# What the operator reads and writes; leases, namespaces... are the bed's own traffic.
RESOURCES = {"contactsyncs", "secrets", "serviceaccounts", "rolebindings", "deployments", "events"}
ETCD_WRITES = {"create", "update", "delete"}


def apiserver_requests(api: client.ApiClient) -> Counter[str]:
    """What the API server has done so far: requests by `VERB resource[/subresource]`,
    and the writes that reached etcd by `etcd <operation> resource`.

    A PATCH that changes nothing is answered without an etcd update, so the etcd
    counter tells real writes from no-op ones. The counters see every client (the
    operator, this script, the controller-manager): differences over a window matter.
    """
    response = api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    totals: Counter[str] = Counter()
    for line in response.data.decode().splitlines():
        match = METRIC_LINE.match(line)
        if not match:
            continue
        labels = dict(LABEL.findall(match["labels"]))
        value = int(float(match["value"]))
        resource = labels.get("resource", "") or "-"
        if match["name"] == "apiserver_request_total":
            if labels.get("subresource"):
                resource += f"/{labels['subresource']}"
            totals[f"{labels.get('verb', '?')} {resource}"] += value
        elif match["name"] == "etcd_requests_total" and labels.get("operation") in ETCD_WRITES:
            totals[f"etcd {labels['operation']} {resource}"] += value
    return totals


def print_apiserver(delta: Counter[str], per: int, unit: str) -> None:
    mine = {k: v for k, v in delta.items() if k.split()[-1].split("/")[0] in RESOURCES}
    requests = {k: v for k, v in mine.items() if not k.startswith("etcd ")}
    for key, count in sorted(requests.items(), key=lambda kv: -kv[1]):
        print(f"    {key:<42}{count / per:>8.2f} per {unit}")
    total = sum(requests.values()) / per
    print(f"    {'total requests (those resources)':<42}{total:>8.2f} per {unit}")
    writes = sorted(((v, k) for k, v in mine.items() if k.startswith("etcd ")), reverse=True)
    print(
        "    writes that reached etcd: "
        + (", ".join(f"{k.removeprefix('etcd ')} {v / per:.2f}" for v, k in writes) or "none")
        + f" per {unit}"
    )


# -- watching ContactSyncs -----------------------------------------------------------------


@dataclass
class Seen:
    """What the watch saw of one ContactSync, in wall-clock seconds."""

    first_modified: float | None = None  # Kopf's first write (its finalizer): picked up
    ready: float | None = None  # first event with Ready=True
    transition: str | None = None  # that condition's lastTransitionTime
    deployment_id: str | None = None
    modified: list[float] = field(default_factory=list)  # every write to the object
    not_ready_reasons: set[str] = field(default_factory=set)


class ReadyWatch:
    """One watch on the namespace's ContactSyncs, in a thread, from before the first create."""

    def __init__(self, bed: TestBed, namespace: str) -> None:
        self.namespace = namespace
        self.api = kube_client(bed, 2)
        self.custom = client.CustomObjectsApi(self.api)
        self.seen: dict[str, Seen] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        self._version = str(listed["metadata"]["resourceVersion"])
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ReadyWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.api.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=self._version,
                    timeout_seconds=60,
                    allow_watch_bookmarks=True,
                ):
                    self._record(event, time.time())
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status != 410:
                    raise
                self._version = str(  # expired: resume from now (nothing is lost here)
                    self.custom.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL
                    )["metadata"]["resourceVersion"]
                )
            except Exception:
                if self._stop.is_set():
                    return
                raise

    def _record(self, event: Mapping[str, Any], at: float) -> None:
        obj = event["object"]
        self._version = str(obj["metadata"]["resourceVersion"])
        if event["type"] not in ("ADDED", "MODIFIED"):
            return
        with self._changed:
            seen = self.seen.setdefault(obj["metadata"]["name"], Seen())
            if event["type"] == "MODIFIED":
                seen.modified.append(at)
                seen.first_modified = seen.first_modified or at
            ready = ready_condition(obj)
            if ready and ready.get("status") == "True" and seen.ready is None:
                seen.ready, seen.transition = at, ready.get("lastTransitionTime")
                seen.deployment_id = ((obj.get("status") or {}).get("prefect") or {}).get(
                    "deploymentId"
                )
            elif ready and ready.get("status") != "True":
                seen.not_ready_reasons.add(str(ready.get("reason")))
            self._changed.notify_all()

    def wait_ready(self, names: Iterable[str], timeout: float) -> bool:
        wanted = list(names)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not all(self.seen.get(n, Seen()).ready for n in wanted):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 1.0))
        return True


# -- the operator process and its memory ---------------------------------------------------


# `kopf run` as the operator image runs it. This venv also holds the test
# extras, among them kubernetes_asyncio (prefect-kubernetes needs it), which
# Kopf imports whenever it is installed: about 33 MiB of RSS the image, which
# installs the runtime dependencies only, never carries. With
# --executor-workers it registers one more startup handler that resizes the
# executor sync handlers run in: a what-if that needs no change to the operator.
KOPF = """
import os, sys
sys.modules["kubernetes_asyncio"] = None  # absent, as in the operator image
import kopf
from kopf.cli import main

if int(os.environ["CONTACTSYNC_BENCH_EXECUTOR_WORKERS"]):
    @kopf.on.startup()
    def benchmark_executor(settings: kopf.OperatorSettings, **_: object) -> None:
        settings.execution.max_workers = int(os.environ["CONTACTSYNC_BENCH_EXECUTOR_WORKERS"])

main(prog_name="kopf")
"""


class Operator:
    """`kopf run` on one namespace, with the worktree's code and a liveness endpoint."""

    def __init__(
        self,
        bed: TestBed,
        namespace: str,
        prefect_url: str,
        resync: float,
        retry: float,
        executor_workers: int | None = None,
        write_concurrency: int = 2,
    ) -> None:
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        env = {
            **os.environ,
            # The venv may hold an installed contactsync from another checkout: run this one.
            "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)]),
            "KUBECONFIG": str(bed.kube.kubeconfig),
            "CONTACTSYNC_PREFECT_API_URL": prefect_url,
            "CONTACTSYNC_RESYNC_SECONDS": str(resync),
            "CONTACTSYNC_RETRY_SECONDS": str(retry),
            "CONTACTSYNC_METRICS_PORT": str(free_port()),
            "CONTACTSYNC_METRICS_ADDRESS": "127.0.0.1",
            "CONTACTSYNC_BENCH_EXECUTOR_WORKERS": str(executor_workers or 0),
            "CONTACTSYNC_PREFECT_WRITE_CONCURRENCY": str(write_concurrency),
            "MALLOC_ARENA_MAX": "2",  # as the operator image sets it
        }
        self.process = ManagedProcess(
            "operator",
            [
                sys.executable,
                "-c",
                KOPF,
                "run",
                "--standalone",
                "-m",
                "contactsync.controller.handlers",
                f"--namespace={namespace}",
                f"--liveness={self.liveness}",
            ],
            Path(bed.root),
            env=env,
            cwd=REPO,
        )

    def start(self) -> float:
        """Start and wait until Kopf reports alive; returns the seconds that took."""
        started = time.monotonic()
        self.process.start()
        with httpx.Client(timeout=2) as http:
            wait_until(
                "the operator's liveness endpoint",
                lambda: http.get(self.liveness).status_code == 200,
                timeout=120,
                process=self.process,
            )
        return time.monotonic() - started

    def stop(self) -> None:
        self.process.stop()

    def log_counts(self) -> Counter[str]:
        text = self.process.log_path.read_text(errors="replace")
        return Counter(
            {
                "handler succeeded": text.count("succeeded."),
                "failed temporarily": text.count("failed temporarily"),
                "tracebacks": text.count("Traceback"),
                "ERROR lines": len(re.findall(r"\bERROR\b", text)),
            }
        )


class RssSampler:
    """Samples the operator's process tree every 0.2 s; keeps the peaks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_rss = 0
        self.peak_threads = 0
        self.last_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            rss, threads = tree_status(self.pid)
            self.last_rss = rss or self.last_rss
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_threads = max(self.peak_threads, threads)


@dataclass(frozen=True)
class Cpu:
    """Cumulative CPU seconds: per server of the bed (and this script), and the machine."""

    by_process: dict[str, float]
    busy: float  # machine-wide, all cores
    total: float

    def __sub__(self, other: Cpu) -> Cpu:
        by_process = {k: v - other.by_process.get(k, 0.0) for k, v in self.by_process.items()}
        return Cpu(by_process, self.busy - other.busy, self.total - other.total)


def own_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def tree_cpu(pid: int) -> float:
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            total += own_cpu(current)
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        stack.extend(int(child) for child in children)
    return total


def label(pid: int) -> str:
    """A short name for one of this script's children: the bed's servers, the operator."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if argv[0].endswith("kubebed") and len(argv) > 1:
        return argv[1]  # etcd, kube-apiserver, kube-controller-manager
    if "-c" in argv[:-1] and "kopf" in argv[argv.index("-c") + 1]:
        return "operator"
    if "-m" in argv[:-1]:
        module = argv[argv.index("-m") + 1]
        return {"kopf": "operator", "prefect": "prefect server"}.get(module, module)
    return Path(argv[0]).name


def cpu() -> Cpu:
    """CPU used so far by every child process tree of this script, by label."""
    by_process = {"this script": own_cpu(os.getpid())}
    for task in Path("/proc/self/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue  # a thread that just ended
        for child in children:
            try:
                name = label(int(child))
                by_process[name] = by_process.get(name, 0.0) + tree_cpu(int(child))
            except OSError:
                continue  # exited meanwhile (a kubectl)
    tick = os.sysconf("SC_CLK_TCK")
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return Cpu(by_process, (sum(values) - idle) / tick, sum(values) / tick)


# -- creating things -----------------------------------------------------------------------


def create_all(
    names: list[str], create: Callable[[str], Any], concurrency: int, rate: float = 0.0
) -> dict[str, tuple[float, float]]:
    """Create every name through `concurrency` threads, `rate` per second at most
    (0: as fast as the API server accepts them); (sent, returned) wall times each."""
    start = time.time()

    def one(numbered: tuple[int, str]) -> tuple[str, tuple[float, float]]:
        number, name = numbered
        if rate:
            time.sleep(max(0.0, start + number / rate - time.time()))
        sent = time.time()
        create(name)
        return name, (sent, time.time())

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return dict(pool.map(one, enumerate(names)))


def install(bed: TestBed) -> None:
    kubectl = [str(tools.kubectl()), f"--kubeconfig={bed.kube.kubeconfig}"]
    for manifest in (CRD, WORKER_CLUSTER_ROLE):
        subprocess_run([*kubectl, "apply", "-f", str(manifest)])
    subprocess_run(
        [*kubectl, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}"]
    )


def subprocess_run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=90)


def prepare_namespace(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=SECRET),
            string_data={"dsn": "postgresql://warehouse.example/contacts"},
        ),
    )


def baseline_configmaps(
    api: client.ApiClient, namespace: str, n: int, concurrency: int
) -> dict[str, tuple[float, float]]:
    core = client.CoreV1Api(api)

    def create(name: str) -> None:
        core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"spec": "x" * 400}),
        )

    return create_all([f"baseline-{i:04d}" for i in range(n)], create, concurrency)


def create_contactsyncs(
    api: client.ApiClient, namespace: str, names: list[str], concurrency: int, rate: float = 0.0
) -> dict[str, tuple[float, float]]:
    custom = client.CustomObjectsApi(api)
    return create_all(
        names,
        lambda name: custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, contactsync(name)
        ),
        concurrency,
        rate,
    )


def scheduled_runs(prefect_url: str) -> int:
    with httpx.Client(base_url=prefect_url, timeout=30) as http:
        response = http.post("/flow_runs/count", json={})
        response.raise_for_status()
        return int(response.json())


# -- resync rounds -------------------------------------------------------------------------


def wait_resync_round(
    proxy: CountingProxy, deployments: set[str], since: float, timeout: float
) -> tuple[float, int]:
    """Wait until every deployment was resynced after `since`; (end of round, missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = {c.resync_of for c in proxy.between(since, float("inf")) if c.resync_of}
        if deployments <= done:
            break
        time.sleep(0.5)
    time.sleep(SETTLE_SECONDS)
    done = {c.resync_of for c in proxy.between(since, float("inf")) if c.resync_of}
    return time.time(), len(deployments - done)


# -- reporting -----------------------------------------------------------------------------


def latencies(created: Mapping[str, tuple[float, float]]) -> list[float]:
    return [returned - sent for sent, returned in created.values()]


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"


def transition_lag(seen: Seen, returned: float) -> float | None:
    """apply->Ready from the condition's own timestamp (whole seconds: a cross-check)."""
    if not seen.transition:
        return None
    stamp = datetime.fromisoformat(seen.transition.replace("Z", "+00:00")).timestamp()
    return stamp - int(returned)


def breakdown(
    names: list[str],
    created: Mapping[str, tuple[float, float]],
    seen: Mapping[str, Seen],
    calls: list[Call],
) -> dict[str, list[float]]:
    """Where each object's apply->Ready time went, from outside the operator.

    pickup   create returned -> Kopf's first write (the finalizer)
    handler  finalizer -> the handler's Prefect deployment read (Kopf's second
             event, waiting for a free executor thread, the Kubernetes reads of
             the reconcile, the work-pool read)
    finish   deployment read -> Ready=True seen (deployment create, Kopf's status patch)
    """
    first_read: dict[str, float] = {}
    for c in calls:
        if c.subject and c.endpoint.startswith("GET "):
            first_read.setdefault(c.subject, c.at)
    parts: dict[str, list[float]] = {"pickup": [], "handler": [], "finish": []}
    for name in names:
        s, read = seen.get(name), first_read.get(name)
        if s is None or s.first_modified is None or s.ready is None or read is None:
            continue
        parts["pickup"].append(s.first_modified - created[name][1])
        parts["handler"].append(read - s.first_modified)
        parts["finish"].append(s.ready - read)
    return parts


# -- the run -------------------------------------------------------------------------------


@dataclass
class Rig:
    """Everything a measurement talks to."""

    args: argparse.Namespace
    api: client.ApiClient
    prefect_url: str  # the real server, not the proxy: the benchmark's own reads stay uncounted
    namespace: str
    proxy: CountingProxy
    watcher: ReadyWatch
    operator: Operator
    sampler: RssSampler


@dataclass
class Window:
    """One measured span: Prefect calls, API server requests and CPU within it."""

    start: float
    end: float
    calls: list[Call]
    kube: Counter[str]
    cpu: Cpu


class Span:
    """Snapshots API server counters and CPU at the start; `close` makes a Window."""

    def __init__(self, rig: Rig, start: float | None = None) -> None:
        self.rig = rig
        self.start = time.time() if start is None else start
        self.kube = apiserver_requests(rig.api)
        self.cpu = cpu()

    def close(self, end: float | None = None) -> Window:
        rig, end = self.rig, time.time() if end is None else end
        return Window(
            self.start,
            end,
            rig.proxy.between(self.start, end),
            apiserver_requests(rig.api) - self.kube,
            cpu() - self.cpu,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="ContactSyncs to create")
    parser.add_argument("--resync", type=float, default=30.0, help="resync interval, seconds")
    parser.add_argument(
        "--retry",
        type=float,
        default=15.0,
        help="CONTACTSYNC_RETRY_SECONDS; the operator's default, so retries cost what they would",
    )
    parser.add_argument("--cycles", type=int, default=2, help="resync rounds to measure")
    parser.add_argument("--concurrency", type=int, default=8, help="threads creating objects")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="create at most this many ContactSyncs per second (default: a burst, as fast "
        "as the API server accepts them)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="max wait for all Ready")
    parser.add_argument(
        "--executor-workers",
        type=int,
        help="what-if: size Kopf's sync-handler thread pool (default: Python's, cpus + 4)",
    )
    parser.add_argument(
        "--absorb-503",
        action="store_true",
        help="what-if: the proxy retries Prefect's 503s itself, as Prefect's client would",
    )
    parser.add_argument(
        "--prefect-db",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="Prefect's database: SQLite (one writer at a time) or the bed's PostgreSQL",
    )
    parser.add_argument(
        "--write-concurrency",
        type=int,
        default=2,
        help="CONTACTSYNC_PREFECT_WRITE_CONCURRENCY: concurrent Prefect writes",
    )
    parser.add_argument("--keep-log", type=Path, help="copy the operator's log here at the end")
    args = parser.parse_args()

    print(f"# {load()}", flush=True)
    print(
        f"# Prefect on {args.prefect_db}, {args.write_concurrency} concurrent Prefect writes",
        flush=True,
    )
    bed = TestBed(prefect_on_postgres=args.prefect_db == "postgres")
    try:
        bed.start()
        print(f"# test bed up in {bed.ready_seconds:.1f}s", flush=True)
        run(args, bed)
    finally:
        bed.stop()


def run(args: argparse.Namespace, bed: TestBed) -> None:
    namespace = "bench"
    install(bed)
    api = kube_client(bed, args.concurrency + 2)
    prepare_namespace(api, namespace)

    # Baseline: what the API server alone costs for a create, same client, same threads.
    configmaps = baseline_configmaps(api, namespace, args.n, args.concurrency)

    proxy = CountingProxy(bed.prefect.api_url, namespace, args.absorb_503).start()
    watcher = ReadyWatch(bed, namespace).start()
    operator = Operator(
        bed,
        namespace,
        proxy.url,
        args.resync,
        args.retry,
        args.executor_workers,
        args.write_concurrency,
    )
    sampler: RssSampler | None = None
    try:
        startup = operator.start()
        sampler = RssSampler(operator.process.pid).start()
        time.sleep(1.0)  # let Kopf's watch on contactsyncs settle before timing anything
        idle = tree_status(operator.process.pid)[0]
        print(f"# operator alive in {startup:.1f}s, idle RSS {idle / 2**20:.0f} MiB", flush=True)
        rig = Rig(args, api, bed.prefect.api_url, namespace, proxy, watcher, operator, sampler)
        measure(rig, configmaps)
    finally:
        if sampler is not None:
            sampler.stop()
        operator.stop()
        if args.keep_log:  # the bed's directory, and the log in it, is removed on stop
            shutil.copyfile(operator.process.log_path, args.keep_log)
        watcher.stop()
        proxy.stop()
        api.close()


def measure(rig: Rig, configmaps: Mapping[str, tuple[float, float]]) -> None:
    n, args, watcher = rig.args.n, rig.args, rig.watcher
    # The first ContactSync also creates what every ContactSync of the namespace shares
    # (work pool, worker Deployment), which would otherwise be charged to whichever of
    # the N came first. Then the baseline: a few more, one at a time on the idle
    # operator (the median, as one unlucky 503 would make a single sample useless).
    span = Span(rig)
    warm = create_contactsyncs(rig.api, rig.namespace, WARM[:1], 1)
    watcher.wait_ready(WARM[:1], 120)
    warm_window = span.close()
    for name in WARM[1:]:
        time.sleep(0.5)
        warm |= create_contactsyncs(rig.api, rig.namespace, [name], 1)
        watcher.wait_ready([name], 120)
    alone = percentile([(watcher.seen[x].ready or float("nan")) - warm[x][1] for x in WARM[1:]], 50)
    time.sleep(2.0)

    names = [f"cs-{i:04d}" for i in range(n)]
    span = Span(rig)
    created = create_contactsyncs(rig.api, rig.namespace, names, args.concurrency, args.rate)
    all_ready = watcher.wait_ready(names, args.timeout)
    last_ready = max((s.ready for x in names if (s := watcher.seen.get(x)) and s.ready), default=0)
    create = span.close((last_ready or time.time()) + 0.001)
    runs_at_ready = scheduled_runs(rig.prefect_url)
    rss_all_ready = rig.sampler.last_rss

    # Resync rounds: every object's timer fires at least once in each.
    deployments = {s.deployment_id for s in watcher.seen.values() if s.deployment_id}
    rounds: list[tuple[Window, int]] = []
    for _ in range(args.cycles):
        span = Span(rig, create.end if not rounds else rounds[-1][0].end)
        until, missing = wait_resync_round(rig.proxy, deployments, span.start, 3 * args.resync + 60)
        rounds.append((span.close(until), missing))

    print()
    report_latency(rig, names, configmaps, created, create, alone, all_ready)
    report_breakdown(WARM[1:], warm, rig.watcher, rig.proxy.between(0, create.start), "alone")
    report_breakdown(names, created, rig.watcher, create.calls, f"the {len(names)}")
    report_create_calls(rig, warm_window, create, rounds[-1][0] if rounds else None)
    report_resyncs(rig, rounds)
    print(
        f"\nPrefect's own scheduler (not the operator) had created {runs_at_ready} flow runs "
        f"when all were Ready, {scheduled_runs(rig.prefect_url)} at the end, for "
        f"{len(deployments)} deployments: database writes that compete with the operator's"
    )
    report_process(rig, rss_all_ready)
    print(f"\n# {load()}")


# -- printing ------------------------------------------------------------------------------


def report_latency(
    rig: Rig,
    names: list[str],
    configmaps: Mapping[str, tuple[float, float]],
    created: Mapping[str, tuple[float, float]],
    create: Window,
    alone: float,
    all_ready: bool,
) -> None:
    n, seen = len(names), rig.watcher.seen
    cm, cr = latencies(configmaps), latencies(created)
    cm_wall = max(r for _, r in configmaps.values()) - min(s for s, _ in configmaps.values())
    cr_wall = max(r for _, r in created.values()) - create.start
    lag = [s.ready - created[x][1] for x in names if (s := seen.get(x)) and s.ready]
    stamped = [
        v for x in names if x in seen and (v := transition_lag(seen[x], created[x][1])) is not None
    ]
    p50, p99, total = percentile(lag, 50), percentile(lag, 99), create.end - create.start
    print("apply -> Ready")
    print(
        f"  baseline: ConfigMap create     p50 {1000 * percentile(cm, 50):6.1f} ms  "
        f"p99 {1000 * percentile(cm, 99):6.1f} ms  all {n} in {cm_wall:.2f}s"
    )
    print(
        f"  baseline: ContactSync create   p50 {1000 * percentile(cr, 50):6.1f} ms  "
        f"p99 {1000 * percentile(cr, 99):6.1f} ms  all {n} in {cr_wall:.2f}s"
    )
    print(f"  baseline: one ContactSync alone on the idle operator (median of 3) {alone:.3f}s")
    print(
        f"  apply->Ready p50 {p50:7.3f}s  target <= {TARGETS['p50']:.0f}s: "
        f"{verdict(p50, TARGETS['p50'])}  ({p50 / alone:.1f}x alone, "
        f"{p50 / percentile(cm, 50):.0f}x a ConfigMap create)"
    )
    print(
        f"  apply->Ready p99 {p99:7.3f}s  target <= {TARGETS['p99']:.0f}s: "
        f"{verdict(p99, TARGETS['p99'])}  ({p99 / alone:.1f}x alone)"
    )
    print(
        f"  cross-check from lastTransitionTime (1 s resolution): "
        f"p50 {percentile(stamped, 50):.0f}s, p99 {percentile(stamped, 99):.0f}s"
    )
    print(
        f"  all {len(lag)}/{n} Ready {total:7.2f}s after the first create  "
        f"target <= {TARGETS['all']:.0f}s: {verdict(total, TARGETS['all']) if all_ready else 'NO'}"
        f"  ({total / cr_wall:.0f}x the time to create them; {len(lag) / total:.1f} Ready/s)"
    )
    # Prefect's server is one Python process (API and its scheduler in one
    # interpreter): one core at most, whatever the operator does.
    prefect = create.cpu.by_process.get("prefect server", 0.0) / n
    print(
        f"  floor: the Prefect server spent {1000 * prefect:.0f} ms CPU per ContactSync "
        f"(its API and scheduler, one process, at most one core): of a burst of {n}, "
        f"the median object waits >= {n / 2 * prefect:.1f}s for it, the last >= "
        f"{n * prefect:.1f}s"
    )


def report_breakdown(
    names: list[str],
    created: Mapping[str, tuple[float, float]],
    watcher: ReadyWatch,
    calls: list[Call],
    which: str,
) -> None:
    parts = breakdown(names, created, watcher.seen, calls)
    print(f"  where apply->Ready goes ({which}; per object, seen from outside the operator):")
    for part, values in parts.items():
        print(
            f"    {part:<8} p50 {percentile(values, 50):7.3f}s  p99 {percentile(values, 99):7.3f}s"
        )
    writes = [len(s.modified) for x in names if (s := watcher.seen.get(x))]
    reasons = Counter(r for x in names if (s := watcher.seen.get(x)) for r in s.not_ready_reasons)
    retried = sum(1 for x in names if (s := watcher.seen.get(x)) and s.not_ready_reasons)
    print(f"    writes to each ContactSync until Ready: {percentile(writes, 50):.0f} (p50)")
    if reasons:
        print(f"    {retried}/{len(names)} went Ready=False first: {dict(reasons)}")
    if reasons and retried < len(names):
        clean = [
            s.ready - created[x][1]
            for x in names
            if (s := watcher.seen.get(x)) and s.ready and not s.not_ready_reasons
        ]
        print(
            f"    apply->Ready of the {len(clean)} never retried: p50 {percentile(clean, 50):.3f}s"
            f"  p99 {percentile(clean, 99):.3f}s"
        )


def report_create_calls(rig: Rig, warm: Window, create: Window, resync: Window | None) -> None:
    n = rig.args.n
    print("\nPrefect API calls on create (through the counting proxy)")
    reads, writes, seconds = prefect_figures(warm.calls, 1)
    print(
        f"  the first ContactSync alone (creates the shared work pool): "
        f"{reads:.0f} reads, {writes:.0f} writes, {1000 * seconds:.0f} ms in Prefect"
    )
    resyncs = sum(1 for c in create.calls if c.resync_of)
    unavailable = sum(1 for c in create.calls if c.status >= 500)
    reads, writes, seconds = prefect_figures(create.calls, n)
    print(
        f"  per ContactSync of the {n}: {reads:.2f} reads, {writes:.2f} writes, "
        f"{1000 * seconds:.0f} ms in Prefect; {unavailable} answers were 5xx"
        + (f"; the proxy absorbed {rig.proxy.absorbed} 503s" if rig.proxy.absorb_503 else "")
    )
    if resyncs and resync is not None:
        # The window also holds timer resyncs (and reconcile retries after 5xx): take
        # the resyncs out at the steady per-resync cost measured after all were Ready.
        per_resync = prefect_figures(resync.calls, sum(1 for c in resync.calls if c.resync_of))
        net = (len(create.calls) - sum(c.write for c in create.calls)) - resyncs * per_resync[0]
        print(
            f"  {resyncs} resyncs ran inside this window; net of them "
            f"(at {per_resync[0]:.2f} reads each): {net / n:.2f} reads per ContactSync"
        )
    print_endpoints(create.calls, n, "CS")
    print(f"  Kubernetes API requests while creating (all clients: includes the {n} creates)")
    print_apiserver(create.kube, n, "CS")
    report_cpu(create, n, "CS")


def report_resyncs(rig: Rig, rounds: list[tuple[Window, int]]) -> None:
    if not rounds:
        return
    print("\nNo-op resyncs (nothing changed; every object's timer fired in each round)")
    for i, (window, missing) in enumerate(rounds, 1):
        count = sum(1 for c in window.calls if c.resync_of)
        per = max(count, 1)
        reads, writes, seconds = prefect_figures(window.calls, count)
        patches = sum(
            1
            for s in rig.watcher.seen.values()
            for t in s.modified
            if window.start <= t < window.end
        )
        print(
            f"  round {i}: {window.end - window.start:.1f}s, {count} resyncs"
            + (f", {missing} objects NOT resynced" if missing else "")
        )
        print(
            f"    per resync: {reads:.2f} Prefect reads, {writes:.2f} Prefect writes "
            f"target 0: {'ok' if writes == 0 else 'MISSED'}; {1000 * seconds:.0f} ms in Prefect; "
            f"{patches / per:.2f} writes to the ContactSync itself"
        )
        print_endpoints(window.calls, per, "resync")
        print("    Kubernetes API requests (all clients)")
        print_apiserver(window.kube, per, "resync")
        report_cpu(window, per, "resync")


def report_cpu(window: Window, per: int, unit: str) -> None:
    seconds, spent = window.end - window.start, window.cpu.by_process
    machine = window.cpu.busy / window.cpu.total if window.cpu.total else float("nan")
    print(
        f"  CPU: operator {1000 * spent.get('operator', 0.0) / per:.0f} ms per {unit}; the machine "
        f"was {machine:.0%} busy over {seconds:.1f}s ({os.cpu_count()} cores); "
        "core-seconds by process:"
    )
    top = sorted(((used, name) for name, used in spent.items() if used >= 0.05), reverse=True)
    print("    " + ", ".join(f"{name} {used:.1f}" for used, name in top))


def report_process(rig: Rig, rss_all_ready: int) -> None:
    peak = rig.sampler.peak_rss / 2**20
    print("\nOperator process")
    print(
        f"  peak RSS {peak:.0f} MiB  target <= {TARGETS['rss']:.0f}: "
        f"{verdict(peak, TARGETS['rss'])}  ({rss_all_ready / 2**20:.0f} MiB when all were Ready)"
    )
    print(
        f"  peak threads {rig.sampler.peak_threads}; peak concurrent Prefect requests "
        f"{rig.proxy.peak_in_flight} (Kopf runs sync handlers in a ThreadPoolExecutor)"
    )
    print(f"  log: {dict(rig.operator.log_counts())}")


if __name__ == "__main__":
    main()
