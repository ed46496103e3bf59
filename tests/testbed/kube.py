"""A real Kubernetes control plane: etcd, kube-apiserver (RBAC on) and
kube-controller-manager (namespace, garbage-collector and ServiceAccount
controllers), all from the one `kubebed` binary, on loopback ports.

There is no kubelet: objects are stored, validated, authorised, watched and
garbage-collected for real, but no Pod ever runs.
"""

from __future__ import annotations

import base64
import secrets
import ssl
import subprocess
from pathlib import Path

import httpx
import yaml
from kubernetes import client

from . import tools
from .net import free_port, wait_until
from .pki import CertificateAuthority, write_rsa_keypair
from .process import ManagedProcess

ADMIN_USER = "testbed-admin"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = ",".join(
    [
        "namespace-controller",
        "garbage-collector-controller",
        "serviceaccount-controller",
        "serviceaccount-token-controller",
        "root-ca-certificate-publisher-controller",
        "clusterrole-aggregation-controller",
    ]
)


class ControlPlane:
    def __init__(self, root: Path, ca: CertificateAuthority) -> None:
        self.root = root
        self.ca = ca
        self.admin_token = secrets.token_urlsafe(32)
        self.etcd_port = free_port()
        self.port = free_port()
        self.controller_manager_port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = root / "kubeconfig"
        self._processes: list[ManagedProcess] = []

    # -- lifecycle -----------------------------------------------------------

    def start_storage_and_api(self) -> None:
        """Launch etcd and kube-apiserver without waiting (the bed waits in parallel)."""
        binary = str(tools.kubebed())
        root = self.root
        peer_port = free_port()
        self._etcd = self._launch(
            "etcd",
            [
                binary,
                "etcd",
                "--name=testbed",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=testbed=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        serving = self.ca.issue("kube-apiserver", hosts=("127.0.0.1", "localhost", "kubernetes"))
        write_rsa_keypair(root / "sa.key", root / "sa.pub")
        tokens = root / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        tokens.chmod(0o600)
        self._apiserver = self._launch(
            "kube-apiserver",
            [
                binary,
                "kube-apiserver",
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={self.ca.cert_path}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={root / 'sa.pub'}",
                f"--service-account-signing-key-file={root / 'sa.key'}",
                "--profiling=false",
                "--v=0",
            ],
        )
        self._write_kubeconfig(self.kubeconfig, self.admin_token, ADMIN_USER)

    def wait_api(self, timeout: float = 120.0) -> None:
        with self._http() as http:
            wait_until(
                "kube-apiserver",
                lambda: http.get("/readyz").status_code == 200,
                timeout=timeout,
                process=self._apiserver,
            )

    def start_controller_manager(self) -> None:
        serving = self.ca.issue("kube-controller-manager")
        kubeconfig = str(self.kubeconfig)
        self._controller_manager = self._launch(
            "kube-controller-manager",
            [
                str(tools.kubebed()),
                "kube-controller-manager",
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.controller_manager_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--controllers={CONTROLLERS}",
                f"--service-account-private-key-file={self.root / 'sa.key'}",
                f"--root-ca-file={self.ca.cert_path}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--profiling=false",
                "--v=0",
            ],
        )

    def wait_controller_manager(self, timeout: float = 60.0) -> None:
        url = f"https://127.0.0.1:{self.controller_manager_port}"
        with httpx.Client(base_url=url, verify=self._ssl_context(), timeout=5) as http:
            wait_until(
                "kube-controller-manager",
                lambda: http.get("/healthz").status_code == 200,
                timeout=timeout,
                process=self._controller_manager,
            )

    def stop(self) -> None:
        for process in reversed(self._processes):
            process.stop()

    # -- clients and identities ----------------------------------------------

    def api_client(self, token: str | None = None) -> client.ApiClient:
        """A Python client authenticated as admin, or with `token` (e.g. a ServiceAccount's)."""
        configuration = client.Configuration()
        configuration.host = self.url
        configuration.ssl_ca_cert = str(self.ca.cert_path)
        configuration.verify_ssl = True
        configuration.api_key = {"BearerToken": token or self.admin_token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)

    def token_for(self, namespace: str, service_account: str, seconds: int = 3600) -> str:
        """Mint a bound token for a ServiceAccount through the TokenRequest API."""
        with self.api_client() as api:
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(
                    audiences=[SERVICE_ACCOUNT_ISSUER], expiration_seconds=seconds
                )
            )
            response = client.CoreV1Api(api).create_namespaced_service_account_token(
                service_account, namespace, request
            )
            token: str = response.status.token
            return token

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The real kubectl, as admin on this control plane."""
        return subprocess.run(
            [str(tools.kubectl()), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def write_kubeconfig(self, path: Path, token: str, user: str) -> Path:
        """A kubeconfig for `kubectl` acting with `token`."""
        self._write_kubeconfig(path, token, user)
        return path

    def project_secrets(self, namespace: str, names: list[str], root: Path) -> None:
        """What a kubelet does for a Secret volume: one file per key, under root/<name>/.
        No kubelet runs here, so flows run on this host read their Secrets from there."""
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            for name in names:
                secret = core.read_namespaced_secret(name, namespace)
                directory = root / name
                directory.mkdir(parents=True, exist_ok=True)
                for key, value in (secret.data or {}).items():
                    (directory / key).write_bytes(base64.b64decode(value))
                    (directory / key).chmod(0o400)

    # -- internals -----------------------------------------------------------

    def _launch(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, self.root)
        process.start()
        self._processes.append(process)
        return process

    def _ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca.cert_path))

    def _http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            verify=self._ssl_context(),
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=5,
        )

    def _write_kubeconfig(self, path: Path, token: str, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "testbed",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.ca.pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": user}}],
            "current-context": "testbed",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
