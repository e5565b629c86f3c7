"""CI-sized runs of every benchmark, so they cannot rot: each runs a few iterations and must
produce a table of positive, finite numbers. Speed itself is never asserted here."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(autouse=True)
def benchmarks_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["overhead", "validation", "anonymize", "throttle", "audit", "load"])
def test_benchmark_runs_and_reports_sane_numbers(name: str) -> None:
    module = importlib.import_module(name)
    result = module.run(quick=True)
    assert result["title"]
    assert result["rows"], "a benchmark must report at least one row"
    for row in result["rows"]:
        assert row["name" if "name" in row else "app"]
        for key, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value), (key, row)
        # Differences between rows (stage costs) may dip below zero in a few noisy iterations;
        # a measured time may not.
        assert row.get("us_per_op", 1.0) > 0, row
    assert all(isinstance(note, str) for note in result.get("notes", []))


def test_runner_writes_results(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    run = importlib.import_module("run")
    code = run.main(["--quick", "--only", "validation", "--out", str(tmp_path)])
    assert code == 0
    text = (tmp_path / "results.md").read_text()
    assert "airlock benchmark results" in text
    assert "machine" in text
