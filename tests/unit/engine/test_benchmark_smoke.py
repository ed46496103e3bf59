"""benchmarks/normalize.py runs, and both paths agree on its generated data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "normalize.py"


def test_the_benchmark_runs_and_the_paths_agree(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("normalize_benchmark", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--n", "400", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "validate_record" in out
    assert " NO" not in out
