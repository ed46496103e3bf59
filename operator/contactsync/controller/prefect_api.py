"""A small, counted client for the parts of the Prefect REST API the operator uses.

Every write is counted (`writes`), so tests and the benchmark can prove that
an unchanged spec costs zero writes.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx

from . import metrics

Json = dict[str, Any]


RETRIES = 4  # at most about 0.2 + 0.4 + 0.8 + 1.6 s of waiting
BACKOFF = 0.2
WRITE_CONCURRENCY = 2


class PrefectUnavailableError(RuntimeError):
    """Prefect did not answer (or answered 5xx): retry later."""


class PrefectApi:
    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 15.0,
        write_concurrency: int = WRITE_CONCURRENCY,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout)
        self.calls: Counter[str] = Counter()
        self.writes = 0
        self._templates: dict[str, Json] = {}
        self._flow_ids: dict[str, str] = {}
        self._write_gate = threading.BoundedSemaphore(write_concurrency)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, operation: str, **kwargs: Any) -> httpx.Response:
        """One API call; 429 and 503 (Prefect's "busy, retry") are retried briefly
        here, as Prefect's own client does, before the reconcile gives up."""
        self.calls[operation] += 1
        write = method != "GET" and not path.endswith("/filter")
        self.writes += write
        for attempt in range(RETRIES + 1):
            try:
                # Writes go through a narrow gate: a burst of creates must not
                # turn into a burst of concurrent Prefect transactions.
                with self._write_gate if write else contextlib.nullcontext():
                    response = self._http.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                metrics.prefect_unreachable(operation)
                raise PrefectUnavailableError(f"Prefect {operation}: {type(exc).__name__}") from exc
            metrics.prefect_answered(operation, response.status_code)
            if response.status_code not in (429, 503) or attempt == RETRIES:
                break
            time.sleep(random.uniform(0, BACKOFF * 2**attempt))  # noqa: S311 - jitter only
        if response.status_code >= 500:
            raise PrefectUnavailableError(f"Prefect {operation}: HTTP {response.status_code}")
        return response

    def _request(
        self, method: str, path: str, operation: str, *, absent_ok: bool = False, **kwargs: Any
    ) -> Any:
        """One call, decoded: the JSON body, or None for 404 where absence is an answer."""
        return self._decoded(self._call(method, path, operation, **kwargs), operation, absent_ok)

    @staticmethod
    def _decoded(response: httpx.Response, operation: str, absent_ok: bool = False) -> Any:
        if absent_ok and response.status_code == 404:
            return None
        if response.is_error:
            raise RuntimeError(f"Prefect {operation}: HTTP {response.status_code}")
        return response.json() if response.content else None

    def ping(self, timeout: float = 3.0) -> bool:
        """Whether Prefect answers its health check now: one short call, no retries."""
        try:
            response = self._http.get("/health", timeout=timeout)
        except httpx.HTTPError:
            metrics.prefect_unreachable("health")
            return False
        metrics.prefect_answered("health", response.status_code)
        return response.is_success

    # -- work pools --------------------------------------------------------------------

    def default_template(self, pool_type: str) -> Json:
        """The server's own default base job template for a pool type (cached)."""
        if pool_type not in self._templates:
            metadata = self._request(
                "GET", "/collections/views/aggregate-worker-metadata", "read_worker_metadata"
            )
            for workers in metadata.values():
                for name, worker in workers.items():
                    self._templates[name] = worker["default_base_job_configuration"]
        return self._templates[pool_type]

    def read_work_pool(self, name: str) -> Json | None:
        pool: Json | None = self._request(
            "GET", f"/work_pools/{name}", "read_work_pool", absent_ok=True
        )
        return pool

    def create_work_pool(self, pool: Json) -> None:
        self._request("POST", "/work_pools/", "create_work_pool", json=pool)

    def update_work_pool(self, name: str, changes: Json) -> None:
        self._request("PATCH", f"/work_pools/{name}", "update_work_pool", json=changes)

    def delete_work_pool(self, name: str) -> None:
        self._request("DELETE", f"/work_pools/{name}", "delete_work_pool", absent_ok=True)

    # -- flows and deployments -----------------------------------------------------------

    def flow_id(self, name: str) -> str:
        """The flow's id, created if Prefect has none; looked up once, since a
        flow outlives its deployments (create_deployment notices if it did not)."""
        if name not in self._flow_ids:
            flow = self._request("GET", f"/flows/name/{name}", "read_flow", absent_ok=True)
            if flow is None:
                flow = self._request("POST", "/flows/", "create_flow", json={"name": name})
            self._flow_ids[name] = str(flow["id"])
        return self._flow_ids[name]

    def read_deployment(self, flow: str, name: str) -> Json | None:
        deployment: Json | None = self._request(
            "GET", f"/deployments/name/{flow}/{name}", "read_deployment", absent_ok=True
        )
        return deployment

    def create_deployment(self, flow: str, deployment: Json) -> Json:
        """Create `deployment` of the flow named `flow`. A 409 with a remembered
        flow id means the flow was deleted in Prefect (taking its deployments):
        it is looked up (so created) again, once."""
        for fresh in (flow not in self._flow_ids, True):
            body = {**deployment, "flow_id": self.flow_id(flow)}
            response = self._call("POST", "/deployments/", "create_deployment", json=body)
            if response.status_code != 409 or fresh:
                break
            del self._flow_ids[flow]
        created: Json = self._decoded(response, "create_deployment")
        return created

    def update_deployment(self, deployment_id: str, changes: Json) -> None:
        self._request("PATCH", f"/deployments/{deployment_id}", "update_deployment", json=changes)

    def delete_deployment(self, deployment_id: str) -> None:
        self._request(
            "DELETE", f"/deployments/{deployment_id}", "delete_deployment", absent_ok=True
        )

    def deployments_in_pool(self, pool: str) -> list[Json]:
        found: list[Json] = self._request(
            "POST",
            "/deployments/filter",
            "filter_deployments",
            json={"work_pools": {"name": {"any_": [pool]}}, "limit": 200},
        )
        return found

    # -- flow runs -----------------------------------------------------------------------

    def create_flow_run(self, deployment_id: str, *, tags: list[str]) -> Json:
        run: Json = self._request(
            "POST",
            f"/deployments/{deployment_id}/create_flow_run",
            "create_flow_run",
            json={"tags": tags},
        )
        return run

    def _flow_runs(self, deployment_id: str, sort: str, limit: int, **filters: Any) -> list[Json]:
        runs: list[Json] = self._request(
            "POST",
            "/flow_runs/filter",
            "filter_flow_runs",
            json={
                "deployments": {"id": {"any_": [deployment_id]}},
                **filters,
                "sort": sort,
                "limit": limit,
            },
        )
        return runs

    def finished_flow_runs(
        self, deployment_id: str, states: Sequence[str], *, after: str | None, limit: int = 50
    ) -> list[Json]:
        """Runs in a final state that ended at or after `after`, newest first."""
        finished: dict[str, Any] = {"state": {"type": {"any_": list(states)}}}
        if after:
            finished["end_time"] = {"after_": after}
        return self._flow_runs(deployment_id, "END_TIME_DESC", limit, flow_runs=finished)

    def next_scheduled_run(self, deployment_id: str) -> Json | None:
        scheduled = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
        runs = self._flow_runs(deployment_id, "EXPECTED_START_TIME_ASC", 1, **scheduled)
        return runs[0] if runs else None

    def run_summaries(self, flow_run_ids: Sequence[str]) -> dict[str, Json]:
        """The counts each run published (its `contactsync-summary` artifact), by run id."""
        artifacts: list[Json] = self._request(
            "POST",
            "/artifacts/filter",
            "filter_artifacts",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": list(flow_run_ids)},
                    "key": {"any_": ["contactsync-summary"]},
                },
                "limit": len(flow_run_ids),
            },
        )
        found: dict[str, Json] = {}
        for artifact in artifacts:
            data = artifact.get("data")
            if isinstance(data, str):  # stored as a JSON document in a string
                data = json.loads(data)
            if isinstance(data, dict):
                found[str(artifact["flow_run_id"])] = data
        return found
