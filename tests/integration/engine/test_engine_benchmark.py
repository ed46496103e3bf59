"""benchmarks/engine.py runs end to end, small, on the bed's PostgreSQL: its
re-runs each meet the loaded table (the copies hold what the load wrote)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from tests.testbed import TestBed

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "engine.py"


def test_the_engine_benchmark_runs_and_every_rerun_updates_the_changed_rows(
    bed: TestBed,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("engine_benchmark", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered, as an import would: pydantic resolves the naive baseline's
    # annotations in the module's namespace.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    args = argparse.Namespace(n=2_000, baseline_n=200, workers=2, skip_dlt=True, repeat=1, reruns=2)
    module.run(args, tmp_path, bed.postgres.dsn())
    out = capsys.readouterr().out

    # The last re-run ran on a copy made before the first: had it met the
    # table the first re-run left, it would have found nothing to update.
    # (1% of 2,000 changed; the others it reads are the cursor's lookback.)
    assert re.search(r"incremental summary: read=\d+ updated=20 unchanged=\d+", out)
    reruns = re.search(r"engine re-run\s+(.*)", out)
    assert reruns is not None
    assert len(reruns.group(1).split(", ")) == 2
    assert re.search(r"incremental / full time: +\d\.\d{3}", out)
    assert re.search(r"inside the run: +\d\.\d{3}", out)
