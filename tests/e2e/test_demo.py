"""The README's main command, run as a user runs it: the flow run the local
worker executes updates status.lastSync with the engine's counts, and the
PII in PostgreSQL is ciphertext."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_product_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "crm-demo   True    Reconciled" in out
    summary = json.loads(out.split("status.lastSync):\n", 1)[1].split("\n==>", 1)[0])
    assert summary["state"] == "COMPLETED"
    # examples/data/contacts.csv: 12 records, 3 invalid, 1 later version of crm-0001.
    assert (summary["read"], summary["valid"], summary["rejected"]) == (12, 9, 3)
    assert (summary["inserted"], summary["merged"]) == (8, 1)
    assert "rows whose email column holds a readable address: 0" in out
    assert "crm-0001 email=ann.smith@example.com" in out
    assert "record 7: email.invalid" in out
    assert "record 9: name.markup" in out
    metric = (
        'contactsync_last_run_records{name="crm-demo",namespace="sales",outcome="rejected"} 3.0'
    )
    assert metric in out
    # At least the requested run (an hourly scheduled one may have finished too).
    assert 'contactsync_runs_total{name="crm-demo",namespace="sales",state="COMPLETED"} ' in out
