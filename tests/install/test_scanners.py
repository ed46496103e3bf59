"""The rendered chart through trivy and checkov (the real scanners, offline).

trivy: the `k8s-pss-restricted` compliance report must pass every control
with nothing ignored; its full misconfiguration scan must find nothing beyond
the findings accepted, with a statement each, in the chart's
.trivyignore.yaml. checkov: no failed check; every skip is an annotation in
the chart with a reason. An accepted finding that no longer occurs fails too,
so no stale excuse stays. A privileged pod shows each scanner really checks.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.testbed import tools

from .chart import CHART, VARIANTS, template

PSS_RESTRICTED = "k8s-pss-restricted-0.1"
TRIVY_IGNORES = CHART / ".trivyignore.yaml"
PRIVILEGED_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "privileged", "namespace": "default"},
    "spec": {
        "hostNetwork": True,
        "containers": [
            {"name": "c", "image": "busybox:1.36", "securityContext": {"privileged": True}}
        ],
    },
}


def manifests(directory: Path, text: str) -> Path:
    directory.mkdir()
    (directory / "manifests.yaml").write_text(text)
    return directory


def trivy(target: Path, cache: Path, *args: str) -> dict[str, Any]:
    """trivy's JSON report. Offline: the check bundle is not downloaded, trivy
    falls back to the checks embedded in the binary (and says so on stderr)."""
    result = subprocess.run(
        [
            str(tools.trivy()),
            "config",
            "--skip-check-update",
            f"--cache-dir={cache}",
            "--format=json",
            "--quiet",
            *args,
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def failed_controls(report: dict[str, Any]) -> dict[str, list[str]]:
    """A compliance report's controls that found anything, with the check IDs."""
    failed = {}
    for control in report["Results"]:
        found = [
            m["ID"]
            for result in control.get("Results") or []
            for m in result.get("Misconfigurations") or []
            if m["Status"] == "FAIL"
        ]
        if found:
            failed[control["Name"]] = found
    return failed


def failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{m['ID']} {m['Message']}"
        for result in report.get("Results") or []
        for m in result.get("Misconfigurations") or []
        if m["Status"] == "FAIL"
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_trivy_pss_restricted(variant: str, tmp_path: Path) -> None:
    target = manifests(tmp_path / "chart", template(VARIANTS[variant]))
    report = trivy(target, tmp_path / "cache", f"--compliance={PSS_RESTRICTED}")
    assert report["ID"] == PSS_RESTRICTED
    assert len(report["Results"]) >= 17  # the standard's controls, all evaluated
    assert failed_controls(report) == {}


def test_trivy_pss_restricted_fails_a_privileged_pod(tmp_path: Path) -> None:
    target = manifests(tmp_path / "bad", yaml.safe_dump(PRIVILEGED_POD))
    report = trivy(target, tmp_path / "cache", f"--compliance={PSS_RESTRICTED}")
    failed = failed_controls(report)
    assert {"Privileged Containers", "Running as Non-root", "Seccomp"} <= set(failed), failed


@pytest.mark.parametrize("variant", VARIANTS)
def test_trivy_finds_nothing_but_accepted_findings(variant: str, tmp_path: Path) -> None:
    target = manifests(tmp_path / "chart", template(VARIANTS[variant]))
    accepted = yaml.safe_load(TRIVY_IGNORES.read_text())["misconfigurations"]
    assert all(len(entry["statement"]) > 40 for entry in accepted)
    scanned = trivy(target, tmp_path / "cache", f"--ignorefile={TRIVY_IGNORES}")
    assert failures(scanned) == []
    # Every accepted finding still occurs: nothing is excused that needs no excuse.
    raw = trivy(target, tmp_path / "cache")
    found = {line.split()[0] for line in failures(raw)}
    assert found == {entry["id"] for entry in accepted}


def checkov(target: Path) -> dict[str, Any]:
    """checkov's JSON report; --skip-download keeps it offline (no guideline look-ups)."""
    result = subprocess.run(
        [
            str(tools.checkov()),
            "--directory",
            str(target),
            "--framework=kubernetes",
            "--skip-download",
            "--output=json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.stdout, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkov_no_failed_check_and_every_skip_has_a_reason(variant: str, tmp_path: Path) -> None:
    target = manifests(tmp_path / "chart", template(VARIANTS[variant]))
    report = checkov(target)
    summary = report["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert failed == []
    for skipped in report["results"]["skipped_checks"]:
        reason = skipped["check_result"]["suppress_comment"]
        assert len(reason) > 40, skipped["check_id"]
    # Every skip annotation in the chart was needed by some rendered object.
    annotated = {
        value.split("=")[0]
        for doc in yaml.safe_load_all(template(VARIANTS[variant]))
        if doc
        for key, value in (doc["metadata"].get("annotations") or {}).items()
        if key.startswith("checkov.io/skip")
    }
    assert annotated == {c["check_id"] for c in report["results"]["skipped_checks"]}


def test_checkov_fails_a_privileged_pod(tmp_path: Path) -> None:
    report = checkov(manifests(tmp_path / "bad", yaml.safe_dump(PRIVILEGED_POD)))
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_K8S_16", "CKV_K8S_19"} <= failed  # privileged; host network
