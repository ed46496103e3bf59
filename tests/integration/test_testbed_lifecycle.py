"""The bed leaves nothing behind: not when it is stopped, not when its parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.split(")")[-1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line or environment mentions `text`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob and alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def test_server_dies_when_the_harness_is_killed() -> None:
    script = (
        "import sys, pathlib, threading\n"
        "from tests.testbed.process import ManagedProcess\n"
        "p = ManagedProcess('sleeper', ['sleep', '600'], pathlib.Path(sys.argv[1]))\n"
        "p.start(); print(p.pid, flush=True); threading.Event().wait()\n"
    )
    harness = subprocess.Popen(
        [sys.executable, "-c", script, "/tmp"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert harness.stdout is not None
    child = int(harness.stdout.readline())
    assert alive(child)
    harness.kill()  # SIGKILL: no handler, no finally, no atexit can run
    harness.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


def test_up_prints_a_usable_environment_and_cleans_up_on_sigterm() -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "tests.testbed", "up"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert up.stdout is not None
    env: dict[str, str] = {}
    try:
        for line in up.stdout:
            if line.startswith("export "):
                key, _, value = line[len("export ") :].strip().partition("=")
                env[key] = value.strip("'")
            if line.startswith("# test bed ready"):
                break
        assert {"KUBECONFIG", "PREFECT_API_URL", "CONTACTSYNC_TEST_POSTGRES_DSN"} <= env.keys()
        root = str(Path(env["KUBECONFIG"]).parent)

        namespaces = subprocess.run(
            [env["KUBECTL"], "get", "namespaces", "-o", "name"],
            env={**os.environ, "KUBECONFIG": env["KUBECONFIG"]},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        assert "namespace/kube-system" in namespaces
        assert httpx.get(env["PREFECT_API_URL"] + "/health").status_code == 200
        with psycopg.connect(env["CONTACTSYNC_TEST_POSTGRES_DSN"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert len(processes_mentioning(root)) >= 5
    finally:
        up.send_signal(signal.SIGTERM)
        returncode = up.wait(timeout=90)

    assert returncode == 0
    assert not Path(root).exists()
    assert processes_mentioning(root) == []


def test_prefect_can_keep_its_database_in_the_beds_postgresql() -> None:
    """TestBed(prefect_on_postgres=True): Prefect's rows land in PostgreSQL, over TLS."""
    from tests.testbed import TestBed

    with TestBed(prefect_on_postgres=True) as bed:
        with bed.prefect.client() as api:
            api.post("/work_pools/", json={"name": "on-postgres", "type": "process"})
            assert api.get("/work_pools/on-postgres").json()["name"] == "on-postgres"
        with psycopg.connect(bed.postgres.dsn("prefect")) as conn:
            row = conn.execute("SELECT count(*) FROM work_pool WHERE name = 'on-postgres'")
            assert row.fetchone() == (1,)
