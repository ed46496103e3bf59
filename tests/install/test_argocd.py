"""Argo CD support: the ContactSync health check run the way Argo CD runs it
(health_test.yaml's cases, in a Lua 5.1 VM without os/io), and the example
Applications' sync waves. No Argo CD server runs here."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from tests.testbed import tools

from .chart import REPO

ARGOCD = REPO / "argocd"
CHECK = ARGOCD / "resource_customizations" / "contactsync.dev" / "ContactSync"
CASES = yaml.safe_load((CHECK / "health_test.yaml").read_text())["tests"]
WAVE = "argocd.argoproj.io/sync-wave"


def to_lua(lua: Any, value: Any) -> Any:
    """Argo CD hands the object to Lua as nested tables, lists 1-based."""
    if isinstance(value, dict):
        return lua.table_from({key: to_lua(lua, item) for key, item in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, item) for item in value])
    return value


def health(obj: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    assert lua.eval("_VERSION") == "Lua 5.1"
    # Argo CD's VM opens only the safe libraries: a script using these would fail there.
    for unsafe in ("os", "io", "require", "dofile", "loadfile", "load", "loadstring"):
        lua.globals()[unsafe] = None
    lua.globals().obj = to_lua(lua, obj)
    result = lua.execute((CHECK / "health.lua").read_text())
    return {key: result[key] for key in ("status", "message")}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_check(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CHECK / case["inputPath"]).read_text())
    assert health(obj) == case["healthStatus"]


def test_every_state_and_every_testdata_file_is_covered() -> None:
    assert {c["healthStatus"]["status"] for c in CASES} == {
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
    }
    used = {Path(c["inputPath"]).name for c in CASES}
    assert used == {p.name for p in (CHECK / "testdata").glob("*.yaml")}


def test_a_newer_generation_is_not_healthy_on_old_conditions() -> None:
    obj = yaml.safe_load((CHECK / "testdata" / "healthy.yaml").read_text())
    assert health(obj)["status"] == "Healthy"
    obj["metadata"]["generation"] += 1
    assert health(obj)["status"] == "Progressing"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_applications_sync_the_crd_before_contactsyncs() -> None:
    apps = {
        d["metadata"]["name"]: d
        for p in (ARGOCD / "applications").glob("*.yaml")
        for d in _documents(p)
    }
    operator, syncs = apps["contactsync-operator"], apps["contactsyncs-sales"]
    assert int(operator["metadata"]["annotations"][WAVE]) < int(
        syncs["metadata"]["annotations"][WAVE]
    )
    assert operator["spec"]["source"]["path"] == "charts/contactsync-operator"
    assert (REPO / syncs["spec"]["source"]["path"] / "kustomization.yaml").exists()
    assert "ServerSideApply=true" in operator["spec"]["syncPolicy"]["syncOptions"]


def test_contactsyncs_come_after_the_crd_in_one_application() -> None:
    """The real `kubectl kustomize` output: every ContactSync in wave 1 (the CRD
    is in wave 0) and dry-run skipped while the CRD is missing."""
    rendered = subprocess.run(
        [str(tools.kubectl()), "kustomize", str(ARGOCD / "contactsyncs")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert docs
    assert [d["kind"] for d in docs] == ["ContactSync"] * len(docs)
    for doc in docs:
        annotations = doc["metadata"]["annotations"]
        assert annotations[WAVE] == "1"
        assert annotations["argocd.argoproj.io/sync-options"] == "SkipDryRunOnMissingResource=true"
